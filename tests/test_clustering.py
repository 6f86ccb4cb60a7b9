"""Embeddings and clusters (crowdselect_lib.clustering): the fine-grained embedding cache (reuse, growth, two
writers), K-means, the keyed cluster steps, and topic recovery on the demo zoo with the real offline encoder.
Chapter 04's "Try this" overrides each have a test here (same run name, the output changes)."""
from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pandas as pd
import pytest

import crowdselect_lib as cs
from crowdselect_lib import clustering
from crowdselect_lib.clustering import EmbeddingCache, embed, inertia, kmeans, topic_agreement
from crowdselect_lib.config import EmbeddingConfig


class FakeEncoder:
    """Deterministic 8-d unit vectors from each text's hash; counts the texts it encodes."""

    def __init__(self, delay: float = 0.0):
        self.encoded, self.delay, self.prompts = [], delay, {}

    def encode(self, texts, **kw):
        time.sleep(self.delay)
        self.encoded += list(texts)
        v = np.array([np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], dtype=np.uint8) for t in texts], float)
        v -= 127.5
        return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def fake(monkeypatch):
    enc = FakeEncoder()
    monkeypatch.setattr(clustering, "load_embedder", lambda *a, **k: enc)
    return enc


E = EmbeddingConfig(model="fake-encoder", task=None, batch_size=4, pooling="model")   # per-text vectors


def test_cache_reuses_and_grows_with_the_zoo(fake, tmp_path):
    texts = [f"instruction {i}" for i in range(10)] + ["instruction 3"]        # a duplicate text
    first = embed(texts, E, tmp_path, chunk=4)
    assert first.shape == (11, 8) and len(fake.encoded) == 10 and np.allclose(first[3], first[10])
    assert len(EmbeddingCache(tmp_path, E).parts()) == 3                        # 10 texts in parts of 4
    again = embed(texts[::-1], E, tmp_path)
    np.testing.assert_array_equal(again, first[::-1])
    assert len(fake.encoded) == 10                                            # nothing encoded twice
    grown = [f"instruction {i}" for i in range(15)]                           # the zoo grew: 5 new texts
    vecs = embed(grown, E, tmp_path)
    assert len(fake.encoded) == 15 and sorted(fake.encoded[10:]) == sorted(grown[10:])
    np.testing.assert_array_equal(vecs[:10], first[:10])
    np.testing.assert_allclose(vecs[10:], FakeEncoder().encode(grown[10:]), atol=1e-6)   # each text its own vector
    other = EmbeddingConfig(model="fake-encoder", task=None, max_seq_length=64, pooling="model")   # another setting
    assert EmbeddingCache(tmp_path, other).dir != EmbeddingCache(tmp_path, E).dir


def test_two_writers_share_the_cache_without_double_work(monkeypatch, tmp_path):
    enc = FakeEncoder(delay=0.2)
    monkeypatch.setattr(clustering, "load_embedder", lambda *a, **k: enc)
    a, b = [f"t{i}" for i in range(0, 12)], [f"t{i}" for i in range(6, 18)]
    out = {}
    threads = [threading.Thread(target=lambda n, t: out.__setitem__(n, embed(t, E, tmp_path, chunk=4)), args=(n, t))
               for n, t in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(enc.encoded) == sorted(f"t{i}" for i in range(18))         # each text encoded exactly once
    np.testing.assert_array_equal(out["a"][6:], out["b"][:6])
    keys, vecs = EmbeddingCache(tmp_path, E).read()
    assert len(keys) == len(set(keys)) == 18 and vecs.shape == (18, 8)


def test_kmeans_options_inertia_and_errors():
    rng = np.random.default_rng(0)
    pts = np.vstack([rng.normal(c, 0.05, size=(30, 2)) for c in [(0, 0), (5, 5), (0, 5)]])
    for mb in (False, True):
        lab = kmeans(pts, 3, seed=1, n_init=3, minibatch=mb)
        assert len(set(lab[:30])) == len(set(lab[30:60])) == len(set(lab[60:])) == 1 and len(set(lab)) == 3
    with pytest.raises(ValueError, match="exceeds"):
        kmeans(pts[:2], 3)
    assert inertia(np.array([[0.0, 0], [2, 0], [10, 0]]), np.array([0, 0, 1])) == pytest.approx(2.0)


def demo_cfg(tmp_path, **over):
    base = {"run.root": str(tmp_path), "run.name": "t", "zoo.source": "demo", "zoo.n_instructions": 300,
            "embedding.model": "all-MiniLM-L6-v2", "embedding.task": None, "embedding.max_seq_length": 128,
            "clustering.n_init": 4, "clustering.tsne_points": 60}
    return cs.load_config(None, {**base, **over})


def test_cluster_step_keys_follow_exactly_their_settings(tmp_path):
    cfg = demo_cfg(tmp_path)
    run = cs.Run.from_config(cfg)
    key = clustering.clusters_step(run, cfg).key
    assert clustering.clusters_step(run, demo_cfg(tmp_path, **{"selection.k": 5})).key == key   # not read: same key
    for change in ({"clustering.n_init": 1}, {"clustering.minibatch": True}, {"clustering.seed": 1},
                   {"clustering.n_clusters": 20}, {"embedding.model": "other-model"}, {"zoo.n_instructions": 200}):
        assert clustering.clusters_step(run, demo_cfg(tmp_path, **change)).key != key, change


def test_clusters_follow_try_this_overrides_and_recover_topics(tmp_path):
    """Try this: clustering.n_clusters 20, clustering.minibatch, clustering.n_init each recompute the clusters
    under the same run name and change them; the ARI with the planted topics is well above chance."""
    cfg = demo_cfg(tmp_path)
    run = cs.Run.from_config(cfg)
    base = clustering.load_run_clusters(run, cfg)
    truth = cs.zoo.load_run_zoo(run, cfg).truth
    assert len(base) == 300 and base.nunique() == 10
    rec = clustering.topic_recovery(base, truth)
    assert 0.15 < rec.loc["all", "ARI"] < 0.95                 # topics are recovered, not trivially
    assert rec.loc["all", "ARI"] == pytest.approx(topic_agreement(base, truth))
    if "kind" in truth.columns:
        assert rec.loc["specific", "ARI"] > rec.loc["all", "ARI"]
    st = clustering.clusters_step(run, cfg)
    assert st.done and cs.runs.read_json(st.dir / "manifest.json")["inertia"] > 0

    c20 = clustering.load_run_clusters(run, demo_cfg(tmp_path, **{"clustering.n_clusters": 20}))
    assert c20.nunique() == 20 and topic_agreement(c20, truth) != pytest.approx(rec.loc["all", "ARI"])
    mb = clustering.load_run_clusters(run, demo_cfg(tmp_path, **{"clustering.minibatch": True}))
    assert not (mb == base).all()
    one = demo_cfg(tmp_path, **{"clustering.n_init": 1})
    clustering.load_run_clusters(run, one)
    inertias = [cs.runs.read_json(clustering.clusters_step(run, c).dir / "manifest.json")["inertia"] for c in (cfg, one)]
    assert inertias[0] <= inertias[1] and inertias[0] != inertias[1]   # more restarts, a better K-means optimum
    again = clustering.load_run_clusters(run, cfg)                      # the first setting is still there
    pd.testing.assert_series_equal(again, base)
    tsne = clustering.load_run_tsne(run, cfg)
    assert list(tsne.columns) == ["uuid", "x", "y", "cluster"] and len(tsne) == 60
    assert (tsne["cluster"].to_numpy() == base.reindex(tsne["uuid"]).to_numpy()).all()


def test_describe_embeddings_says_unit_vectors_only_for_the_models_own_pooling():
    from types import SimpleNamespace

    from crowdselect_lib.clustering import describe_embeddings

    v = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])                   # norms 5, 2, 1
    official = describe_embeddings(v, SimpleNamespace(model="m", pooling="official"))
    assert official == ("m: 3 instructions x 2 dimensions, official pooling: the mean over every position of a padded "
                        "batch of 32, pads included, not normalised (norms 1.00-5.00, median 2.00)")
    assert describe_embeddings(v / 5, SimpleNamespace(model="m", pooling="model")).endswith(
        "unit vectors (the model's own pooling, normalised)")
