"""Checks before any GPU hour (`make preflight`, ``python -m crowdselect_lib preflight --params ...``).

- `checks`: Hub access and tokens for every model the params name, config + tokenizer + model class (meta device,
  parameter count), the judge and LLM-baseline endpoints (one tiny request, the model served), vLLM student
  servers (``GET /models``), GPU count and memory against a rough rule from model sizes;
- `data`: the data folders against their loaders' schemas, the cost gates (judge, LLM baselines), prices;
- `plan`: trainings, optimizer steps, generations, LLM calls, tokens and dollars of a params file's grid;
- `budget`: GPU-hours, disk, wall time and dollars of the plan from the shipped rates (``data/gpu_rates.csv``);
- `run`: `run_preflight(cfg)` (one line per check, then the plan; 1 when a check failed) and the command line.
"""
from .checks import (BYTES_PER_PARAM, Check, MemoryNeed, ModelRef, cells, check_chat, check_gpus, check_hub,
                     check_load, check_served_models, endpoint_config, memory_needs, model_refs)
from .plan import Plan, PlanRow, TokenAssumptions, plan, plan_lines, train_steps
from .budget import BudgetRow, Rate, budget, budget_lines, gpu_rates
from .data import check_bench_dir, check_prices, check_zoo_dir, cost_gates
from .run import closed_gates, main, run_preflight

__all__ = ["BudgetRow", "Rate", "budget", "budget_lines", "gpu_rates", "check_bench_dir", "check_prices",
           "check_zoo_dir", "cost_gates", "closed_gates", "BYTES_PER_PARAM", "Check", "MemoryNeed", "ModelRef", "Plan", "PlanRow", "TokenAssumptions", "cells",
           "check_chat", "check_gpus", "check_hub", "check_load", "check_served_models", "endpoint_config", "main",
           "memory_needs", "model_refs", "plan", "plan_lines", "run_preflight", "train_steps"]
