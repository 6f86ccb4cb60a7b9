"""What every params section shares: the error type, the training methods, and the value checks run at load time."""
from __future__ import annotations

import os
from typing import Optional

TRAIN_METHODS = ("sft_full", "sft_lora", "dpo", "simpo", "orpo")   # Tables 2, 9, 17
MAX_SEED = 2**32 - 1   # numpy and scikit-learn seeds are 0 .. 2**32 - 1


class ConfigError(ValueError):
    """A params file has an unknown key, a wrong type or an invalid value."""


def check_rules(section_obj, section: str, rules) -> None:
    """Raise `ConfigError` naming ``section.key`` for the first rule (key, ok, why) that fails."""
    for key, ok, why in rules:
        if not ok:
            raise ConfigError(f"{section}.{key}: {getattr(section_obj, key.split('.')[-1], None)!r} {why}")


def weights_problem(weights) -> Optional[str]:
    """Why a CrowdSelect weight vector (difficulty, separability, stability) is unusable, or None."""
    if len(weights) != 3:
        return f"must have 3 entries (difficulty, separability, stability), got {len(weights)}"
    if any(w != w or w in (float("inf"), float("-inf")) for w in weights):
        return "must be finite numbers (NaN or inf given)"
    if not any(weights):
        return "are all zero: every instruction would score the same"
    return None


def seed_ok(seed) -> bool:
    """A seed numpy, torch and scikit-learn all take: an integer in 0 .. 2**32 - 1."""
    return 0 <= seed <= MAX_SEED


def home(path: Optional[str], key: str) -> Optional[str]:
    """A folder setting with a leading ``~`` expanded, as a shell would (a ConfigError naming `key` if it cannot)."""
    if path is None or not path.startswith("~"):
        return path
    out = os.path.expanduser(path)
    if out.startswith("~"):
        raise ConfigError(f"{key}: {path!r}: cannot expand '~' (no such user or no home directory); give a full path")
    return out
