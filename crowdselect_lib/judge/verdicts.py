"""Reading a judge's reply (paper §4.1), one contract for both benchmarks: a value, or None = a failed
judgment that is counted and named, never a fallback score.

- MT-Bench (FastChat ``llm_judge``): the first ``[[x]]``, else the first ``[x]``; a rating outside 1-10
  (a truncated reply read as ``[0]`` or ``[2023]``) is a failed judgment too.
- Arena-Hard v0.1: the labels found by the config's ``regex_pattern``; exactly one distinct label of
  `VERDICTS` is the verdict. No label at all means "ask again" (arena-hard-auto asks up to
  ``number_of_judgment_attempts`` times with `CONTINUE`); several different labels mean no verdict, no retry.
"""
from __future__ import annotations

import re

RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")          # FastChat one_score_pattern
RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")       # FastChat one_score_pattern_backup
RATING_RANGE = (1.0, 10.0)
VERDICTS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
CONTINUE = "continue your judgment and finish by outputting a final verdict label"   # arena-hard-auto


def _text(reply) -> str:
    if not isinstance(reply, str):
        raise TypeError(f"judge reply must be a string, got {type(reply).__name__}")
    return reply


def parse_rating(reply: str) -> float | None:
    """MT-Bench rating of a judge reply, or None (no rating, or one outside 1-10)."""
    m = RATING.search(_text(reply)) or RATING_BACKUP.search(reply)
    if not m:
        return None
    value = float(m.group(1))
    return value if RATING_RANGE[0] <= value <= RATING_RANGE[1] else None


def verdict_labels(reply: str, pattern: str | re.Pattern) -> set[str]:
    """The distinct labels the config's regex finds in a reply."""
    return {m.strip("\n") for m in re.compile(pattern).findall(_text(reply)) if m != ""}


def parse_verdict(reply: str, pattern: str | re.Pattern) -> str | None:
    """Arena-Hard verdict label, or None (no label, several different ones, or one outside `VERDICTS`)."""
    found = verdict_labels(reply, pattern)
    label = found.pop() if len(found) == 1 else None
    return label if label in VERDICTS else None


def ask_again(reply: str, pattern: str | re.Pattern) -> bool:
    """True when the reply holds no label at all (arena-hard-auto's ``try_again``)."""
    return not verdict_labels(reply, pattern)
