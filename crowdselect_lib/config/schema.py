"""The run specification's schema: one dataclass per params section (house rule 2).

Sections are owned by the modules that read them (zoo, metrics, clustering, selection, scoring,
llm, baselines, training, judge, tables); each section lists its fields with the paper's value
where the paper gives one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import yaml

from ..runs.store import digest


class ConfigError(ValueError):
    """A params file has an unknown key, a wrong type or an invalid value."""


@dataclass
class RunSection:
    name: str = "demo"                 # artifacts go to <root>/<name>/
    root: str = "runs"                 # relative paths resolve against the repository root
    seed: int = 0
    offline_demo: bool = True          # printed in every caption when true


@dataclass
class ZooConfig:
    """Where the zoo comes from (`zoo.load_zoo`)."""
    source: Literal["demo", "magpie", "alpacaeval"] = "demo"
    data_dir: Optional[str] = None     # local copy instead of the network (tests/CI: ../shared/data/...)
    n_instructions: int = 3000         # demo zoo size; also caps magpie/alpacaeval when `limit` is set
    limit: Optional[int] = None        # keep only the first `limit` instructions of a real zoo
    reward_models: Optional[list[str]] = None   # None = all reward models of the source
    drop_incomplete: bool = False      # drop instructions missing a model's answer/score (reported)


@dataclass
class MetricsConfig:
    """CrowdSelect eqs. (3)-(5)."""
    reward_model: Optional[str] = None  # None = the source's default (Skywork-Reward-Llama-3.1-8B for magpie)
    stability_families: Optional[list[str]] = None  # None = every family with >= 2 distinct sizes (code: 6)


@dataclass
class EmbeddingConfig:
    """Instruction embeddings (paper: jinaai/jina-embeddings-v3; offline: all-MiniLM-L6-v2)."""
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = 64
    device: Optional[str] = None
    max_seq_length: Optional[int] = 256


@dataclass
class ClusteringConfig:
    """K-means over instruction embeddings (paper 10 clusters; official code seed 42, n_init 20)."""
    n_clusters: int = 10
    seed: int = 42
    n_init: int = 20
    minibatch: bool = False
    tsne_points: int = 2000            # points drawn in the t-SNE map


@dataclass
class SubsetSpec:
    """One subset to select. `metric` is difficulty|separability|stability|crowdselect."""
    name: str
    metric: Literal["difficulty", "separability", "stability", "crowdselect"]
    direction: Literal["top", "bottom"] = "top"
    clustered: bool = False
    weights: Optional[list[float]] = None  # crowdselect only; default = selection.weights
    response: Optional[Literal["best", "random", "top5_random"]] = None


@dataclass
class SelectionConfig:
    """CrowdSelect eqs. (2), (6)-(9) and the per-cluster quota rule."""
    k: int = 1000
    response: Literal["best", "random", "top5_random"] = "best"
    weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 2.0])
    official_compat: bool = False
    subsets: list[SubsetSpec] = field(default_factory=list)


@dataclass
class ScoringConfig:
    """Reward scoring (notebook 02, `crowdselect_lib.scoring`; paper §3.1 and Table 18).

    `reward_models` are names of the `scoring.REWARD_MODELS` registry (the three Magpie reward models),
    any Hugging Face sequence-classification reward model, or ``tiny-reward`` (a random 2-layer model
    for the offline demo). The demo default re-scores a small sample only; the paper setting scores
    every (instruction, response) with Skywork-Reward-Llama-3.1-8B on a GPU.
    """
    reward_models: list[str] = field(default_factory=lambda: ["tiny-reward"])
    model_dir: Optional[str] = None    # local folder of the reward model, or a folder of <reward model name>/ folders
    batch_size: int = 8
    max_length: int = 4096             # longer (instruction, response) inputs are truncated and counted
    shard_size: int = 2048             # rows per shard file; a killed run resumes at the first missing shard
    verify_sample: int = 40            # rows re-scored to check agreement with the zoo's shipped scores
    score_all: bool = False            # score every row of the zoo (needed when the zoo ships no scores)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"   # auto = bf16 on GPU, fp32 on CPU
    device: Optional[str] = None       # None = cuda if available (device_map="auto" across GPUs), else cpu


@dataclass
class LLMConfig:
    """One LLM client (`crowdselect_lib.llm`): Direct score, Instag, SelectLLM, judges, demo.

    backend ``openai``: any OpenAI-compatible endpoint (`base_url`, key from the environment variable
    named by `api_key_env`); ``local``: a transformers chat model (offline: SmolLM2-135M-Instruct);
    ``replay``: answers only from the disk cache, failing on a miss. Every reply is cached on disk.
    """
    backend: Literal["openai", "local", "replay"] = "local"
    model: str = "smollm2-135m-instruct"
    base_url: Optional[str] = None     # None = https://api.openai.com/v1
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 8           # requests in flight at once (openai backend)
    max_retries: int = 5               # retries on 429/5xx/timeouts/malformed bodies, with exponential backoff
    backoff_s: float = 1.0             # first backoff; doubles per retry (with jitter)
    backoff_max_s: float = 60.0
    timeout_s: float = 120.0
    cache_dir: Optional[str] = None    # default <run>/cache/llm
    temperature: float = 0.0
    top_p: float = 1.0
    seed: Optional[int] = None
    max_new_tokens: int = 256
    local_batch_size: int = 8          # prompts per generate() call (local backend)
    device: Optional[str] = None       # local backend; None = cuda if available else cpu


@dataclass
class BaselinesConfig:
    """Table 2 / 10 / 12 baselines (notebook 06; `baselines`, `ifd`, `selectllm`). Defaults = offline demo."""
    methods: list[str] = field(default_factory=lambda: [
        "random", "length_top", "length_bottom", "reward_top", "reward_bottom",
        "direct_score", "instag", "ifd_no_pre", "ifd_pre", "selectllm", "coreset"])
    tokenizer: str = "smollm2-135m-instruct"   # Length baseline (paper: meta-llama/Llama-3.2-3B-Instruct)
    length_pair_longest: bool = False  # official code: pair Length picks with their longest answer
    llm_subset: Optional[int] = 12     # direct_score/instag rate this many random instructions (None = all); k scaled
    llm_max_retries: int = 1           # re-asks of a reply without a valid answer, then recorded as a failure
    direct_score_dimension: str = "accuracy"   # Alpagasus' rated dimension
    selectllm_subset: Optional[int] = 40   # SelectLLM candidates (None = all); one LLM call per query of K
    selectllm_clusters: int = 10       # K = instructions per SelectLLM query; K >= N/k gives every query a pick
    ifd_model: Optional[str] = None    # None = training.student
    ifd_subset: Optional[int] = 30     # IFD scores this many random instructions (None = all); k scaled
    ifd_batch_size: int = 8
    ifd_max_length: int = 256          # tokens of prompt + answer; longer answers are cut and counted
    ifd_pre_sample: int = 16           # pre-experience fine-tuning sample (ifd_pre)
    ifd_pre_steps: Optional[int] = 2   # None = training.epochs over the sample
    ifd_pre_training: dict[str, Any] = field(default_factory=lambda: {"warmup_steps": 0, "learning_rate": 1e-4})


@dataclass
class TrainingConfig:
    """Student fine-tuning, appendix B.2 / Table 6 / Table 17 (notebook 07, `crowdselect_lib.training`).

    Defaults are the offline CPU demo (SmolLM2-135M, a few steps, short sequences); `params/paper.yaml`
    sets Table 6 (lr 1e-5, 3 epochs, batch 1 x accumulation 2, AdamW, cosine, 150 warmup, length 2048).
    """
    student: str = "smollm2-135m-instruct"
    students: Optional[list[str]] = None   # several students in one run (paper: 4); None = [student]
    methods: list[Literal["sft_full", "sft_lora", "dpo", "simpo", "orpo"]] = field(
        default_factory=lambda: ["sft_lora", "sft_full", "dpo"])
    subsets: Optional[list[str]] = field(default_factory=lambda: ["crowdselect"])  # None = every selection
    learning_rate: float = 1e-4
    epochs: float = 1.0
    per_device_batch_size: int = 2
    gradient_accumulation_steps: int = 1
    optim: str = "adamw_torch"         # AdamW (Table 6)
    lr_scheduler: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_length: int = 256              # tokens per example (prompt + answer); longer ones are truncated
    max_steps: int = 3                 # optimizer steps; -1 = run `epochs` epochs
    preference_max_steps: Optional[int] = 2  # DPO/SimPO/ORPO steps (demo: fewer, they cost ~3x); None = max_steps
    logging_steps: int = 1
    save_steps: int = 50               # checkpoint every N steps (a killed run resumes from the last one)
    save_total_limit: int = 1
    keep_checkpoints: bool = False     # keep checkpoint-*/ after a run finished (they hold optimizer states)
    eval_fraction: float = 0.1         # held-out share of each subset for the eval loss (0 = no eval)
    eval_steps: Optional[int] = None   # evaluate every N steps too; None = only at the end
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: Optional[list[str]] = None  # None = every linear layer ("all-linear")
    preference_lora: bool = False      # DPO/SimPO/ORPO through a LoRA adapter instead of full weights
    dpo_beta: float = 0.1
    simpo_beta: float = 2.0            # SimPO paper's beta range 2.0-2.5
    simpo_gamma: float = 0.5           # SimPO target reward margin
    orpo_beta: float = 0.1             # ORPO lambda
    seeds: list[int] = field(default_factory=lambda: [42])
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto = bf16 on GPU, fp32 on CPU
    gradient_checkpointing: Optional[bool] = None  # None = on for GPU, off for CPU
    demo_examples: Optional[int] = 24  # train on the first N rows of each subset only; None = all


@dataclass
class JudgeConfig:
    """MT-Bench and Arena-Hard-Auto v0.1 judging (paper §4.1; notebook 08; `judge`, `generation`, `benchdata`).

    Defaults are the offline demo: a few questions per benchmark, short answers, one repetition, the proxy
    judge (embedding similarity, no network; never MT-Bench/Arena-Hard). Paper: DeepSeek-V3 judge through an
    OpenAI-compatible API, all 80 / 500 questions, 1024 new tokens per turn, 3 repetitions.
    """
    benchmarks: list[Literal["mt_bench", "arena_hard"]] = field(default_factory=lambda: ["mt_bench", "arena_hard"])
    data_dir: Optional[str] = None     # parent of mt_bench/ and arena_hard_v0.1/ (tests/CI: ../shared/data); None = download
    offline_standin: bool = True       # no data_dir and the download fails: packaged stand-ins (demo only; paper: false)
    judge: Literal["proxy", "llm"] = "proxy"
    judge_model: str = "deepseek-chat"  # paper: DeepSeek-V3 (served as deepseek-chat)
    judge_base_url: Optional[str] = None  # paper: https://api.deepseek.com/v1
    judge_api_key_env: str = "DEEPSEEK_API_KEY"
    judge_max_concurrency: int = 8
    proxy_embedding: str = "all-MiniLM-L6-v2"
    base_student: Optional[str] = None  # the untouched student (Arena-Hard anchor); None = training.student(s)
    students: Optional[list[str]] = None  # models/folders to judge besides the base; None = notebook 07's models
    latest_only: bool = True           # with students=None: judge only the newest trained model (demo)
    student_backend: Literal["local", "openai"] = "local"   # openai = a vLLM / OpenAI-compatible server
    student_base_url: Optional[str] = None
    student_api_key_env: str = "OPENAI_API_KEY"
    batch_size: int = 8                # prompts per generate() call (local) / requests in flight (openai)
    n_questions: Optional[int] = 4     # questions per benchmark; None = all (80 / 500)
    pick: Literal["round_robin", "shortest"] = "shortest"  # which n_questions: round-robin over categories, or shortest prompts (CPU demo)
    max_new_tokens: int = 64           # per turn (paper: 1024)
    repetitions: int = 1               # paper: 3 (generation seed = run.seed + repetition)
    anchor: Optional[str] = None       # Arena-Hard anchor system; None = the (first) untouched base student ("base")
    n_bootstrap: int = 100
    interval: Literal["percentile", "official_v0.1"] = "percentile"
    confirm_cost: bool = False         # must be true to start a paid run above max_calls_without_confirm
    max_calls_without_confirm: int = 200


@dataclass
class GridCell:
    """One cell of a table's grid: a run under ``<run.name>/<name>`` with these dotted overrides."""
    name: str                          # folder of the cell's run, also its id in the results
    label: Optional[str] = None        # header shown in the rendered table (default: name)
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TablesConfig:
    """Which paper table a params file regenerates (notebook 09, `make table T=N`); see `tables.TABLES`."""
    table: Optional[str] = None        # "1".."19"; None = render `single_run_tables` from this one run
    grid: list[GridCell] = field(default_factory=list)   # empty = the run itself is the only cell
    notebooks: Optional[list[str]] = None  # notebooks each cell runs (None = every one before 09)
    rows: Optional[list[str]] = None   # selection names shown as rows (None = every one found)
    train_method: Optional[str] = None  # training method whose scores fill the table (None = the only one)
    benchmarks: list[Literal["mt_bench", "arena_hard"]] = field(
        default_factory=lambda: ["mt_bench", "arena_hard"])
    single_run_tables: list[str] = field(default_factory=lambda: ["2", "18"])
    formats: list[Literal["markdown", "latex", "html"]] = field(
        default_factory=lambda: ["markdown", "latex", "html"])
    figures_dir: Optional[str] = None  # None = figures/ beside the runs root (the repo's figures/)


@dataclass
class RunConfig:
    run: RunSection = field(default_factory=RunSection)
    zoo: ZooConfig = field(default_factory=ZooConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)
    description: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The resolved config, shown at the top of every executed notebook (house rule 1)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def digest(self) -> str:
        """Short hash of the resolved config (recorded in manifests)."""
        return digest(self.to_dict())
