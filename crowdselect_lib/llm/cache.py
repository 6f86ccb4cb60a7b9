"""The reply cache and the pending log of the LLM client (issues 10 and 14).

- `Endpoint`: who answers (backend, base_url, model, extra request fields). A reply is keyed by
  `request_key` = sha256 of (endpoint, messages, generation settings, repetition): a second endpoint, the
  local backend and an API with the same model name, or another judge sample (repetition) are other keys.
- `ReplyCache`: append-only ``replies.jsonl`` (one line per reply: key, endpoint, messages, settings,
  repetition, reply, meta). Lines go through `runs.append_jsonl`, so a line torn by a kill never swallows the
  next reply; a torn line is skipped on load and the request is sent again. A request that was paid but
  gave no usable reply (content filter, malformed completion, oversized body) is cached as a failure (``reply``
  null, ``error``), so a rerun reports it again instead of paying again.
- claims (issue 25): before a request leaves, its process takes an exclusive ``flock`` on
  ``claims/<key[:3]>.lock`` and re-reads the lines other processes appended; a key answered meanwhile is not
  sent. Two processes sharing one cache therefore never pay one request twice; a dead process's claims vanish
  with it (the kernel drops its locks).
- Every line written passes `redact` with the client's secrets: the API key never reaches these files (error
  texts also lose URL credentials and bearer tokens; prompts and replies are data and keep them).
- pending log ``pending.jsonl``: a request is recorded as *sent* before it leaves, and as *failed* when it
  fails for good. A sent key with neither a reply nor a failure was in flight when a run was killed: the
  provider may have billed it, and sending it again pays twice. No OpenAI-compatible chat API lets a client
  fetch the reply of a request whose response it never read, so reconciliation is a count: such keys are
  counted (``stats["resent"]``), logged with their client request ids (compare with the provider's usage page).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..runs import append_jsonl, locked, read_jsonl
from .redact import redact, redact_obj

log = logging.getLogger("crowdselect")


@dataclass(frozen=True)
class GenerationSettings:
    temperature: float = 0.0
    max_new_tokens: int = 256
    top_p: float | None = None         # None: the model's / server's own default (not sent)
    seed: int | None = None


@dataclass(frozen=True)
class Endpoint:
    """Identity of whoever answers: part of every reply's key and of every record."""
    backend: str                       # openai | local
    model: str
    base_url: str | None = None
    extra_body: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"backend": self.backend, "model": self.model, "base_url": self.base_url,
                "extra_body": dict(self.extra_body)}


def request_key(endpoint: Endpoint, messages: list[dict], settings: GenerationSettings, repetition: int = 0) -> str:
    """sha256 of (endpoint, messages (role, content), settings, repetition): the key of one reply."""
    blob = json.dumps({"endpoint": endpoint.as_dict(),
                       "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
                       "settings": asdict(settings), "repetition": int(repetition)},
                      sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _alive(pid) -> bool:
    """Whether process `pid` (another one than this) is running on this machine."""
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ReplyCache:
    """Replies by key (``<directory>/replies.jsonl``; in memory only when `directory` is None) plus the
    pending log ``<directory>/pending.jsonl`` and the cross-process claims (module docstring)."""

    def __init__(self, directory: str | Path | None = None, secrets: tuple[str, ...] = ()):
        self.dir = Path(directory) if directory is not None else None
        self.path = self.dir / "replies.jsonl" if self.dir is not None else None
        self.pending_path = self.dir / "pending.jsonl" if self.dir is not None else None
        self.secrets = tuple(secrets)
        self._replies: dict[str, dict] = {}
        self._offset = 0                              # bytes of replies.jsonl read so far (whole lines)
        self._claims: dict[str, object] = {}          # key -> open lock file held by this process
        self._lock = threading.Lock()
        self.stats = {"hits": 0, "misses": 0, "writes": 0, "torn_lines": 0, "resent": 0, "failed": 0,
                      "unusable": 0, "answered_elsewhere": 0}
        self.lost_in_flight: dict[str, str] = {}     # key -> client request id of the lost attempt
        if self.path is None:
            return
        self.refresh()
        sent: dict[str, tuple[str, int | None]] = {}
        for r in read_jsonl(self.pending_path, tolerate_torn=True):
            if r.get("status") == "sent":
                sent[r["key"]] = (r.get("request_id", ""), r.get("pid"))
            else:
                sent.pop(r.get("key"), None)
        # in flight in a process that is still running (it shares this cache) is not lost
        self.lost_in_flight = {k: rid for k, (rid, pid) in sent.items() if k not in self._replies and not _alive(pid)}

    def refresh(self) -> int:
        """Read the lines appended to ``replies.jsonl`` since the last read (by any process; under the writers'
        lock, so no line is half-written); returns how many replies were new. A line that does not parse (torn
        by a kill) is counted and skipped."""
        if self.path is None or not self.path.exists():
            return 0
        with self._lock, locked(self.path):
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
            new = 0
            for line in data.split(b"\n"):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    self.stats["torn_lines"] += 1
                    continue
                if isinstance(r, dict) and "key" in r and "reply" in r:
                    new += r["key"] not in self._replies
                    self._replies[r["key"]] = {"text": r["reply"], "meta": r.get("meta") or {},
                                               "error": r.get("error")}
            self._offset += len(data)
        return new

    def __len__(self) -> int:
        return len(self._replies)

    def __contains__(self, key: str) -> bool:
        return key in self._replies

    def get(self, key: str) -> dict | None:
        """``{"text": ..., "meta": {...}, "error": ...}`` (text None and error set for a cached failure) or None."""
        return self._replies.get(key)

    def claim(self, key: str) -> bool:
        """Take this process's claim on `key`, waiting while another process holds it. False (and no claim held)
        when a reply or a cached failure for `key` arrived meanwhile: do not send it."""
        if self.dir is None:
            return key not in self._replies
        path = self.dir / "claims" / f"{key[:3]}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a")
        fcntl.flock(fh, fcntl.LOCK_EX)
        self.refresh()
        if key in self._replies:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
            with self._lock:
                self.stats["answered_elsewhere"] += 1
            return False
        with self._lock:
            self._claims[key] = fh
        return True

    def release(self, key: str | None = None) -> None:
        """Drop the claim on `key` (None: every claim this cache holds)."""
        with self._lock:
            held = list(self._claims) if key is None else [key]
            handles = [self._claims.pop(k) for k in held if k in self._claims]
        for fh in handles:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    def mark_sent(self, key: str) -> str:
        """Record `key` as sent (before the request leaves); returns its client request id."""
        rid = uuid.uuid4().hex
        with self._lock:
            if key in self.lost_in_flight:
                self.stats["resent"] += 1
                log.warning("re-sending request %s (client id %s) that was in flight when an earlier run stopped: "
                            "the provider may bill it twice", key[:12], self.lost_in_flight.pop(key))
        if self.pending_path is not None:
            append_jsonl(self.pending_path, [{"key": key, "status": "sent", "request_id": rid, "pid": os.getpid(),
                                              "t": time.time()}])
        return rid

    def mark_failed(self, key: str, error: str) -> None:
        with self._lock:
            self.stats["failed"] += 1
        if self.pending_path is not None:
            append_jsonl(self.pending_path, [{"key": key, "status": "failed",
                                              "error": redact(error, self.secrets)[:300], "t": time.time()}])

    def put(self, key: str, endpoint: Endpoint, messages: list[dict], settings: GenerationSettings, repetition: int,
            reply: str | None, meta: dict | None = None, error: str | None = None) -> None:
        """Cache a reply, or (`reply` None, `error` set) a paid request that gave no usable reply."""
        rec = redact_obj({"key": key, "endpoint": endpoint.as_dict(), "messages": messages,
                          "settings": asdict(settings), "repetition": int(repetition), "reply": reply,
                          "meta": meta or {}}, self.secrets, generic=False)     # data: only the key itself
        if error is not None:
            rec["error"] = redact(error, self.secrets)
        if self.path is not None:
            append_jsonl(self.path, [rec])
        with self._lock:
            self._replies[key] = {"text": rec["reply"], "meta": rec["meta"], "error": rec.get("error")}
            self.stats["writes"] += 1
            self.stats["unusable"] += error is not None
