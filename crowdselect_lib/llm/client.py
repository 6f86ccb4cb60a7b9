"""`CachedLLM`: the one client every LLM call of the project goes through (baselines, judges, students).

    llm = make_llm(cfg.llm, cache_dir=run.path("cache", "llm", "x").parent)
    texts = llm.chat(conversations, GenerationSettings(max_new_tokens=8))           # list[str]
    replies = llm.complete(conversations, settings, repetition=r, skip_rejected=True)  # list[Reply], with meta
    llm.info()   # endpoint, served model versions, cache hits/misses, re-sent requests, tokens used

Every reply is cached on disk the moment it arrives (`cache.ReplyCache`, keyed by endpoint + request +
repetition), so a rerun never pays for a finished request. What a kill can still cost: the requests in flight
at that moment (at most `max_concurrency`), whose replies were never read; a timeout on our side can also be
billed by the provider and then retried. Both are re-sent; the pending log counts the first kind
(``info()["cache"]["resent"]``) and every retry is counted in ``info()["retries"]``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .backends import (DEFAULT_BASE_URL, LLMError, LocalBackend, OpenAIBackend, RequestRejected, UnusableReply,
                       preview)
from .cache import Endpoint, GenerationSettings, ReplyCache, request_key
from .redact import redact

log = logging.getLogger("crowdselect")
ROLES = {"system", "user", "assistant"}


class CacheMiss(LLMError):
    """A replay-only client was asked for a reply that is not in its cache."""


@dataclass(frozen=True)
class Reply:
    """One reply: `text` (None when the request got no usable reply: `error` says why) and `meta`
    (served_model, system_fingerprint, finish_reason, usage, created, cached)."""
    text: str | None
    meta: dict
    error: str | None = None


def settings_from_config(cfg) -> GenerationSettings:
    """The `GenerationSettings` named by an `llm:` params section."""
    return GenerationSettings(cfg.temperature, cfg.max_new_tokens, cfg.top_p, cfg.seed)


def check_conversations(conversations) -> None:
    """Raise LLMError unless `conversations` is a list of non-empty lists of {role, content: str}."""
    if not isinstance(conversations, (list, tuple)):
        raise LLMError(f"conversations must be a list of message lists, got {type(conversations).__name__}")
    for i, conv in enumerate(conversations):
        if not isinstance(conv, (list, tuple)) or not conv:
            raise LLMError(f"conversation {i} must be a non-empty list of messages, got {conv!r:.80}")
        for j, m in enumerate(conv):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise LLMError(f"conversation {i} message {j} must be {{'role': one of {sorted(ROLES)}, "
                               f"'content': str}}, got {m!r:.120}")


def endpoint_of(cfg) -> Endpoint:
    """The `Endpoint` an `LLMConfig` names (``replay`` answers as the endpoint it replays, `replay_of`); a key
    in the base URL (credentials, ``?api_key=``, the key's value) is masked, so it never reaches a record."""
    backend = cfg.replay_of if cfg.backend == "replay" else cfg.backend
    base = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/") if backend == "openai" else None
    if base is not None:
        base = redact(base, (os.environ.get(cfg.api_key_env or "") or "",))
    return Endpoint(backend, cfg.model, base, dict(cfg.extra_body or {}))


class CachedLLM:
    """A backend (or none: replay-only) behind the disk cache."""

    def __init__(self, endpoint: Endpoint, backend, cache: ReplyCache, replay_only: bool = False):
        if backend is None and not replay_only:
            raise LLMError("a CachedLLM without a backend must be replay_only")
        self.endpoint, self.backend, self.cache, self.replay_only = endpoint, backend, cache, replay_only
        self.name = endpoint.model
        if cache.lost_in_flight:
            log.warning("%s: %d request(s) were in flight when an earlier run stopped; they are sent again if "
                        "asked (the provider may have billed them): client ids in %s", self.name,
                        len(cache.lost_in_flight), cache.pending_path)

    def keys(self, conversations, settings: GenerationSettings, repetition: int = 0) -> list[str]:
        check_conversations(conversations)
        return [request_key(self.endpoint, c, settings, repetition) for c in conversations]

    def complete(self, conversations: list[list[dict]], settings: GenerationSettings = GenerationSettings(), *,
                 repetition: int = 0, skip_rejected: bool = False, progress=None) -> list[Reply]:
        """One `Reply` per conversation, in order. Cached replies are reused, identical requests sent once;
        `repetition` r asks for the r-th independent sample (its own key). A request the server refuses (HTTP
        400/413/422; not cached, asked again next time) or answers without a usable completion (content filter,
        malformed; cached as a failure, never paid again) is a `Reply` with `error` and text None: with
        `skip_rejected` a counted skip for the caller, else an LLMError after the whole batch is done."""
        keys = self.keys(conversations, settings, repetition)
        todo: dict[str, list[dict]] = {}
        for k, conv in zip(keys, conversations):
            if k in self.cache:
                self.cache.stats["hits"] += 1
            else:
                todo.setdefault(k, conv)
        self.cache.stats["misses"] += len(todo)
        if progress is not None:
            progress.update(len(conversations) - len(todo))
        if todo and self.replay_only:
            k, conv = next(iter(todo.items()))
            raise CacheMiss(f"replay-only LLM {self.name!r}: {len(todo)} of {len(set(keys))} requests are not in "
                            f"{self.cache.path or 'an in-memory cache'}; first missing: key {k[:12]}, {preview(conv)}, "
                            f"settings {asdict(settings)}, repetition {repetition}. Record them once with the "
                            "openai or local backend (same endpoint and settings).")
        errors: dict[str, str] = {}
        if todo:
            pending = list(todo.items())

            def sent(i: int) -> str | None:
                k = pending[i][0]
                if not self.cache.claim(k):        # another process answered it while we waited
                    if progress is not None:
                        progress.update(1)
                    return None
                return self.cache.mark_sent(k)

            def store(i: int, text: str, meta: dict) -> None:
                k, conv = pending[i]
                self.cache.put(k, self.endpoint, conv, settings, repetition, text, meta)
                if progress is not None:
                    progress.update(1)

            def refused(i: int, exc: RequestRejected) -> None:
                k, conv = pending[i]
                if isinstance(exc, UnusableReply):     # answered, maybe paid: cached, so never paid again
                    self.cache.put(k, self.endpoint, conv, settings, repetition, None, exc.meta, str(exc))
                else:
                    errors[k] = str(exc)
                    self.cache.mark_failed(k, str(exc))
                if progress is not None:
                    progress.update(1)

            try:
                self.backend.generate([c for _, c in pending], settings, store, refused, sent,
                                      on_done=lambda i: self.cache.release(pending[i][0]))
            except LLMError as e:
                for k, _ in pending:
                    if k not in self.cache and k not in errors:
                        self.cache.mark_failed(k, str(e))
                raise
            finally:
                self.cache.release()
        out = []
        for k in keys:
            hit = self.cache.get(k)
            if hit is None:
                out.append(Reply(None, {"cached": False}, errors.get(k, "no reply (the batch stopped)")))
            else:
                out.append(Reply(hit["text"], {**hit["meta"], "cached": k not in todo}, hit.get("error")))
        failed = [r.error for r in out if r.error is not None]
        if failed and not skip_rejected:
            raise LLMError(f"{len(failed)} of {len(out)} request(s) got no usable reply (the others are cached); "
                           f"first: {failed[0]}")
        return out

    def chat(self, conversations: list[list[dict]], settings: GenerationSettings = GenerationSettings(), *,
             repetition: int = 0) -> list[str]:
        """Reply texts, in order (a refused request raises)."""
        return [r.text for r in self.complete(conversations, settings, repetition=repetition)]

    def estimate(self, conversations, settings: GenerationSettings = GenerationSettings(), repetition: int = 0,
                 **prices) -> dict:
        """`estimate_cost` of the requests that are not cached yet."""
        return estimate_cost(conversations, settings, cached_keys=self.cache, endpoint=self.endpoint,
                             repetition=repetition, **prices)

    def info(self) -> dict:
        backend = self.backend.kind if self.backend is not None else "replay"
        out = {"backend": backend, **{k: v for k, v in self.endpoint.as_dict().items() if k != "backend"},
               "cache_path": str(self.cache.path), "cache_entries": len(self.cache), "cache": dict(self.cache.stats)}
        if self.backend is not None:
            out.update(self.backend.info())
        return out


def estimate_cost(conversations, settings: GenerationSettings = GenerationSettings(), *, cached_keys=None,
                  endpoint: Endpoint | None = None, repetition: int = 0, chars_per_token: float = 4.0,
                  usd_per_m_prompt: float | None = None, usd_per_m_completion: float | None = None) -> dict:
    """Calls and approximate tokens a batch would cost: ``requests, unique, cached, to_send,
    prompt_tokens_approx`` (characters / `chars_per_token` of the requests to send), ``max_completion_tokens``
    (to_send x max_new_tokens) and, with prices per million tokens, ``usd_max_approx``."""
    check_conversations(conversations)
    endpoint = endpoint or Endpoint("openai", "")
    unique: dict[str, list[dict]] = {}
    for conv in conversations:
        unique.setdefault(request_key(endpoint, conv, settings, repetition), conv)
    send = [c for k, c in unique.items() if cached_keys is None or k not in cached_keys]
    prompt = int(sum(len(m["content"]) for c in send for m in c) / chars_per_token)
    out = {"requests": len(conversations), "unique": len(unique), "cached": len(unique) - len(send),
           "to_send": len(send), "prompt_tokens_approx": prompt,
           "max_completion_tokens": len(send) * settings.max_new_tokens}
    if usd_per_m_prompt is not None and usd_per_m_completion is not None:
        out["usd_max_approx"] = (prompt * usd_per_m_prompt + out["max_completion_tokens"] * usd_per_m_completion) / 1e6
    return out


def make_llm(cfg, cache_dir: str | Path | None = None, loader=None) -> CachedLLM:
    """The client an `LLMConfig` names. Cache folder: `cache_dir`, else `cfg.cache_dir`, else memory only.
    `loader` (local backend): a callable returning (tokenizer, model), e.g. a trained student's."""
    directory = cache_dir if cache_dir is not None else cfg.cache_dir
    endpoint = endpoint_of(cfg)
    if cfg.backend == "replay":
        if directory is None:
            raise LLMError("llm.backend 'replay' needs a cache folder (llm.cache_dir or make_llm(cache_dir=...))")
        return CachedLLM(endpoint, None, ReplyCache(directory), replay_only=True)
    if cfg.backend == "openai":
        backend = OpenAIBackend(cfg)
        return CachedLLM(endpoint, backend, ReplyCache(directory, secrets=backend.secrets))
    if cfg.backend == "local":
        return CachedLLM(endpoint, LocalBackend(cfg, loader), ReplyCache(directory))
    raise LLMError(f"unknown llm.backend {cfg.backend!r} (openai | local | replay)")
