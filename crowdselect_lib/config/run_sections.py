"""Params sections of the chapters that use a selection: llm, baselines (06), training (07), judge (08),
tables (09). Defaults are the paper's values; `params/demo.yaml` holds the offline scale."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from ..runs.run import check_unique
from .base import TRAIN_METHODS, ConfigError, check_rules, home, seed_ok


@dataclass
class LLMConfig:
    """One LLM client (`crowdselect_lib.llm`): Direct score, Instag, SelectLLM (the paper labels with DeepSeek).

    backend ``openai``: any OpenAI-compatible endpoint (`base_url`, key from the environment variable named by
    `api_key_env`; `extra_body` is merged into every request, e.g. ``{"thinking": {"type": "disabled"}}``);
    ``local``: a transformers chat model (offline: SmolLM2-135M-Instruct); ``replay``: answers only from the disk
    cache of the endpoint `replay_of` + `base_url` + `model`, failing on a miss. Every reply is cached on disk,
    keyed by (backend, base_url, model, request, repetition). Defaults: the paper's DeepSeek-V3, pinned by its
    exact model id at an OpenAI-compatible provider (``deepseek-chat`` is a moving alias, retired 2026-07-24).
    """
    backend: Literal["openai", "local", "replay"] = "openai"
    model: str = "deepseek-ai/DeepSeek-V3"
    base_url: Optional[str] = "https://api.together.xyz/v1"   # None = https://api.openai.com/v1
    api_key_env: str = "TOGETHER_API_KEY"
    extra_body: dict[str, Any] = field(default_factory=dict)   # provider fields merged into each request body
    replay_of: Literal["openai", "local"] = "openai"           # backend 'replay': whose recorded replies
    max_concurrency: int = 8           # requests in flight at once (openai backend)
    max_retries: int = 5               # retries on 429/5xx/timeouts/malformed bodies, with exponential backoff
    backoff_s: float = 1.0             # first backoff; doubles per retry (with jitter)
    backoff_max_s: float = 60.0        # also caps a server's Retry-After
    timeout_s: float = 120.0           # deadline of one attempt: connect, headers and body together
    max_reply_bytes: int = 16 * 2 ** 20    # a bigger reply body (after decompression) is refused, not cached
    cache_dir: Optional[str] = None    # default <run>/cache/llm
    temperature: float = 0.0
    top_p: Optional[float] = None      # None = the model's / server's own default (not sent)
    seed: Optional[int] = None
    max_new_tokens: int = 256
    local_batch_size: int = 8          # prompts per generate() call (local backend)
    device: Optional[str] = None       # local backend; None = cuda if available else cpu (models.device_and_dtype)

    def __post_init__(self):
        self.cache_dir = home(self.cache_dir, "llm.cache_dir")
        check_llm_limits(self, "llm")
        check_rules(self, "llm", [("max_reply_bytes", self.max_reply_bytes >= 1024, "must be >= 1024")])


def check_llm_limits(c, section: str) -> None:
    """Load-time checks of an LLM client's numbers (a `ConfigError` naming the key)."""
    rules = [("max_concurrency", c.max_concurrency >= 1, "must be >= 1 (0 would never send a request)"),
             ("max_retries", c.max_retries >= 0, "must be >= 0 (0 = one attempt, no retry)"),
             ("backoff_s", c.backoff_s >= 0, "must be >= 0"),
             ("backoff_max_s", c.backoff_max_s >= c.backoff_s, "must be >= backoff_s"),
             ("timeout_s", c.timeout_s > 0, "must be > 0"),
             ("temperature", c.temperature >= 0, "must be >= 0"),
             ("top_p", c.top_p is None or 0 < c.top_p <= 1, "must be in (0, 1] or null"),
             ("max_new_tokens", c.max_new_tokens >= 1, "must be >= 1"),
             ("local_batch_size", c.local_batch_size >= 1, "must be >= 1")]
    check_rules(c, section, rules)
    clash = sorted(set(c.extra_body) & {"model", "messages"})
    if clash:
        raise ConfigError(f"{section}.extra_body: may not set {clash} (they are the request itself)")


@dataclass
class BaselinesConfig:
    """Baselines of Tables 2, 10, 12 (chapter 06, `crowdselect_lib.baselines`; paper appendix B.3).

    Defaults are the paper's (every instruction, k = `selection.k`) and the official code's rules; the demo scale
    (candidate subsets, short replies, a worked example for the tiny local LLM) lives in params/demo.yaml only.
    """
    # the paper's baselines (Tables 2, 10, 12); extras: selectllm, coreset, random_s<N> (Random with seed N)
    methods: list[str] = field(default_factory=lambda: [
        "random", "length_top", "length_bottom", "reward_top", "reward_bottom", "direct_score",
        "direct_score_bottom", "instag", "ifd_no_pre", "ifd_pre"])
    # Random's answers: `selection` = the method's own response choice (`selection.response`; eq. 2's best by
    # default, as the official script pairs them), so Random differs from the method in its instructions only (a
    # fair Random, issue 24); best | random = that strategy whatever the method uses (paper text: a random one)
    random_response: Literal["selection", "best", "random"] = "selection"
    random_seed: int = 1               # seed of "random" (official script: six files, seeds 1..6: random_s2..s6)
    random_draw: Literal["python", "numpy"] = "python"   # python: the official random.seed(s); random.sample(...)
    tokenizer: str = "meta-llama/Llama-3.2-3B-Instruct"   # Length counts tokens of this tokenizer (appendix B.3)
    length_pairing: Literal["official", "best"] = "official"   # official: longest / shortest non-empty answer
    reward_bottom_rule: Literal["official", "best"] = "official"   # official: minimum score, worst answer
    subset_k: Optional[int] = None     # k of a baseline run on a candidate subset; None = selection.k scaled
    llm_subset: Optional[int] = None   # Direct score / Instag candidates (random, seeded); None = every instruction
    llm_max_retries: int = 2           # re-asks of a reply without a valid answer, then a counted failure
    llm_example: bool = False          # one worked example turn before each request (ours, for tiny local LLMs)
    confirm_cost: bool = False         # must be true to send more than max_calls_without_confirm paid LLM requests
    max_calls_without_confirm: int = 200   # the LLM baselines' cost gate (openai backend; cached replies are free)
    direct_score_dimension: Literal["accuracy", "helpfulness"] = "accuracy"   # Alpagasus' two prompts
    direct_score_max_new_tokens: int = 256    # Alpagasus' max_tokens (the grade is on the first line)
    instag_tagging: Literal["open", "official_labels"] = "open"   # InsTag's open tags | official code's 29 labels
    instag_rule: Literal["official", "instag"] = "official"   # official choose_by_tag.py | InsTag's Algorithm 1
    instag_max_new_tokens: int = 1024  # long tag lists must not be cut off (cut-off replies are counted)
    selectllm_subset: Optional[int] = None    # SelectLLM candidates; None = every instruction
    selectllm_clusters: Optional[int] = None  # K = clusters = instructions per query; None = ceil(N / k)
    selectllm_max_new_tokens: int = 64
    ifd_model: Optional[str] = None    # None = training.student
    ifd_prompt: Literal["alpaca", "chat"] = "alpaca"   # Cherry_LLM's Alpaca prompt | the model's chat template
    ifd_subset: Optional[int] = None   # IFD candidates; None = every instruction
    ifd_batch_size: int = 8
    ifd_max_length: int = 512          # Cherry_LLM's max_length (prompt + answer tokens)
    ifd_pre_clusters: int = 100        # Cherry_LLM's pre-experience sample: K-means clusters ...
    ifd_pre_per_cluster: int = 10      # ... instructions per cluster ...
    ifd_pre_percentiles: list[float] = field(default_factory=lambda: [25.0, 75.0])  # ... of this perplexity band
    ifd_pre_steps: Optional[int] = None    # None = training.epochs over the sample
    ifd_pre_training: dict[str, Any] = field(default_factory=dict)   # training fields replaced for pre-experience
    ifd_pre_format: Literal["alpaca", "chat"] = "alpaca"   # pre-experience rows: Cherry's Alpaca prompt | chat template
    ifd_cut_answers: Literal["skip", "score"] = "skip"     # answer cut at max_length: Cherry's skip (counted) | scored

    def __post_init__(self):
        for key in ("subset_k", "llm_subset", "selectllm_subset", "selectllm_clusters", "ifd_subset", "ifd_pre_steps"):
            v = getattr(self, key)
            if v is not None and v <= 0:
                raise ConfigError(f"baselines.{key}: must be positive or null, got {v}")
        for key in ("ifd_batch_size", "ifd_max_length", "ifd_pre_clusters", "ifd_pre_per_cluster",
                    "direct_score_max_new_tokens", "instag_max_new_tokens", "selectllm_max_new_tokens"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"baselines.{key}: must be positive, got {getattr(self, key)}")
        if self.max_calls_without_confirm < 0:
            raise ConfigError(f"baselines.max_calls_without_confirm: must be >= 0, got {self.max_calls_without_confirm}")
        if not seed_ok(self.random_seed):
            raise ConfigError(f"baselines.random_seed: must be within 0 .. 2**32 - 1, got {self.random_seed}")
        if self.llm_max_retries < 0:
            raise ConfigError(f"baselines.llm_max_retries: must be >= 0, got {self.llm_max_retries}")
        lo_hi = self.ifd_pre_percentiles
        if len(lo_hi) != 2 or not 0 <= lo_hi[0] < lo_hi[1] <= 100:
            raise ConfigError(f"baselines.ifd_pre_percentiles: expected [low, high] with 0 <= low < high <= 100, "
                              f"got {lo_hi}")


@dataclass
class TrainingConfig:
    """Student fine-tuning (appendix B.2, Table 6, Table 17; chapter 07, `crowdselect_lib.training`).

    Defaults = the paper: Table 6 (lr 1e-5, 3 epochs, per-device batch 1 x accumulation 2 on the paper's 8-GPU
    server = global batch 16 (assuming all 8 GPUs trained), AdamW, cosine, 150 warmup steps, max length 2048), every row of every subset, three seeds, no held-out
    split (the paper trains on all 1,000). LoRA rank/alpha/dropout are LLaMA-Factory's defaults (the paper gives
    none). `params/demo.yaml` spells out the CPU demo scale.
    """
    student: str = "meta-llama/Llama-3.2-3B-Instruct"
    students: Optional[list[str]] = None   # several students in one run (paper: 4); None = [student]
    student_revisions: dict[str, str] = field(default_factory=dict)  # student -> hub commit/tag (pin for a real run)
    methods: list[Literal["sft_full", "sft_lora", "dpo", "simpo", "orpo"]] = field(
        default_factory=lambda: ["sft_full"])
    subsets: Optional[list[str]] = None    # selection subsets / baselines to train on; None = all of the run's
    learning_rate: float = 1e-5
    epochs: float = 3.0
    per_device_batch_size: int = 1
    global_batch_size: Optional[int] = 16  # Table 6: 8 GPUs x 1 x 2; accumulation = global / (per-device x GPUs)
    gradient_accumulation_steps: Optional[int] = None  # fixed accumulation instead (global then follows the GPUs)
    optim: str = "adamw_torch"             # AdamW (Table 6)
    lr_scheduler: str = "cosine"
    warmup_steps: int = 150
    weight_decay: float = 0.0
    max_length: int = 2048                 # tokens per example (prompt + answer); longer ones are truncated
    max_steps: int = -1                    # optimizer steps; -1 = `epochs` epochs
    preference_max_steps: Optional[int] = None  # DPO/SimPO/ORPO steps; None = max_steps
    preference_learning_rate: Optional[float] = None  # DPO/SimPO/ORPO learning rate; None = learning_rate
    logging_steps: int = 10
    save_steps: Optional[int] = None       # checkpoint every N steps; None = every quarter of the run
    save_total_limit: int = 1
    keep_checkpoints: bool = False         # keep checkpoint-*/ after a run finished (they hold optimizer states)
    eval_fraction: float = 0.0             # held-out share for an eval loss (0 = train on all rows, as the paper)
    eval_steps: Optional[int] = None       # evaluate every N steps too; None = only at the end
    lora_r: int = 8                        # LLaMA-Factory defaults: rank 8, alpha 2 x rank, dropout 0, all linear
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: Optional[list[str]] = None  # None = every linear layer ("all-linear")
    preference_lora: bool = False          # DPO/SimPO/ORPO through a LoRA adapter instead of full weights
    dpo_beta: float = 0.1
    simpo_beta: float = 2.0                # SimPO paper's beta range 2.0-2.5 (reading: LLaMA-Factory's pref_beta 0.1)
    simpo_gamma: float = 0.5               # SimPO target reward margin
    orpo_beta: float = 0.1                 # ORPO lambda
    seeds: list[int] = field(default_factory=lambda: [42, 43, 44])  # "each experiment 3 times" (§4.1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # weights; auto = float32 master weights
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = "auto"  # autocast; auto = bf16 on a GPU, none on a CPU
    gradient_checkpointing: Optional[bool] = None  # None = on for GPU, off for CPU
    replace_eos: bool = True               # end-of-turn token as EOS (LLaMA-Factory's replace_eos): base students stop
    demo_examples: Optional[int] = None    # train on the first N rows of each subset only (demo); None = all

    def __post_init__(self):
        bad = [m for m in self.methods if m not in TRAIN_METHODS]
        check_rules(self, "training", [
            ("methods", not bad and len(self.methods) > 0, f"must list methods of {list(TRAIN_METHODS)}"),
            ("learning_rate", 0 < self.learning_rate < float("inf"), "must be a finite number > 0"),
            ("preference_learning_rate", self.preference_learning_rate is None
             or 0 < self.preference_learning_rate < float("inf"), "must be a finite number > 0 or null"),
            ("epochs", 0 < self.epochs < float("inf"), "must be a finite number > 0"),
            ("per_device_batch_size", self.per_device_batch_size >= 1, "must be >= 1"),
            ("global_batch_size", self.global_batch_size is None or self.global_batch_size >= 1, "must be >= 1 or null"),
            ("gradient_accumulation_steps", self.gradient_accumulation_steps is None
             or self.gradient_accumulation_steps >= 1, "must be >= 1 or null"),
            ("global_batch_size", self.global_batch_size is not None or self.gradient_accumulation_steps is not None,
             "and gradient_accumulation_steps are both null: set one"),
            ("max_steps", self.max_steps == -1 or self.max_steps >= 1, "must be >= 1, or -1 for `epochs` epochs"),
            ("preference_max_steps", self.preference_max_steps is None or self.preference_max_steps == -1
             or self.preference_max_steps >= 1, "must be >= 1, -1 or null"),
            ("warmup_steps", self.warmup_steps >= 0, "must be >= 0"),
            ("weight_decay", 0 <= self.weight_decay < float("inf"), "must be a finite number >= 0"),
            ("eval_steps", self.eval_steps is None or self.eval_steps >= 1, "must be >= 1 or null"),
            ("lora_alpha", self.lora_alpha >= 1, "must be >= 1"),
            ("dpo_beta", 0 < self.dpo_beta < float("inf"), "must be a finite number > 0"),
            ("simpo_beta", 0 < self.simpo_beta < float("inf"), "must be a finite number > 0"),
            ("simpo_gamma", 0 <= self.simpo_gamma < float("inf"), "must be a finite number >= 0"),
            ("orpo_beta", 0 < self.orpo_beta < float("inf"), "must be a finite number > 0"),
            ("max_length", self.max_length >= 16, "must be >= 16"),
            ("logging_steps", self.logging_steps >= 1, "must be >= 1"),
            ("save_steps", self.save_steps is None or self.save_steps >= 1, "must be >= 1 or null"),
            ("save_total_limit", self.save_total_limit >= 1, "must be >= 1"),
            ("eval_fraction", 0.0 <= self.eval_fraction < 1.0, "must be within [0, 1)"),
            ("lora_r", self.lora_r >= 1, "must be >= 1"),
            ("lora_dropout", 0.0 <= self.lora_dropout < 1.0, "must be within [0, 1)"),
            ("seeds", len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds), "must be distinct, at least one"),
            ("seeds", all(seed_ok(s) for s in self.seeds), "must be within 0 .. 2**32 - 1"),
            ("demo_examples", self.demo_examples is None or self.demo_examples >= 2, "must be >= 2 or null")])
        if self.subsets is not None:
            try:
                check_unique(list(self.subsets), "training.subsets entry")
            except ValueError as e:
                raise ConfigError(str(e)) from None

    def accumulation(self, world_size: int = 1) -> int:
        """Gradient accumulation on `world_size` processes: `gradient_accumulation_steps` when set, else
        `global_batch_size` / (per-device batch x world size), which must divide evenly (Table 6: 16 / (1 x 8) = 2)."""
        if self.gradient_accumulation_steps is not None:
            return self.gradient_accumulation_steps
        per_step = self.per_device_batch_size * world_size
        if self.global_batch_size % per_step:
            raise ConfigError(f"training.global_batch_size {self.global_batch_size} is not a multiple of "
                              f"per_device_batch_size {self.per_device_batch_size} x {world_size} process(es)")
        return self.global_batch_size // per_step


@dataclass
class JudgeConfig:
    """MT-Bench and Arena-Hard-Auto v0.1 judging (paper §4.1; `crowdselect_lib.judge`). Defaults = the paper.

    Judge: DeepSeek-V3 pinned by its exact id at an OpenAI-compatible provider (the paper used DeepSeek's API and
    Together; ``deepseek-chat`` is a moving alias, retired 2026-07-24). Every run records the model the server
    says it served. "Each experiment was conducted 3 times" = the three training seeds (`training.seeds`), each
    answered once and judged `repetitions` (1) time(s). Arena-Hard anchor: the untouched Llama-3.2-3B base for
    every student. `params/demo.yaml` spells out the demo (proxy judge, few questions, short answers).
    """
    benchmarks: list[Literal["mt_bench", "arena_hard"]] = field(default_factory=lambda: ["mt_bench", "arena_hard"])
    data_dir: Optional[str] = None     # parent of mt_bench/ and arena_hard_v0.1/ (tests/CI: ../shared/data); None = download
    offline_standin: bool = False      # no data_dir and the download fails: packaged stand-ins (offline demo only)
    n_questions: Optional[int] = None  # questions per benchmark; None = all (80 / 500)
    pick: Literal["round_robin", "shortest"] = "round_robin"   # which n_questions (shortest: cheap on a CPU)
    judge: Literal["proxy", "llm", "heldout_loss"] = "llm"   # heldout_loss: no judge (`judge.heldout`, issue 24)
    judge_model: str = "deepseek-ai/DeepSeek-V3"
    judge_base_url: Optional[str] = "https://api.together.xyz/v1"
    judge_api_key_env: str = "TOGETHER_API_KEY"
    judge_extra_body: dict[str, Any] = field(default_factory=dict)   # e.g. {"thinking": {"type": "disabled"}}
    judge_revision: Optional[str] = None   # the provider's version label of the model, if it documents one
    judge_max_concurrency: int = 8
    repetitions: int = 1               # judge samples per answer (each its own request and cache key)
    proxy_embedding: str = "all-MiniLM-L6-v2"
    systems: Optional[list[str]] = None   # systems to judge (names of judge.systems_table); None = all
    anchor: str = "meta-llama/Llama-3.2-3B"   # a system name, or an untouched model judged once and shared
    anchor_reading: Literal["reanchor", "baseline"] = "reanchor"   # judge vs gpt-4-0314, then re-anchor on
    #                                    `anchor` (ours) | `anchor` as the judge's baseline answer (fidelity.READINGS)
    student_backend: Literal["local", "openai"] = "local"   # openai = vLLM / any OpenAI-compatible server
    student_base_url: Optional[str] = None
    student_endpoints: dict[str, str] = field(default_factory=dict)     # system -> its own server's base_url
    student_served_names: dict[str, str] = field(default_factory=dict)  # system -> model name on the server
    student_api_key_env: str = "OPENAI_API_KEY"
    student_device: Optional[str] = None   # local students; None = models.device_and_dtype's rule
    batch_size: int = 8                # prompts per generate() call (local students)
    student_max_concurrency: int = 64  # requests in flight to a student server (openai; vLLM batches them itself)
    answer_chunk: Optional[int] = None   # questions per generation pass; None = all at once (no wait between
                                         # chunks: finished replies are cached as they arrive, so a kill resumes)
    mt_bench_max_new_tokens: int = 1024    # FastChat gen_model_answer
    arena_hard_max_new_tokens: int = 4096  # arena-hard-auto gen_answer
    n_bootstrap: int = 100
    interval: Literal["percentile", "official_v0.1"] = "percentile"
    confirm_cost: bool = False         # must be true to start a paid run above max_calls_without_confirm
    max_calls_without_confirm: int = 200
    price_per_mtok_in: Optional[float] = None   # USD per million prompt tokens (preflight's cost estimate)
    price_per_mtok_out: Optional[float] = None  # USD per million completion tokens; None = no dollar estimate
    heldout_items: Optional[int] = None    # judge heldout_loss: the first N held-out instructions; None = all
    heldout_max_length: int = 256          # judge heldout_loss: tokens of prompt + reference answer per item

    def __post_init__(self):
        rules = [("judge_max_concurrency", self.judge_max_concurrency >= 1, "must be >= 1"),
                 ("repetitions", self.repetitions >= 1, "must be >= 1"),
                 ("batch_size", self.batch_size >= 1, "must be >= 1"),
                 ("student_max_concurrency", self.student_max_concurrency >= 1, "must be >= 1"),
                 ("answer_chunk", self.answer_chunk is None or self.answer_chunk >= 1, "must be >= 1 or null"),
                 ("n_questions", self.n_questions is None or self.n_questions >= 1, "must be >= 1 or null"),
                 ("mt_bench_max_new_tokens", self.mt_bench_max_new_tokens >= 1, "must be >= 1"),
                 ("arena_hard_max_new_tokens", self.arena_hard_max_new_tokens >= 1, "must be >= 1"),
                 ("n_bootstrap", self.n_bootstrap >= 1, "must be >= 1"),
                 ("heldout_items", self.heldout_items is None or self.heldout_items >= 1, "must be >= 1 or null"),
                 ("heldout_max_length", self.heldout_max_length >= 16, "must be >= 16"),
                 ("max_calls_without_confirm", self.max_calls_without_confirm >= 0, "must be >= 0"),
                 ("price_per_mtok_in", self.price_per_mtok_in is None or 0 <= self.price_per_mtok_in < float("inf"),
                  "must be a finite number >= 0 (USD per million tokens) or null"),
                 ("price_per_mtok_out", self.price_per_mtok_out is None or 0 <= self.price_per_mtok_out < float("inf"),
                  "must be a finite number >= 0 (USD per million tokens) or null"),
                 ("benchmarks", len(self.benchmarks) == len(set(self.benchmarks)) > 0, "must be non-empty, no repeats")]
        self.data_dir = home(self.data_dir, "judge.data_dir")
        check_rules(self, "judge", rules)
        clash = sorted(set(self.judge_extra_body) & {"model", "messages"})
        if clash:
            raise ConfigError(f"judge.judge_extra_body: may not set {clash} (they are the request itself)")


@dataclass
class GridCell:
    """One cell of a table's grid: the table's config plus these dotted overrides, in the table's run directory."""
    name: str                          # plain name: the cell's id in the results and its notebooks' folder
    label: Optional[str] = None        # group/row label printed in the table (default: name)
    paper_group: Optional[str] = None  # the paper's group its rows sit beside (default: label), e.g. a demo student
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if "run.name" in self.overrides or "run.root" in self.overrides:
            raise ConfigError(f"tables.grid cell {self.name!r}: overrides cannot change run.name/run.root "
                              "(every cell runs in the table's run directory)")


@dataclass
class TablesConfig:
    """Which paper table a params file regenerates (chapter 09, `make table T=N`; `reporting.TABLES`).

    Defaults render the paper text's numbers (`version` acl) beside whatever this run judged."""
    table: Optional[str] = None        # "1".."18" (the paper text's numbering) or "v1-17"; None = single_run_tables
    grid: list[GridCell] = field(default_factory=list)   # empty = the run itself is the only cell
    notebooks: Optional[list[str]] = None  # chapters (stage names) each cell runs; None = the table's spec
    rows: Optional[list[str]] = None   # selection names shown (None = every one judged)
    train_method: Optional[str] = None  # method whose students fill the table; None = the paper's for that table
    paper_group: Optional[str] = None  # without a grid: the paper's group the run's rows sit beside
    benchmarks: list[Literal["mt_bench", "arena_hard"]] = field(
        default_factory=lambda: ["mt_bench", "arena_hard"])
    single_run_tables: list[str] = field(default_factory=lambda: ["2"])
    version: Literal["acl", "v1"] = "acl"   # the paper's values shown: the ACL text (default) or arXiv v1
    formats: list[Literal["markdown", "latex", "html"]] = field(
        default_factory=lambda: ["markdown", "latex", "html"])
    figures_dir: Optional[str] = None  # None = figures/ beside the runs root (the repo's figures/)

    def __post_init__(self):
        self.figures_dir = home(self.figures_dir, "tables.figures_dir")
