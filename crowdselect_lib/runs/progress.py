"""Progress of long steps (scoring, embedding, LLM calls, training, generation, judging) that reads well in a
terminal, in a saved notebook and in a headless log: a live tqdm bar on stderr in a terminal; in a notebook ONE
bar, drawn once when the step ends (a live bar would leave a stream output per refresh in the executed notebook),
and only for a step of 2 s or more; a line in the run log every 10% of the work."""
from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
log = logging.getLogger("crowdselect")
_IMPORTED = time.perf_counter()


def since_import() -> float:
    """Seconds since the package was imported: a chapter's own run time (its first cell imports the package)."""
    return time.perf_counter() - _IMPORTED


def in_notebook() -> bool:
    """True inside a Jupyter kernel (papermill's included)."""
    return "ipykernel" in sys.modules


class Progress:
    """`with Progress(total, "scoring") as p: ... p.update(n)`; logs ``scoring: 40/100 (40%), 12 s``."""

    def __init__(self, total: int, desc: str, unit: str = "it"):
        with warnings.catch_warnings():   # tqdm.auto warns when a notebook has no ipywidgets: text bar then
            warnings.simplefilter("ignore")
            from tqdm.auto import tqdm

        self.total, self.desc, self.unit, self.n, self.t0, self.next_log = total, desc, unit, 0, time.perf_counter(), 0.1
        self.notebook = in_notebook()
        self.bar = tqdm(total=total, desc=desc, unit=unit, mininterval=1.0, leave=False, disable=self.notebook)

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
        took = time.perf_counter() - self.t0
        if self.notebook and took >= 2.0 and not getattr(self, "_drawn", False):
            from tqdm import tqdm

            self._drawn = True
            print(tqdm.format_meter(self.n, self.total, took, prefix=self.desc, unit=self.unit), file=sys.stderr)
        log.info("%s: %d/%d done in %.1f s", self.desc, self.n, self.total, time.perf_counter() - self.t0)


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Iterate `items` with a `Progress` bar and log lines."""
    items = list(items) if total is None else items
    with Progress(total if total is not None else len(items), desc, unit) as p:
        for x in items:
            yield x
            p.update(1)
