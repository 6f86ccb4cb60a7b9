"""Params: the schema (`schema`, one dataclass per section) and the loader (`loader`: base chains, demo blocks,
dotted overrides, validation). `load_config(path, overrides)` is the entry point."""
from .loader import apply_overrides, from_dict, load_config, parse_sets, read_params
from .schema import *  # noqa: F401,F403  (the section dataclasses)
from .schema import ConfigError, RunConfig
from ..runs.run import repo_root

__all__ = ["ConfigError", "RunConfig", "load_config", "read_params", "parse_sets", "apply_overrides", "from_dict", "repo_root"]
