"""Progress of long steps (scoring, embedding, LLM calls, training, generation, judging) that reads well both in
a terminal and in a headless log: one tqdm bar on stderr, and a line in the run log every 10% of the work."""
from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
log = logging.getLogger("crowdselect")


class Progress:
    """`with Progress(total, "scoring") as p: ... p.update(n)`; logs ``scoring: 40/100 (40%), 12 s``."""

    def __init__(self, total: int, desc: str, unit: str = "it"):
        with warnings.catch_warnings():   # tqdm.auto warns when a notebook has no ipywidgets: text bar then
            warnings.simplefilter("ignore")
            from tqdm.auto import tqdm

        self.total, self.desc, self.n, self.t0, self.next_log = total, desc, 0, time.perf_counter(), 0.1
        # in a notebook a step shorter than 2 s draws no bar at all (its log lines still come); a terminal shows each
        delay = 2.0 if "ipykernel" in sys.modules else 0.0
        self.bar = tqdm(total=total, desc=desc, unit=unit, mininterval=1.0, leave=False, delay=delay)

    def update(self, n: int = 1) -> None:
        self.n += n
        self.bar.update(n)
        if self.total and self.n / self.total >= self.next_log:
            log.info("%s: %d/%d (%.0f%%), %.0f s", self.desc, self.n, self.total, 100 * self.n / self.total,
                     time.perf_counter() - self.t0)
            while self.next_log <= self.n / self.total:
                self.next_log += 0.1

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
        log.info("%s: %d/%d done in %.1f s", self.desc, self.n, self.total, time.perf_counter() - self.t0)


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Iterate `items` with a `Progress` bar and log lines."""
    items = list(items) if total is None else items
    with Progress(total if total is not None else len(items), desc, unit) as p:
        for x in items:
            yield x
            p.update(1)
