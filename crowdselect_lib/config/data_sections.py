"""Params sections of the data chapters: zoo (01), scoring (02), metrics (03), embedding and clustering (04),
selection (05). Defaults are the paper's values; `params/demo.yaml` holds the offline scale."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..runs.run import check_name
from .base import ConfigError, check_rules, home, seed_ok, weights_problem


@dataclass
class ZooConfig:
    """Where the zoo comes from (`zoo.load_zoo`, chapter 01). Paper: Magpie-100K-Generator-Zoo."""
    source: Literal["demo", "magpie", "alpacaeval", "local"] = "magpie"
    data_dir: Optional[str] = None     # local copy instead of the network (tests/CI: ../shared/data/...); local: your crowd
    n_instructions: int = 100_000      # simulated demo zoo only (paper scale: 100k; params/demo.yaml: 3,000)
    limit: Optional[int] = None        # keep only the first `limit` instructions of a real zoo
    reward_models: Optional[list[str]] = None   # None = all reward models of the source
    drop_incomplete: bool = False      # drop instructions missing a model's answer/score (counted, recorded)
    holdout_fraction: float = 0.0      # share of instructions held out, never selectable (the held-out loss's items)

    def __post_init__(self):
        self.data_dir = home(self.data_dir, "zoo.data_dir")
        check_rules(self, "zoo", [
            ("n_instructions", 100 <= self.n_instructions <= 3_000_000, "must be within 100 .. 3,000,000"),
            ("limit", self.limit is None or self.limit >= 1, "must be >= 1 or null"),
            ("reward_models", self.reward_models is None or len(self.reward_models) > 0,
             "is empty: list reward models, or null for all of the zoo's"),
            ("data_dir", self.data_dir is None or bool(self.data_dir.strip()), "must be a folder or null"),
            ("holdout_fraction", 0.0 <= self.holdout_fraction < 1.0, "must be within [0, 1)")])


@dataclass
class MetricsConfig:
    """CrowdSelect eqs. (3)-(5) (chapter 03)."""
    reward_model: Optional[str] = None  # None = the zoo's default (Magpie: Skywork-Reward-Llama-3.1-8B, the paper's)
    stability_families: Optional[list[str]] = None  # None = every family with >= 2 distinct sizes (official code: 6)
    stability_ties: Literal["official", "average"] = "official"   # official: tied scores ranked by size (larger
    #                                    first; a constant family = +1) | average ranks (a constant family = 0)

    def __post_init__(self):
        check_rules(self, "metrics", [
            ("stability_families", self.stability_families is None or len(self.stability_families) > 0,
             "is empty: list families, or null for every family with two or more sizes")])


@dataclass
class EmbeddingConfig:
    """Instruction embeddings (paper §3.3: jinaai/jina-embeddings-v3 with its "text-matching" task adapter, as the
    official code; demo: all-MiniLM-L6-v2). Cached by (model, revision, task, max_seq_length, text)."""
    model: str = "jinaai/jina-embeddings-v3"
    revision: Optional[str] = None     # hub commit or tag (pin it for a real run)
    trust_remote_code: bool = False    # run code from the model's repository (jina v3 needs it): an explicit choice
    task: Optional[str] = "text-matching"   # jina v3 task adapter (official code); null for other models
    batch_size: int = 128
    device: Optional[str] = None       # None = cuda if available else cpu (models.device_and_dtype)
    max_seq_length: Optional[int] = None   # None = the model's own limit
    pooling: Literal["official", "model"] = "official"   # official utils/get_embedding.py: padded batches of 32,
    #                                    unmasked mean of the last hidden state, unnormalised | the model's own pooling

    def __post_init__(self):
        check_rules(self, "embedding", [
            ("model", bool(self.model.strip()), "must name a model"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("max_seq_length", self.max_seq_length is None or self.max_seq_length >= 8, "must be >= 8 or null")])


@dataclass
class ClusteringConfig:
    """K-means over instruction embeddings (paper §3.3: 10 clusters, ablation 20/30 in Tables 4/13; official code
    ``random_state=42, n_init=20``). `minibatch` switches to MiniBatchKMeans for millions of rows."""
    n_clusters: int = 10
    seed: int = 42
    n_init: int = 20
    minibatch: bool = False
    tsne_points: int = 2000            # points drawn in the t-SNE map

    def __post_init__(self):
        check_rules(self, "clustering", [
            ("n_clusters", self.n_clusters >= 2, "must be >= 2"),
            ("seed", seed_ok(self.seed), "must be within 0 .. 2**32 - 1"),
            ("n_init", self.n_init >= 1, "must be >= 1"),
            ("tsne_points", self.tsne_points >= 10, "must be >= 10")])


@dataclass
class SubsetSpec:
    """One subset to select (chapter 05). `metric` is difficulty|separability|stability|crowdselect."""
    name: str
    metric: Literal["difficulty", "separability", "stability", "crowdselect"]
    direction: Literal["top", "bottom"] = "top"
    clustered: bool = False
    weights: Optional[list[float]] = None  # crowdselect only; default = selection.weights
    response: Optional[Literal["best", "random", "top5_random"]] = None   # default = selection.response

    def __post_init__(self):
        try:
            check_name(self.name, "subset name")
        except ValueError as e:
            raise ConfigError(f"selection.subsets: {e}") from None
        if self.weights is not None:
            if self.metric != "crowdselect":
                raise ConfigError(f"selection.subsets[{self.name}].weights: only a crowdselect subset has weights")
            why = weights_problem(self.weights)
            if why:
                raise ConfigError(f"selection.subsets[{self.name}].weights {self.weights!r} {why}")


def _paper_subsets() -> list:
    """The paper's subsets: each metric's top-k and bottom-k (Tables 1-2) and clustered CrowdSelect (eqs. 6-9)."""
    return [SubsetSpec(f"{m}_{d}", m, d) for m in ("difficulty", "separability", "stability") for d in ("top", "bottom")
            ] + [SubsetSpec("crowdselect", "crowdselect", clustered=True)]


@dataclass
class SelectionConfig:
    """CrowdSelect eqs. (2), (6)-(9) and the per-cluster quota rule (chapter 05). Paper: k = 1000, w = (1, 1, 2)."""
    k: int = 1000
    response: Literal["best", "random", "top5_random"] = "best"
    weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 2.0])
    official_compat: bool = False      # true = the official code's uuid-string sort inside each cluster (a bug)
    cluster_quota: Optional[int] = None   # CrowdSelect rows per cluster; None = k / C (paper) | 100 (official file)
    response_reward_model: Optional[str] = None   # whose best answer (eq. 2); None = the metrics' reward model
    #                                    (Table 18: each its own) | Skywork-Reward-Llama-3.1-8B (official, always)
    subsets: list[SubsetSpec] = field(default_factory=_paper_subsets)

    def __post_init__(self):
        why = weights_problem(self.weights)
        if why:
            raise ConfigError(f"selection.weights {self.weights!r} {why}")
        check_rules(self, "selection", [("k", self.k >= 1, "must be >= 1"),
                                        ("cluster_quota", self.cluster_quota is None or self.cluster_quota >= 1,
                                         "must be >= 1 or null")])
        names = [s.name for s in self.subsets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"selection.subsets: subset name {dup[0]!r} appears twice (two subsets would share one folder)")


@dataclass
class RewardModelConfig:
    """How one reward model is loaded and called (`scoring.models.<name>`); None = the registry's value
    (`scoring.REWARD_MODELS`, which documents each model's batch, length, attention and BOS rule)."""
    source: Optional[str] = None       # hub id or local folder
    revision: Optional[str] = None     # hub commit or tag (pin it for a real run)
    kind: Optional[Literal["sequence_classification", "armorm"]] = None
    bos: Optional[Literal["single", "template"]] = None   # single: exactly one BOS (Skywork card); template: as
    #                                    the chat template tokenizes (ArmoRM card)
    attn_implementation: Optional[Literal["auto", "sdpa", "eager", "flash_attention_2"]] = None
    batch_size: Optional[int] = None
    max_length: Optional[int] = None
    trust_remote_code: bool = False    # run code from the model's repository (ArmoRM needs it): an explicit choice


@dataclass
class ScoringConfig:
    """Reward scoring (chapter 02, `crowdselect_lib.scoring`; paper §3.1 and Table 18).

    `reward_models` are names of the `scoring.REWARD_MODELS` registry (the three Magpie reward models, and
    ``tiny-reward``, a random 2-layer model for the offline demo) or any Hugging Face sequence-classification
    reward model. Per-model loading (source, revision, BOS rule, attention, batch, length, remote code) comes
    from the registry, overridden by `models.<name>`; `batch_size` / `max_length` here, when set, apply to
    every model. Scores are cached per (model settings, max_length, text) under ``<run>/cache/rewards``.
    """
    reward_models: list[str] = field(default_factory=lambda: ["Skywork-Reward-Llama-3.1-8B"])
    models: dict[str, RewardModelConfig] = field(default_factory=dict)
    model_dir: Optional[str] = None    # local folder of the reward model, or a folder of <reward model name>/ folders
    batch_size: Optional[int] = None   # None = per model (registry / models.<name>)
    max_length: Optional[int] = None   # None = per model (4096 for the paper's three); longer inputs cut and counted
    shard_size: int = 2048             # rows per cache file; a killed run resumes after the last finished one
    verify_sample: int = 2000          # rows re-scored to check agreement with the zoo's shipped scores
    score_all: bool = False            # score every row of the zoo (needed when the zoo ships no scores)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"   # auto = bf16 on GPU, fp32 on CPU
    device: Optional[str] = None       # None = cuda if available (device_map="auto" across GPUs), else cpu

    def __post_init__(self):
        self.model_dir = home(self.model_dir, "scoring.model_dir")
        check_rules(self, "scoring", [
            ("reward_models", len(self.reward_models) >= 1, "must name at least one reward model"),
            ("batch_size", self.batch_size is None or self.batch_size >= 1, "must be >= 1 or null"),
            ("max_length", self.max_length is None or self.max_length >= 8, "must be >= 8 or null"),
            ("shard_size", self.shard_size >= 1, "must be >= 1"),
            ("verify_sample", self.verify_sample >= 1, "must be >= 1")])
        for name, m in self.models.items():
            check_rules(m, f"scoring.models.{name}", [
                ("batch_size", m.batch_size is None or m.batch_size >= 1, "must be >= 1 or null"),
                ("max_length", m.max_length is None or m.max_length >= 8, "must be >= 8 or null")])
