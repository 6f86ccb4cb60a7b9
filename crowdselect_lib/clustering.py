"""Instruction embeddings and K-means clusters (paper §3.3 "diversity by clustering"; Tables 4, 13; chapter 04).

The paper embeds with jinaai/jina-embeddings-v3 (task "text-matching") and clusters with K-means (official code:
``random_state=42, n_init=20``; paper: 10 clusters, ablation 20 and 30). Any sentence-transformers model serves;
offline we use all-MiniLM-L6-v2 (`models.load_embedder`).

- Embeddings (`embedding.pooling`): "official" (the paper's params) is the official `utils/get_embedding.py`:
  padded batches of 32 in the zoo's order, the plain mean of the last hidden state over every position (pad
  included), not normalised; "model" is the model's own pooling (sentence-transformers: masked mean), normalised.
- Embedding cache: a fine-grained cache by (model settings, text) under ``<run>/cache/embeddings/<model>-<digest>/``:
  each part file is one ``.npz`` holding keys (SHA-1 of the text; with official pooling also of its batch) and
  vectors, written atomically, so a kill between writes leaves only whole parts and a rerun encodes only the
  missing texts; a grown zoo adds parts; writers hold a lock, so two processes never encode the same texts twice.
- `embed_instructions(run, cfg)` -> (uuids, vectors) of the run's zoo (computes what the cache lacks).
- `clusters_step(run, cfg)` is keyed by the clustering settings (n_clusters, seed, n_init, minibatch), the
  embedding settings and the zoo's key; `load_run_clusters(run, cfg)` reads it, or computes it on demand
  (a cheap stage: chapter 05 calls it with its own settings). `tsne_step` / `load_run_tsne` likewise.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .escaping import literal_figure_text
from .models import load_embedder
from .runs import Progress, Step, atomic_write, digest, locked, slug, text_digest, write_parquet
from .zoo import load_run_zoo, zoo_step

log = logging.getLogger("crowdselect")

CLUSTERS_VERSION = "2"
TSNE_VERSION = "3"
TSNE_ITERATIONS = 500   # enough for a 2-D picture (scikit-learn's default 1000 doubles the cost)
MINIBATCH_SIZE = 4096
ENCODE_CHUNK = 1024     # texts per cache part (the unit a kill can lose)


# ------------------------------------------------------------------ embeddings (fine-grained cache)

OFFICIAL_BATCH = 32     # utils/get_embedding.py: padded batches of 32 texts, in the zoo's order


def embedding_settings(e) -> dict:
    """What determines an embedding besides the text (`EmbeddingConfig`): model, revision, task, length, pooling."""
    return {"model": e.model, "revision": e.revision, "task": e.task, "max_seq_length": e.max_seq_length,
            "pooling": getattr(e, "pooling", "model")}


def official_pooling(hidden, batch: int = OFFICIAL_BATCH):
    """The official pooling of one padded batch's last hidden states (B, T, d): the plain mean over all T
    positions, pad positions included (no attention mask), not normalised (`utils/get_embedding.py`)."""
    return hidden.mean(dim=1)


def _official_vectors(model, texts: list[str], task: str | None, max_length: int | None) -> np.ndarray:
    """Official embeddings of `texts`, one padded batch (<= 32 texts) through the sentence-transformers model's
    underlying transformer (jina v3: with its task adapter, as the official ``model(**inputs, task=task)``)."""
    import torch

    net, tok = model[0].auto_model, model.tokenizer
    device = next(net.parameters()).device
    kw = {"max_length": max_length} if max_length else {}
    inputs = tok(texts, return_tensors="pt", padding=True, truncation=True, **kw).to(device)
    with torch.no_grad():
        out = net(**inputs, task=task) if task else net(**inputs)
    return official_pooling(out.last_hidden_state).to(torch.float32).cpu().numpy()


class EmbeddingCache:
    """Vectors of one embedding setting by text key; `read()` -> (keys (N,), vectors (N, dim)), keys unique."""

    def __init__(self, root: str | Path, e):
        self.settings = embedding_settings(e)
        self.dir = Path(root) / f"{slug(e.model)}-{digest(self.settings)}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def parts(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.npz"))   # a write cut by a kill leaves only a hidden .tmp file

    def read(self) -> tuple[np.ndarray, np.ndarray | None]:
        keys, vecs = [], []
        for p in self.parts():
            try:
                with np.load(p) as z:
                    k, v = z["keys"], z["vectors"]
                if len(k) != len(v):
                    raise ValueError(f"{len(k)} keys for {len(v)} vectors")
            except Exception as e:      # truncated, not a zip, missing arrays: a cache part, so embed again
                log.warning("%s: damaged embedding cache part (%s: %s); deleted, its texts are embedded again",
                            p, type(e).__name__, e)
                p.unlink(missing_ok=True)
                continue
            keys.append(k)
            vecs.append(v)
        if not keys:
            return np.array([], dtype=str), None
        k, v = np.concatenate(keys), np.vstack(vecs)
        _, first = np.unique(k, return_index=True)    # a text written by two parts counts once
        first.sort()
        return k[first], v[first]

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> Path:
        """One part: keys and vectors in one file, written atomically."""
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, keys=np.asarray(keys, dtype=str), vectors=np.asarray(vectors, dtype=np.float32))

        return atomic_write(self.dir / f"part-{digest(list(map(str, keys)))}.npz", write)


def _official_keys(texts: list[str]) -> np.ndarray:
    """Cache keys of official pooling: a vector depends on its batch's padding, so each text's key also holds the
    digest of its batch of 32 (in the given order)."""
    out = []
    for lo in range(0, len(texts), OFFICIAL_BATCH):
        batch = texts[lo:lo + OFFICIAL_BATCH]
        b = digest(text_digest(batch))
        out += [digest([b, t]) for t in text_digest(batch)]
    return np.array(out)


def embed(texts, e, cache_dir: str | Path, *, chunk: int = ENCODE_CHUNK) -> np.ndarray:
    """Embeddings of `texts` with `EmbeddingConfig` `e`, shape (len(texts), dim), float32: L2-normalised with the
    model's own pooling (`pooling: model`), or the official unmasked batch-32 mean, unnormalised (`official`).
    Cached texts are not encoded again; the rest are encoded in parts of `chunk` texts under one progress bar."""
    texts = [str(t) for t in texts]
    official = getattr(e, "pooling", "model") == "official"
    keys = _official_keys(texts) if official else np.array(text_digest(texts))
    cache = EmbeddingCache(cache_dir, e)
    with locked(cache.dir / "writer"):
        known, _ = cache.read()
        missing = np.flatnonzero(~np.isin(keys, known))
        todo = np.sort(missing[np.unique(keys[missing], return_index=True)[1]])   # first row of each new text
        if len(todo):
            model = load_embedder(e.model, revision=e.revision, trust_remote_code=e.trust_remote_code,
                                  device=e.device, max_seq_length=e.max_seq_length)
            extra = {}
            if e.task:
                extra["task"] = e.task
                if e.task in getattr(model, "prompts", {}):
                    extra["prompt_name"] = e.task
            if official:   # whole batches of 32 (a batch with one missing key is encoded again)
                todo = np.flatnonzero(np.isin(np.arange(len(texts)) // OFFICIAL_BATCH,
                                              np.unique(todo // OFFICIAL_BATCH)))
            with Progress(len(todo), f"embedding {e.model}", unit="text") as bar:
                step = max(1, chunk // OFFICIAL_BATCH) * OFFICIAL_BATCH   # parts hold whole batches
                for lo in range(0, len(todo) if official else 0, step):
                    idx = todo[lo:lo + step]
                    vecs = np.vstack([_official_vectors(model, [texts[i] for i in idx[b:b + OFFICIAL_BATCH]], e.task,
                                                        e.max_seq_length) for b in range(0, len(idx), OFFICIAL_BATCH)])
                    cache.add(keys[idx], vecs)
                    bar.update(len(idx))
                for lo in range(0, 0 if official else len(todo), chunk):
                    idx = todo[lo:lo + chunk]
                    vecs = model.encode([texts[i] for i in idx], batch_size=e.batch_size, show_progress_bar=False,
                                        convert_to_numpy=True, normalize_embeddings=True, **extra)
                    cache.add(keys[idx], vecs)
                    bar.update(len(idx))
        known, vectors = cache.read()
    return vectors[pd.Index(known).get_indexer(keys)]


def describe_embeddings(vectors: np.ndarray, e) -> str:
    """One line on what the vectors are: unit vectors (`pooling: model`), or the official unmasked mean with the
    spread of its norms (`pooling: official`: pad positions pull a short text towards the pad token's state)."""
    norms = np.linalg.norm(vectors, axis=1)
    head = f"{e.model}: {len(vectors)} instructions x {vectors.shape[1]} dimensions"
    if getattr(e, "pooling", "model") == "model":
        return f"{head}, unit vectors (the model's own pooling, normalised)"
    return (f"{head}, official pooling: the mean over every position of a padded batch of {OFFICIAL_BATCH}, pads "
            f"included, not normalised (norms {norms.min():.2f}-{norms.max():.2f}, median {np.median(norms):.2f})")


def embed_instructions(run, cfg) -> tuple[np.ndarray, np.ndarray]:
    """(uuids, embeddings) of the run's zoo instructions with `cfg.embedding`; recorded in meta.json."""
    inst = load_run_zoo(run, cfg).instructions()
    vecs = embed(inst["instruction"].tolist(), cfg.embedding, run.dir / "cache" / "embeddings")
    run.update_meta(embedding_model=cfg.embedding.model, embedding_revision=cfg.embedding.revision,
                    embedding_task=cfg.embedding.task)
    return inst["uuid"].to_numpy(), vecs


# ------------------------------------------------------------------ K-means

def kmeans(embeddings: np.ndarray, n_clusters: int = 10, seed: int = 42, n_init: int = 20,
           minibatch: bool = False) -> np.ndarray:
    """Cluster labels (int, 0..C-1) of rows of `embeddings` (N, dim). MiniBatchKMeans for millions of rows."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if n_clusters > len(embeddings):
        raise ValueError(f"n_clusters={n_clusters} exceeds the {len(embeddings)} points")
    if minibatch:
        km = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init, batch_size=MINIBATCH_SIZE)
    else:
        km = KMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init)
    return km.fit_predict(embeddings).astype(int)


def inertia(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of each point to its cluster's mean (the K-means objective)."""
    sums = np.zeros((labels.max() + 1, embeddings.shape[1]))
    np.add.at(sums, labels, embeddings)
    means = sums / np.bincount(labels)[:, None]
    return float(((embeddings - means[labels]) ** 2).sum())


def clusters_settings(cfg) -> dict:
    """What determines the clusters besides the instructions: K-means settings and the embedding's."""
    c = cfg.clustering
    return {"n_clusters": c.n_clusters, "seed": c.seed, "n_init": c.n_init, "minibatch": c.minibatch,
            "embedding": embedding_settings(cfg.embedding)}


def clusters_step(run, cfg) -> Step:
    """The key of the run's clusters (pure: config and the zoo's key)."""
    return Step(run.dir, "clusters", f"kmeans-k{cfg.clustering.n_clusters}", clusters_settings(cfg),
                {"zoo": zoo_step(run, cfg)}, CLUSTERS_VERSION, "crowdselect_lib.clustering")


def fit_clusters(st: Step, uuids, vectors: np.ndarray, c) -> pd.Series:
    """K-means (`ClusteringConfig` `c`) on `vectors`, one row per uuid, written into step `st`, which is finished."""
    labels = kmeans(vectors, c.n_clusters, c.seed, c.n_init, c.minibatch)
    write_parquet(pd.DataFrame({"uuid": np.asarray(uuids), "cluster": labels}), st.path("clusters.parquet"))
    st.finish(rows=len(labels), inertia=inertia(vectors, labels), sizes=np.bincount(labels).tolist())
    return read_clusters(st)


def read_clusters(st: Step) -> pd.Series:
    """Cluster label per uuid (Series named ``cluster``) of a finished clusters step."""
    return pd.read_parquet(st.dir / "clusters.parquet").set_index("uuid")["cluster"]


def load_run_clusters(run, cfg) -> pd.Series:
    """Cluster label per uuid (Series named ``cluster``) for `cfg`; computed on demand when its step is not done."""
    st = clusters_step(run, cfg).announce()
    if st.done:
        return read_clusters(st)
    uuids, vecs = embed_instructions(run, cfg)
    return fit_clusters(st, uuids, vecs, cfg.clustering)


# ------------------------------------------------------------------ 2-D map and the planted topics

def tsne_map(embeddings: np.ndarray, n_points: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(row indices drawn, 2-D t-SNE coordinates) for a seeded sample of at most `n_points` rows."""
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(embeddings), size=min(n_points, len(embeddings)), replace=False))
    coords = TSNE(n_components=2, random_state=seed, init="pca", max_iter=TSNE_ITERATIONS,
                  perplexity=min(30.0, max(5.0, (len(rows) - 1) / 3))).fit_transform(embeddings[rows])
    return rows, coords


def tsne_step(run, cfg) -> Step:
    c = cfg.clustering
    return Step(run.dir, "clusters", f"tsne-k{c.n_clusters}", {"points": c.tsne_points, "seed": cfg.run.seed},
                {"clusters": clusters_step(run, cfg)}, TSNE_VERSION, "crowdselect_lib.clustering")


def load_run_tsne(run, cfg) -> pd.DataFrame:
    """t-SNE coordinates of a sample of instructions: ``uuid, x, y, cluster`` (computed on demand)."""
    st = tsne_step(run, cfg).announce()
    if st.done:
        return pd.read_parquet(st.dir / "table.parquet")
    clusters = load_run_clusters(run, cfg)
    uuids, vecs = embed_instructions(run, cfg)
    rows, xy = tsne_map(vecs, cfg.clustering.tsne_points, cfg.run.seed)
    df = pd.DataFrame({"uuid": uuids[rows], "x": xy[:, 0], "y": xy[:, 1],
                       "cluster": clusters.reindex(uuids[rows]).to_numpy()})
    return st.table(lambda: df)


def topic_agreement(clusters: pd.Series, truth: pd.DataFrame) -> float:
    """Demo zoo only: adjusted Rand index between the clusters and the planted topics (1 = the same partition,
    0 = what random labels of these sizes score)."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(truth["topic"].reindex(clusters.index), clusters))


def topic_recovery(clusters: pd.Series, truth: pd.DataFrame) -> pd.DataFrame:
    """Demo zoo only: ARI with the planted topics overall and per text kind (``kind`` of the truth table, when
    present: topic-specific, generic and bridging templates), with the number of instructions."""
    t = truth.reindex(clusters.index)
    rows = [{"texts": "all", "instructions": len(t), "ARI": topic_agreement(clusters, truth)}]
    if "kind" in t.columns:
        for kind, idx in t.groupby("kind").groups.items():
            rows.append({"texts": kind, "instructions": len(idx), "ARI": topic_agreement(clusters.loc[idx], truth)})
    return pd.DataFrame(rows).set_index("texts")


def cluster_names(clusters: pd.Series, truth: pd.DataFrame | None = None) -> dict:
    """cluster -> legend label: ``"3 · physics (92%)"``, its most common planted topic and that topic's share of
    the cluster (demo zoo), or ``"cluster 3"`` without a truth table."""
    if truth is None:
        return {c: f"cluster {c}" for c in sorted(clusters.unique())}
    share = pd.crosstab(clusters.to_numpy(), truth["topic"].reindex(clusters.index).to_numpy(), normalize="index")
    return {c: f"{c} · {share.loc[c].idxmax()} ({share.loc[c].max():.0%})" for c in share.index}


# ------------------------------------------------------------------ figures (chapter 04)

def plot_cluster_map(tsne: pd.DataFrame, labels: pd.Series | np.ndarray, title: str, legend_title: str = "cluster"):
    """2-D t-SNE map (`load_run_tsne` output) coloured by `labels` (clusters or planted topics)."""
    import matplotlib.pyplot as plt

    labels = pd.Series(np.asarray(labels)).astype(str)
    fig, ax = plt.subplots(figsize=(7, 5))
    names = sorted(labels.unique(), key=lambda s: (int(s.split()[0]) if s.split()[0].isdigit() else 10**9, s))
    cmap = plt.cm.tab10 if len(names) <= 10 else plt.cm.tab20
    for i, lab in enumerate(names):
        m = (labels == lab).to_numpy()
        ax.scatter(tsne["x"].to_numpy()[m], tsne["y"].to_numpy()[m], s=5, color=cmap(i % cmap.N), label=lab)
    ax.legend(markerscale=3, fontsize=7, title=legend_title, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set(xticks=[], yticks=[], xlabel="t-SNE 1", ylabel="t-SNE 2", title=title)
    literal_figure_text(fig).tight_layout()
    return fig


def plot_topic_recovery(clusters: pd.Series, truth: pd.DataFrame, title: str):
    """Heatmap of clusters x planted topics (share of each cluster's instructions per topic), ARI in the title:
    a clean diagonal-like pattern (one dominant topic per cluster) is what a high ARI means."""
    import matplotlib.pyplot as plt

    table = pd.crosstab(clusters.to_numpy(), truth["topic"].reindex(clusters.index).to_numpy(), normalize="index")
    table = table.iloc[np.lexsort((-table.max(axis=1).to_numpy(), table.to_numpy().argmax(axis=1)))]  # by main topic
    fig, ax = plt.subplots(figsize=(8, 4.5))
    im = ax.imshow(table.to_numpy(), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(im, ax=ax, label="share of the cluster's instructions")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]), [f"cluster {c}" for c in table.index], fontsize=8)
    ax.set(xlabel="planted topic", ylabel="K-means cluster",
           title=f"{title}\nARI with the planted topics = {topic_agreement(clusters, truth):.2f}")
    literal_figure_text(fig).tight_layout()
    return fig
