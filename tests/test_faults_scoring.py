"""Bad input and faults of chapters 02 and 04 (issue 14): bad params rejected at load time naming the key, a
non-finite reward score is an error naming the row and the model (nothing cached for its shard), remote code
only by an explicit params choice, and kills in the middle of cache writes (reward scores, embeddings)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

import crowdselect_lib as cs
from crowdselect_lib import clustering, models
from crowdselect_lib.clustering import EmbeddingCache, embed
from crowdselect_lib.config import ConfigError, EmbeddingConfig
from crowdselect_lib.scoring import RewardModelSpec, ScoreCache, ScoringError, collect, score_rows

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("override, key", [
    ({"scoring.shard_size": 0}, "scoring.shard_size"),
    ({"scoring.batch_size": 0}, "scoring.batch_size"),
    ({"scoring.max_length": 0}, "scoring.max_length"),
    ({"scoring.verify_sample": 0}, "scoring.verify_sample"),
    ({"scoring.reward_models": []}, "scoring.reward_models"),
    ({"scoring.models": {"Skywork-Reward-Gemma-2-27B": {"batch_size": -1}}},
     "scoring.models.Skywork-Reward-Gemma-2-27B.batch_size"),
    ({"scoring.models": {"x": {"bos": "double"}}}, "scoring.models.x.bos"),
    ({"scoring.models": {"x": {"trust_remote_code": "yes"}}}, "scoring.models.x.trust_remote_code"),
    ({"embedding.batch_size": 0}, "embedding.batch_size"),
    ({"embedding.max_seq_length": 0}, "embedding.max_seq_length"),
    ({"embedding.model": " "}, "embedding.model"),
    ({"clustering.n_clusters": 1}, "clustering.n_clusters"),
    ({"clustering.n_init": 0}, "clustering.n_init"),
    ({"clustering.tsne_points": 2}, "clustering.tsne_points"),
])
def test_bad_params_are_rejected_at_load_time_naming_the_key(override, key, tmp_path):
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')}\b"):
        cs.load_config(None, override)
    section, field = key.split(".", 1)
    params = tmp_path / "bad.yaml"                       # the same through a params file
    params.write_text(json.dumps({section: {k.split(".", 1)[1]: v for k, v in override.items()}}))
    with pytest.raises(ConfigError, match=key.replace(".", "[.]")):
        cs.load_config(params)


class Broken:
    """A scorer whose model returns NaN (or inf) for the rows whose response contains `bad`."""

    def __init__(self, value=np.nan):
        self.value = value

    def encode(self, instructions, responses):
        return [[len(a)] for a in responses], np.array([len(a) for a in responses])

    def score(self, ids):
        return np.array([self.value if x[0] == 4 else float(x[0]) for x in ids])


ROWS = pd.DataFrame({"uuid": ["a", "a", "b", "b"], "model": ["m1", "m2", "m1", "m2"], "instruction": ["q"] * 4,
                     "response": ["ok", "fine", "good", "great"]})
SPEC = RewardModelSpec("rm-x", "nowhere", batch_size=2, max_length=100)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_non_finite_reward_is_an_error_naming_row_and_model(value, tmp_path):
    cache = ScoreCache(tmp_path, SPEC, "auto")
    with pytest.raises(ScoringError, match=r"reward model rm-x returned a non-finite score \((nan|inf)\) for uuid "
                                           r"'a' model 'm2'"):
        score_rows(ROWS, SPEC, cache, lambda: Broken(value), shard_size=2)
    assert cache.parts() == []                           # nothing of the bad shard is cached
    score_rows(ROWS, SPEC, cache, lambda: Broken(4.0), shard_size=2)   # a fixed model finishes the job
    assert collect(ROWS, cache)["score"].tolist() == [2.0, 4.0, 4.0, 5.0]


def test_a_kill_during_a_reward_part_write_leaves_no_part(tmp_path, monkeypatch):
    import crowdselect_lib.scoring.cache as cache_mod

    cache = ScoreCache(tmp_path, SPEC, "auto")
    real, calls = cache_mod.write_parquet, []

    def dying(df, path):
        calls.append(path)
        if len(calls) == 2:
            def write(tmp):
                df.to_parquet(tmp)
                raise KeyboardInterrupt("killed while renaming")
            return cs.runs.atomic_write(path, write)
        return real(df, path)

    monkeypatch.setattr(cache_mod, "write_parquet", dying)
    with pytest.raises(KeyboardInterrupt):
        score_rows(ROWS, SPEC, cache, lambda: Broken(4.0), shard_size=2)
    assert len(cache.parts()) == 1 and not list(cache.dir.glob(".*.tmp"))
    monkeypatch.undo()
    stats = score_rows(ROWS, SPEC, cache, lambda: Broken(4.0), shard_size=2)
    assert stats["rows_scored"] == 2 and collect(ROWS, cache)["score"].tolist() == [2.0, 4.0, 4.0, 5.0]


class Enc:
    prompts = {}

    def __init__(self):
        self.n = 0

    def encode(self, texts, **kw):
        self.n += len(texts)
        v = np.array([[len(t), 1.0, sum(map(ord, t)) % 7] for t in texts])
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_embedding_cache_survives_a_kill_between_and_during_writes(tmp_path, monkeypatch):
    enc = Enc()
    monkeypatch.setattr(clustering, "load_embedder", lambda *a, **k: enc)
    e = EmbeddingConfig(model="enc", task=None, pooling="model")   # the encoder's own pooling
    texts = [f"text number {i}" for i in range(10)]
    real_add, calls = EmbeddingCache.add, []

    def add_then_die(self, keys, vectors):
        calls.append(len(keys))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed between writes")
        return real_add(self, keys, vectors)

    monkeypatch.setattr(EmbeddingCache, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        embed(texts, e, tmp_path, chunk=4)
    cache = EmbeddingCache(tmp_path, e)
    (cache.dir / ".part-x.npz.123.abcd.tmp").write_bytes(b"half a file")   # what a SIGKILL mid-write leaves
    keys, vecs = cache.read()
    assert len(keys) == 4 and vecs.shape == (4, 3)                         # consistent: one whole part
    monkeypatch.setattr(EmbeddingCache, "add", real_add)
    enc.n = 0
    out = embed(texts, e, tmp_path, chunk=4)
    assert enc.n == 6 and out.shape == (10, 3)                               # resumed: only the 6 missing
    fresh = embed(texts, e, tmp_path / "fresh", chunk=4)
    np.testing.assert_allclose(out[4:], fresh[4:])


def test_remote_code_is_never_switched_on_by_a_model_name(tmp_path, monkeypatch):
    """A folder called jina-embeddings-v3 without code loads without remote code; code is refused unless the
    params allow it; the default (paper) embedding config asks for the explicit choice."""
    import sentence_transformers

    plain = tmp_path / "jina-embeddings-v3"
    shutil.copytree(models.resolve_embedder(models.MINILM), plain)
    seen = {}

    class Capture:
        def __init__(self, path, **kw):
            seen.update(kw)

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Capture)
    models.load_embedder(str(plain))
    assert seen["trust_remote_code"] is False
    cfg = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**cfg, "auto_map": {"AutoModel": "modeling.Custom"}}))
    with pytest.raises(models.RemoteCodeRefused, match=r"modeling.Custom.*embedding.trust_remote_code: true"):
        models.load_embedder(str(plain))
    models.load_embedder(str(plain), trust_remote_code=True)
    assert seen["trust_remote_code"] is True
    default = cs.RunConfig().embedding
    assert default.model == "jinaai/jina-embeddings-v3" and default.trust_remote_code is False
    assert cs.RunConfig().scoring.models == {}            # ArmoRM's remote code: only by params (paper.yaml)
