"""Checks before any GPU hour (`make preflight`, ``python -m crowdselect_lib preflight --params ...``).

- `checks`: Hub access and tokens for every model the params name, config + tokenizer + model class (meta device,
  parameter count), the judge and LLM-baseline endpoints (one tiny request, the model served), vLLM student
  servers (``GET /models``), GPU count and memory against a rough rule from model sizes;
- `plan`: trainings, optimizer steps, generations, LLM calls, tokens and dollars of a params file's grid;
- `run`: `run_preflight(cfg)` (one line per check, then the plan; 1 when a check failed) and the command line.
"""
from .checks import (BYTES_PER_PARAM, Check, MemoryNeed, ModelRef, cells, check_chat, check_gpus, check_hub,
                     check_load, check_served_models, endpoint_config, memory_needs, model_refs)
from .plan import Plan, PlanRow, TokenAssumptions, plan, plan_lines, train_steps
from .run import main, run_preflight

__all__ = ["BYTES_PER_PARAM", "Check", "MemoryNeed", "ModelRef", "Plan", "PlanRow", "TokenAssumptions", "cells",
           "check_chat", "check_gpus", "check_hub", "check_load", "check_served_models", "endpoint_config", "main",
           "memory_needs", "model_refs", "plan", "plan_lines", "run_preflight", "train_steps"]
