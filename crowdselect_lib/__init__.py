"""CrowdSelect reproduction library (arXiv 2503.01836). Notebooks import one namespace: ``import crowdselect_lib as cs``.

One module per paper concept, a package where a stage has several parts (the README's layout section):

- `config`      params schema and loader (one YAML per paper table)
- `runs`        run directories, the step cache (artifacts keyed by what produced them), safe files, progress
- `zoo`         the multi-LLM zoo (§3.1): data model, sources (Magpie, AlpacaEval), the simulated demo zoo
- `scoring`     reward-model scoring (§3.1, Table 18)                         chapter 02
- `metrics`     Difficulty, Separability, Stability (eqs. 3-5)                 chapter 03
- `crowd_size`  how many models a crowd needs (an extra study, not in the paper) chapter 03
- `clustering`  embeddings and K-means (§3.3, Tables 4/13)                     chapter 04
- `selection`   response choice (eq. 2), eqs. 6-9, per-cluster quotas, exports chapter 05
- `baselines`   Table 2/10/12 baselines, one file per family, a registry       chapter 06
- `training`    SFT / LoRA / DPO / SimPO / ORPO (appendix B.2, Tables 6, 17)   chapter 07
- `judge`       MT-Bench and Arena-Hard: benchmarks, answers, judging, scores  chapter 08
- `reporting`   the paper's tables and figures                                 chapter 09
- `llm`, `models`, `pipeline`, `preflight`   LLM client, local models and devices, papermill chain, real-run checks

Submodules load on first use (`cs.training` imports torch only when touched).
"""
from __future__ import annotations

import importlib

from .version import __version__  # noqa: E402
from .config import ConfigError, RunConfig, load_config  # noqa: E402
from .runs import Run  # noqa: E402

STAGES = ["config", "runs", "zoo", "scoring", "metrics", "crowd_size", "clustering", "selection", "baselines",
          "training", "judge", "reporting", "llm", "models", "pipeline", "preflight"]

__all__ = ["__version__", "ConfigError", "RunConfig", "load_config", "Run", *STAGES]


def __getattr__(name: str):
    if name not in STAGES:
        raise AttributeError(f"module 'crowdselect_lib' has no attribute {name!r}")
    return importlib.import_module(f".{name}", __name__)
