"""A fixed held-out split of a zoo's instructions (issue 24): never selectable, the real experiment's test set.

`heldout_uuids(uuids, fraction, seed)` orders the uuids by a digest of (seed, uuid) and takes the first
round(fraction x n): the split depends on the uuids and the seed only, not on row order or on the other
instructions' presence. `hold_out(zoo, fraction, seed)` removes them from the zoo (every chapter after 01 sees only
the selectable rest) and records them, in that order, in ``zoo.info["heldout_uuids"]``.
"""
from __future__ import annotations

import hashlib

from .model import Zoo, ZooError


def heldout_uuids(uuids, fraction: float, seed: int = 0) -> list[str]:
    """The held-out uuids, in their fixed order (the first `judge.heldout_items` of them are evaluated)."""
    if not 0.0 <= fraction < 1.0:
        raise ZooError(f"zoo.holdout_fraction must be within [0, 1), got {fraction}")
    uuids = sorted({str(u) for u in uuids})
    order = sorted(uuids, key=lambda u: hashlib.sha256(f"{seed}:{u}".encode()).hexdigest())
    return order[: round(fraction * len(uuids))]


def hold_out(zoo: Zoo, fraction: float, seed: int = 0) -> Zoo:
    """`zoo` without its held-out instructions; ``info``: ``heldout_uuids`` (ordered) and ``heldout`` (count)."""
    held = heldout_uuids(zoo.responses["uuid"].unique(), fraction, seed)
    keep = ~zoo.responses["uuid"].astype(str).isin(set(held))
    info = dict(zoo.info, heldout=len(held), heldout_uuids=held, heldout_fraction=fraction)
    return Zoo(zoo.responses[keep].reset_index(drop=True), zoo.models, list(zoo.reward_models), zoo.source,
               zoo.default_reward_model, zoo.truth, info)
