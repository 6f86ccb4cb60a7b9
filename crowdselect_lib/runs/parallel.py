"""Independent pieces of one vectorised computation on every core: numpy releases the GIL in its sorts and ufuncs,
so threads share the work without copying it (metric chunks, the columns of eq. 8's normalisation)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable


def threads(fn: Callable, items: Iterable, workers: int | None = None) -> None:
    """Call `fn(item)` for every item on up to `workers` threads (default: the CPU count); each call writes its own
    part of the result, so the outcome does not depend on the schedule. The first failing item's error is raised."""
    items = list(items)
    n = min(len(items), workers or os.cpu_count() or 1)
    if n <= 1:
        for x in items:
            fn(x)
        return
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(fn, items))
