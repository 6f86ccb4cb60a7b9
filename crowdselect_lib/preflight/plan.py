"""The plan of a params file before it runs: what each step does, how many LLM calls and tokens, what it costs.

Counts follow the config exactly; tokens are estimates from `TokenAssumptions` (rough averages, not measured;
student answers are counted at their cap `judge.max_new_tokens`, so judge prompts are an upper side estimate).
Dollars use ``judge.price_per_mtok_in/out`` for the judge and for LLM-baseline calls sent to the same model and
endpoint; other LLM calls are counted but not priced. Grid cells share identical steps (same settings = same step
key), so a step whose settings repeat in another cell is counted once.

- trainings = subsets x students x methods x seeds (`training.subset_names`: the table's printed rows);
  optimizer steps per training = ceil(epochs x ceil(ceil(n / (batch x world)) / accumulation)), n = the subset's
  k (or `demo_examples`) less round(k x eval_fraction) held out; `max_steps` > 0 replaces that.
- judged systems = every trained system + each untouched student and the anchor (`judge.systems` when set);
  with `judge.judge: heldout_loss` each costs one local forward pass per held-out item and no judge call;
  answers per system = 2 x MT-Bench questions (two turns) + Arena-Hard questions, each at most its benchmark's
  max_new_tokens; judge calls = repetitions x (one per MT-Bench turn + two Arena-Hard games per question).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from ..config import RunConfig
from ..training import subset_names

MT_BENCH_QUESTIONS, ARENA_HARD_QUESTIONS = 80, 500
ZOO_SIZES = {"magpie": (100_000, 19), "alpacaeval": (805, 56)}   # (instructions, models) when downloaded; demo: x 19
SFT_METHODS = ("sft_full", "sft_lora")


@dataclass(frozen=True)
class TokenAssumptions:
    """Average tokens per item (rough; edit to your data): zoo texts, judge and rater prompts around the text
    they carry, and the replies."""
    instruction: int = 150
    response: int = 450
    mt_bench_prompt: int = 400         # FastChat judge template + question (+ reference answer), per turn judged
    mt_bench_reply: int = 300
    arena_prompt: int = 1200           # Arena-Hard system prompt + question + the gpt-4-0314 baseline answer
    arena_reply: int = 800             # the judge's own answer, its comparison and the verdict
    rate_prompt: int = 150             # Direct-score / Instag template
    rate_reply: int = 100
    selectllm_prompt: int = 150
    selectllm_reply: int = 30
    student_answer: int = 550          # mean student answer (issue 20's rehearsal: ~63M tokens for 172 x 660 answers)


@dataclass
class PlanRow:
    step: str
    count: int
    unit: str
    detail: str = ""
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float | None = None
    steps: int = 0                     # optimizer steps (training rows)
    systems: int = 0                   # judged systems (generation row)


@dataclass
class Plan:
    rows: list[PlanRow] = field(default_factory=list)

    def row(self, step: str) -> PlanRow:
        return next(r for r in self.rows if r.step == step)

    @property
    def llm_calls(self) -> int:
        return sum(r.llm_calls for r in self.rows)

    @property
    def usd(self) -> float:
        return sum(r.usd or 0.0 for r in self.rows)

    @property
    def unpriced_calls(self) -> int:
        return sum(r.llm_calls for r in self.rows if r.llm_calls and r.usd is None)


def _key(cfg: RunConfig, *sections: str) -> str:
    return json.dumps({s: asdict(getattr(cfg, s)) for s in sections}, sort_keys=True, default=str)


def zoo_size(cfg: RunConfig, measured: dict | None = None) -> tuple[int, int]:
    """(instructions, models) of the configured zoo: `measured[zoo.data_dir]` (the local folder's real size, from
    `data.check_zoo_dir`), else the simulated zoo's or the downloaded source's size."""
    if measured and cfg.zoo.data_dir in measured:
        return measured[cfg.zoo.data_dir]
    if cfg.zoo.source == "local":   # its size is measured from the folder (`data.check_zoo_dir`) or unknown
        return 0, 0
    n, m = (cfg.zoo.n_instructions, 19) if cfg.zoo.source == "demo" else ZOO_SIZES[cfg.zoo.source]
    return (min(n, cfg.zoo.limit) if cfg.zoo.limit else n), m


def train_examples(cfg: RunConfig) -> int:
    t = cfg.training
    n = min(cfg.selection.k, t.demo_examples) if t.demo_examples else cfg.selection.k
    return n - round(n * t.eval_fraction)


def train_steps(cfg: RunConfig, method: str, world_size: int = 1) -> int:
    """Optimizer steps of one training (module docstring)."""
    t = cfg.training
    cap = t.max_steps if method in SFT_METHODS or t.preference_max_steps is None else t.preference_max_steps
    if cap > 0:
        return cap
    batches = math.ceil(train_examples(cfg) / (t.per_device_batch_size * world_size))
    return math.ceil(t.epochs * math.ceil(batches / t.accumulation(world_size)))




def _price(cfg: RunConfig, prompt: int, completion: int, same_endpoint: bool = True) -> float | None:
    j = cfg.judge
    if not same_endpoint or j.price_per_mtok_in is None or j.price_per_mtok_out is None:
        return None
    return (prompt * j.price_per_mtok_in + completion * j.price_per_mtok_out) / 1e6


def _add(rows: dict, step: str, unit: str, count: int = 0, calls: int = 0, prompt: int = 0, completion: int = 0,
         usd: float | None = None, detail: str = "") -> None:
    r = rows.setdefault(step, PlanRow(step, 0, unit, detail))
    r.count += count
    r.llm_calls += calls
    r.prompt_tokens += prompt
    r.completion_tokens += completion
    if usd is not None:
        r.usd = (r.usd or 0.0) + usd
    r.detail = detail or r.detail


def plan(configs: dict[str, RunConfig], world_size: int = 1, tokens: TokenAssumptions = TokenAssumptions(),
         zoo_sizes: dict | None = None) -> Plan:
    """The plan of every grid cell's config (`checks.cells`), identical steps counted once; `zoo_sizes`: the real
    (instructions, models) of each local ``zoo.data_dir``."""
    tk, rows, seen = tokens, {}, set()

    def once(*key) -> bool:
        if key in seen:
            return False
        seen.add(key)
        return True

    for cfg in configs.values():
        n, m = zoo_size(cfg, zoo_sizes)
        zoo = _key(cfg, "zoo")
        for rm in cfg.scoring.reward_models:
            if once("score", rm, zoo, _key(cfg, "scoring")):
                pairs = n * m if cfg.scoring.score_all else min(cfg.scoring.verify_sample, n * m)
                _add(rows, "reward scoring", "pairs", pairs, detail=", ".join(cfg.scoring.reward_models))
        if once("embed", cfg.embedding.model, zoo):
            _add(rows, "embedding", "instructions", n, detail=cfg.embedding.model)
        b, llm, j = cfg.baselines, cfg.llm, cfg.judge
        same = llm.backend == "openai" and llm.model == j.judge_model and llm.base_url == j.judge_base_url
        rated = min(b.llm_subset or n, n)
        for method in b.methods:
            model = (b.ifd_model or cfg.training.student) if method.startswith("ifd") else llm.model
            if not once("baseline", method, model, zoo, _key(cfg, "llm", "baselines")):
                continue
            if method in ("direct_score", "instag"):
                out = b.direct_score_max_new_tokens if method == "direct_score" else b.instag_max_new_tokens
                p = rated * (tk.rate_prompt + tk.instruction + (tk.response if method == "direct_score" else 0))
                c = rated * min(tk.rate_reply, out)
                calls = rated
            elif method == "selectllm":
                cand = min(b.selectllm_subset or n, n)
                K = b.selectllm_clusters or math.ceil(cand / cfg.selection.k)
                calls = min(cand // K, cfg.selection.k)
                p = calls * (tk.selectllm_prompt + K * tk.instruction)
                c = calls * min(tk.selectllm_reply, b.selectllm_max_new_tokens)
            elif method.startswith("ifd"):
                scored = min(b.ifd_subset or n, n)
                _add(rows, "IFD scoring", "forward passes", 2 * scored,
                     detail="the student" + (", + a pre-experience training on "
                                             f"{b.ifd_pre_clusters * b.ifd_pre_per_cluster}"
                                             if "ifd_pre" in b.methods else ""))
                continue
            else:
                continue
            priced = _price(cfg, p, c, same) if llm.backend == "openai" else 0.0
            _add(rows, f"LLM baseline {method}", "calls", calls, calls if llm.backend == "openai" else 0, p, c,
                 priced, detail=f"{llm.backend} {llm.model}" + ("" if priced is not None else " (not priced)"))
        upstream = _key(cfg, "zoo", "metrics", "scoring", "embedding", "clustering", "selection", "baselines")
        tr = {k: v for k, v in asdict(cfg.training).items() if k not in ("student", "students")}
        systems = []
        for subset in subset_names(cfg):
            for student in cfg.training.students or [cfg.training.student]:
                for method in cfg.training.methods:
                    for seed in cfg.training.seeds:
                        key = ("train", upstream, json.dumps(tr, sort_keys=True), subset, student, method, seed)
                        systems.append(key)
                        if once(*key):
                            steps = train_steps(cfg, method, world_size)
                            _add(rows, f"train {method}", "trainings", 1, detail=f"{steps} steps each")
                            rows[f"train {method}"].steps += steps
        from .checks import base_models

        systems += [("base", s) for s in base_models(cfg)]
        if j.systems is not None:
            systems = [("system", s) for s in j.systems]
        nq = {"mt_bench": min(j.n_questions or MT_BENCH_QUESTIONS, MT_BENCH_QUESTIONS),
              "arena_hard": min(j.n_questions or ARENA_HARD_QUESTIONS, ARENA_HARD_QUESTIONS)}
        cap = {"mt_bench": j.mt_bench_max_new_tokens, "arena_hard": j.arena_hard_max_new_tokens}
        answers = {"mt_bench": 2 * nq["mt_bench"], "arena_hard": nq["arena_hard"]}   # MT-Bench: two turns
        judge_key, reps = _key(cfg, "judge"), j.repetitions
        for system in systems:
            if not once("judge", system, judge_key):
                continue
            if j.judge == "heldout_loss":   # no judge: one forward pass per held-out item (`judge.heldout`)
                items = j.heldout_items or round(cfg.zoo.holdout_fraction * n)
                _add(rows, "held-out loss", "forward passes", items, detail="local, no judge, no answer generated")
                rows["held-out loss"].systems += 1
                continue
            for bench in j.benchmarks:
                q, A = nq[bench], cap[bench]
                _add(rows, f"answer {bench}", "answers", answers[bench], detail=f"{j.student_backend}, <= {A} "
                     "tokens each")
                rows[f"answer {bench}"].completion_tokens += answers[bench] * A
                rows[f"answer {bench}"].systems += 1
                if bench == "mt_bench":   # turn 1 carries one answer, turn 2 both
                    calls, p, c = 2 * q, q * (2 * tk.mt_bench_prompt + 3 * A), 2 * q * tk.mt_bench_reply
                else:                     # two games per question, each with our answer
                    calls, p, c = 2 * q, 2 * q * (tk.arena_prompt + A), 2 * q * tk.arena_reply
                calls, p, c = calls * reps, p * reps, c * reps
                if j.judge == "proxy":
                    _add(rows, f"judge {bench}", "judgments", calls, detail="proxy judge (local, free)")
                else:
                    _add(rows, f"judge {bench}", "calls", calls, calls, p, c, _price(cfg, p, c),
                         detail=j.judge_model)
    return Plan(list(rows.values()))


def _fmt_usd(v: float | None) -> str:
    return "-" if v is None else f"${v:,.2f}"


def plan_lines(p: Plan) -> list[str]:
    """The plan as a fixed-width table, then the totals."""
    out = ["PLAN (tokens are estimates; preflight.plan.TokenAssumptions)",
           f"  {'step':<26}{'count':>12} {'unit':<15}{'LLM calls':>11}{'prompt tok':>14}{'compl. tok':>13}"
           f"{'USD':>11}  detail"]
    for r in p.rows:
        detail = r.detail
        if r.steps:
            detail = f"{r.steps:,} optimizer steps ({detail})"
        if r.systems:
            detail = f"{r.systems} systems, {detail}"
        out.append(f"  {r.step:<26}{r.count:>12,} {r.unit:<15}{r.llm_calls:>11,}{r.prompt_tokens:>14,}"
                   f"{r.completion_tokens:>13,}{_fmt_usd(r.usd):>11}  {detail}")
    prompt = sum(r.prompt_tokens for r in p.rows if r.llm_calls)
    completion = sum(r.completion_tokens for r in p.rows if r.llm_calls)
    out.append(f"  total: {p.llm_calls:,} LLM calls, ~{prompt:,} prompt + ~{completion:,} completion tokens, "
               f"~{_fmt_usd(p.usd)}" + (f" + {p.unpriced_calls:,} unpriced calls" if p.unpriced_calls else ""))
    return out
