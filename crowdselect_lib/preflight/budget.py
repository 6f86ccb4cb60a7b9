"""GPU-hours, disk, wall time and dollars of a plan (`plan.plan`), from the rates table the package ships
(``crowdselect_lib/data/gpu_rates.csv``: step, rate, unit, basis, source).

Each rate says where it comes from: ``measured on <GPU>`` or an estimate / CPU extrapolation with its arithmetic.
None is measured on a GPU yet (no GPU was lent to this package's sessions); edit the file with your own numbers.
Answers are counted at `TokenAssumptions.student_answer` tokens each (at most their cap), not at the cap the plan
prints. Rates are per 3B student parameters (training, answers, IFD) or per 8B reward-model parameters and scale linearly
with the model's size: parameter counts from preflight's loads, else `KNOWN_PARAMS` (model cards), else 3B.

Disk: a full fine-tune saves its weights in the training dtype (bf16 on a GPU: 2 bytes per parameter); while it
runs its checkpoint holds fp32 master weights and two AdamW moments (12 bytes per parameter), dropped when the
system's answers exist unless ``training.keep_checkpoints``. A LoRA adapter is counted at 1% of the model.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

RATES_FILE = Path(__file__).resolve().parent.parent / "data" / "gpu_rates.csv"
KNOWN_PARAMS = {"meta-llama/Llama-3.2-3B": 3.21e9, "meta-llama/Llama-3.2-3B-Instruct": 3.21e9,
                "Qwen/Qwen2.5-3B": 3.09e9, "Qwen/Qwen2.5-3B-Instruct": 3.09e9}   # model cards
STUDENT_REF, REWARD_REF = 3e9, 8e9
SAVE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
CHECKPOINT_BYTES = 12                      # fp32 master weights + AdamW exp_avg + exp_avg_sq
GB = 1e9


@dataclass(frozen=True)
class Rate:
    step: str
    rate: float
    unit: str
    basis: str                             # "measured on <GPU>" | "estimate (...)" | "CPU extrapolation (...)"
    source: str


@dataclass
class BudgetRow:
    step: str
    gpu_hours: float
    disk_gb: float = 0.0
    rate: str = ""                         # which rate, and its basis


def gpu_rates(path: str | Path = RATES_FILE) -> dict[str, Rate]:
    """The rates table (module docstring); a missing column or a non-positive rate is an error naming the row."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = {}
    for i, r in enumerate(rows, start=2):
        try:
            rate = Rate(r["step"], float(r["rate"]), r["unit"], r["basis"], r["source"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path} line {i}: expected step,rate,unit,basis,source ({e})") from None
        if rate.rate <= 0:
            raise ValueError(f"{path} line {i}: rate of {rate.step!r} must be > 0")
        out[rate.step] = rate
    return out


def params_of(name: str, n_params: dict[str, int]) -> tuple[float, str]:
    """(parameters, where the count comes from) of a model."""
    if n_params.get(name):
        return float(n_params[name]), "loaded config"
    if name in KNOWN_PARAMS:
        return KNOWN_PARAMS[name], "model card"
    return STUDENT_REF, "unknown, 3B assumed"


def answer_rate(cfg) -> str:
    """Which answer rate applies: continuous batching (`judge.generation`, or an OpenAI-compatible server, which
    batches continuously) or static batches of ``judge.batch_size``."""
    j = cfg.judge
    if j.student_backend == "openai" or getattr(j, "generation", "static") == "continuous":
        return "answer_continuous"
    return "answer_static"


def budget(p, configs: dict, n_params: dict[str, int] | None = None, *, world_size: int = 1, tokens=None,
           rates: dict[str, Rate] | None = None) -> list[BudgetRow]:
    """GPU-hours and disk of each GPU step of plan `p` (module docstring)."""
    from .plan import TokenAssumptions

    rates, n_params, tk = rates or gpu_rates(), n_params or {}, tokens or TokenAssumptions()
    cfg = next(iter(configs.values()))
    t = cfg.training
    students = sorted({s for c in configs.values() for s in (c.training.students or [c.training.student])})
    size = max(params_of(s, n_params)[0] for s in students)
    scale = size / STUDENT_REF

    def row(step: str, hours: float, rate: Rate, disk: float = 0.0) -> BudgetRow:
        return BudgetRow(step, hours, disk, f"{rate.step}: {rate.rate:g} {rate.unit}; {rate.basis}")

    out = []
    for r in p.rows:
        if r.step == "reward scoring":
            rate = rates["reward"]
            out.append(row(r.step, r.count / rate.rate, rate))
        elif r.step == "embedding":
            rate = rates["embedding"]
            out.append(row(r.step, r.count / rate.rate, rate))
        elif r.step == "IFD scoring":
            rate = rates["ifd"]
            out.append(row(r.step, r.count / rate.rate * scale, rate))
        elif r.step.startswith("train "):
            rate, method = rates["train"], r.step.split(" ", 1)[1]
            per_step = t.per_device_batch_size * world_size * t.accumulation(world_size)
            hours = r.steps * per_step * (tk.instruction + tk.response) / rate.rate / 3600 * scale
            lora = method == "sft_lora" or (method not in ("sft_full", "sft_lora") and t.preference_lora)
            saved = SAVE_BYTES.get(t.dtype, 2) * size * (0.01 if lora else 1.0)
            ckpt = 0.0 if lora else CHECKPOINT_BYTES * size
            disk = r.count * saved + (r.count if t.keep_checkpoints else min(r.count, 1)) * ckpt
            out.append(row(r.step, hours, rate, disk / GB))
        elif r.step.startswith("answer "):
            rate, cap = rates[answer_rate(cfg)], r.completion_tokens / max(r.count, 1)
            produced = r.count * min(cap, tk.student_answer)     # answers stop at EOS, mostly before the cap
            out.append(row(r.step, produced / rate.rate / 3600 * scale, rate))
    return out


def budget_lines(rows: list[BudgetRow], p, configs: dict, *, world_size: int = 1,
                 rates: dict[str, Rate] | None = None) -> list[str]:
    """The budget as lines: GPU-hours and disk per step, then totals with wall time and dollars."""
    rates = rates or gpu_rates()
    cfg = next(iter(configs.values()))
    out = [f"GPU BUDGET (rates: {RATES_FILE.name}; none measured on a GPU: estimates, each with its source)",
           f"  {'step':<26}{'GPU-hours':>11}{'disk GB':>10}  rate"]
    for r in rows:
        out.append(f"  {r.step:<26}{r.gpu_hours:>11,.1f}{r.disk_gb:>10,.0f}  {r.rate}")
    hours, disk = sum(r.gpu_hours for r in rows), sum(r.disk_gb for r in rows)
    usd_gpu = hours * rates["gpu_hour"].rate
    lat = rates["judge_latency"].rate
    judge_calls = sum(r.llm_calls for r in p.rows if r.step.startswith("judge "))
    llm_calls = sum(r.llm_calls for r in p.rows if r.step.startswith("LLM baseline "))
    api_h = (judge_calls * lat / cfg.judge.judge_max_concurrency + llm_calls * lat / cfg.llm.max_concurrency) / 3600
    out.append(f"  total: ~{hours:,.1f} GPU-hours (~${usd_gpu:,.0f} at ${rates['gpu_hour'].rate:g}/GPU-hour, "
               f"{rates['gpu_hour'].basis}), disk ~{disk:,.0f} GB, wall ~{hours / max(world_size, 1) + api_h:,.1f} h "
               f"on {world_size} GPU(s) (+ API calls at {lat:g} s each, in flight as configured); "
               f"with the API: ~${usd_gpu + p.usd:,.0f}")
    return out
