"""LLM backends behind one small interface (house rule 8):
``generate(conversations, settings, on_reply, on_error=None, on_send=None, on_done=None)`` sends every
conversation and calls ``on_send(i)`` just before request i leaves (None back: skip it), ``on_reply(i, text,
meta)`` as each reply arrives, ``on_done(i)`` when request i is over, whatever happened, and, for a request
refused (HTTP 400/413/422: e.g. a prompt longer than its context) or answered without a usable completion
(`UnusableReply`), ``on_error(i, exc)`` when given (else it raises). meta: ``served_model,
system_fingerprint, finish_reason, usage, created``.

- `OpenAIBackend`: any OpenAI-compatible ``/chat/completions`` endpoint (DeepSeek, Together, vLLM, SGLang) over
  httpx; each attempt under one deadline, `timeout_s`, for connect, headers and body together, and a body cap
  `max_reply_bytes` counted after decompression (`transport`); at most `max_concurrency` requests in flight;
  429, 408, 409, 425, 5xx, deadlines, dropped connections and bodies that are not JSON are retried with
  exponential backoff and jitter; a ``Retry-After`` header is honoured up to `backoff_max_s` (a longer one is
  capped, and a log line says so); 401/403/404 fail at once; a JSON reply without a usable completion (content
  filter, content not a string, no choices) or an oversized body is an `UnusableReply`, never retried; a
  malformed ``usage`` is counted, never fatal; the API key is redacted from every text it emits (`redact`);
  `extra_body` fields (e.g. ``{"thinking": {"type": "disabled"}}``) are merged into every request body.
- `LocalBackend`: a transformers chat model loaded in-process (`models.shared_causal_lm`, or any loader returning
  (tokenizer, model), e.g. `training.load_trained`), batched left-padded generation with its chat template;
  greedy at temperature 0; the model's own top_p unless the settings name one; an answer that used all
  `max_new_tokens` without an end token has finish_reason ``length``.
"""
from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable

from ..models import shared_causal_lm
from .cache import GenerationSettings
from .redact import redact, redact_obj, register
from .transport import BadEncoding, DeadlineExceeded, ReplyTooLarge, Transport

log = logging.getLogger("crowdselect")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = {408, 409, 425, 429}     # plus every 5xx
REJECT_STATUS = {400, 413, 422}         # this request cannot be served (too long, invalid): skip it, keep going
OnReply = Callable[[int, str, dict], None]


class LLMError(RuntimeError):
    """An LLM request failed for good (after retries) or was malformed; the message names it."""


class RequestRejected(LLMError):
    """The server refused one request (HTTP 400/413/422, e.g. prompt longer than its context)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class UnusableReply(RequestRejected):
    """A request was answered (and maybe paid) without a usable completion: a content filter (``content:
    null``), content that is not a string, no ``choices``, a body over the size cap. Not retried: a counted
    failure. `meta` holds what the reply said (served model, usage) when it said anything."""

    def __init__(self, message: str, meta: dict | None = None):
        super().__init__(message, 200)
        self.meta = meta or {}


def preview(messages: list[dict], n: int = 100) -> str:
    last = messages[-1]
    text = last["content"].replace("\n", " ")
    return f"{len(messages)} message(s), last {last['role']}: {text[:n]!r}{'...' if len(text) > n else ''}"


def _run_all(n: int, workers: int, one: Callable[[int], None]) -> None:
    """Call one(i) for i < n on `workers` threads; on the first exception cancel what has not started, let
    the requests in flight finish, then raise it."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None]
        for f in pending if failed else ():
            f.cancel()
    if failed:
        raise failed[0].exception()


def _label(x) -> str | None:
    return x if isinstance(x, str) or x is None else repr(x)[:200]


def _usage(u) -> tuple[dict, bool]:
    """Token counts of a ``usage`` block that are non-negative integers; (counts, whether anything was malformed)."""
    if u is None:
        return {}, False
    if not isinstance(u, dict):
        return {}, True
    ok = {k: int(v) for k, v in u.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
          and v == v and 0 <= v < 1e12 and k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    bad = any(k in ("prompt_tokens", "completion_tokens", "total_tokens") and k not in ok for k in u)
    return ok, bad


def parse_completion(data) -> tuple[str | None, dict, str | None]:
    """(text, meta, problem) of a decoded ``/chat/completions`` body; never raises. `problem` names why there
    is no usable text (content filter, content not a string, no choices); `meta` is what could be read:
    ``served_model, system_fingerprint, finish_reason, usage, created`` (+ ``usage_malformed``)."""
    if not isinstance(data, dict):
        return None, {}, f"the reply is a JSON {type(data).__name__}, not an object"
    usage, bad = _usage(data.get("usage"))
    created = data.get("created")
    meta = {"served_model": _label(data.get("model")), "system_fingerprint": _label(data.get("system_fingerprint")),
            "finish_reason": None, "usage": usage,
            "created": created if isinstance(created, (int, float)) and not isinstance(created, bool) and
            0 < created < 1e11 else time.time(), **({"usage_malformed": True} if bad else {})}
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        why = f" (error: {str(data['error'])[:200]})" if "error" in data else ""
        return None, meta, f"the reply has no choices[0]{why}"
    choice = choices[0]
    meta["finish_reason"] = _label(choice.get("finish_reason"))
    msg = choice.get("message")
    content = msg.get("content") if isinstance(msg, dict) else None
    if isinstance(content, str):
        return content, meta, None
    if not isinstance(msg, dict):
        return None, meta, "the reply has no choices[0].message"
    if content is None:
        filt = meta["finish_reason"] == "content_filter" or msg.get("refusal")
        return None, meta, ("content filter: " if filt else "") + \
            f"choices[0].message.content is null (finish_reason {meta['finish_reason']!r})"
    return None, meta, f"choices[0].message.content is a {type(content).__name__} (e.g. a list of parts), not a string"


class OpenAIBackend:
    kind = "openai"

    def __init__(self, cfg, sleep: Callable[[float], None] = time.sleep):
        key = os.environ.get(cfg.api_key_env)
        if not key:
            raise LLMError(f"environment variable {cfg.api_key_env} is not set (api_key_env); export the API key "
                           "there (any non-empty value for a local server without authentication)")
        register(key)
        self.cfg, self._key, self._sleep = cfg, key, sleep
        self.secrets = (key,)
        self.base_url = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.shown_url = redact(self.base_url, self.secrets)        # for messages, logs and info()
        self._transport = Transport(cfg.timeout_s, cfg.max_reply_bytes, cfg.max_concurrency)
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "rejected": 0, "unusable": 0, "usage_malformed": 0,
                      "deadline_exceeded": 0, "prompt_tokens": 0, "completion_tokens": 0, "served_models": {},
                      "system_fingerprints": {}, "retry_after_capped": 0}

    def _count(self, name: str, value=None, n: int = 1) -> None:
        with self._lock:
            if isinstance(self.stats[name], dict):
                self.stats[name][value] = self.stats[name].get(value, 0) + n
            else:
                self.stats[name] += n

    def body(self, messages: list[dict], settings: GenerationSettings) -> dict:
        body = {"model": self.cfg.model, "messages": messages, "temperature": settings.temperature,
                "max_tokens": settings.max_new_tokens}
        if settings.top_p is not None:
            body["top_p"] = settings.top_p
        if settings.seed is not None:
            body["seed"] = settings.seed
        return {**body, **self.cfg.extra_body}

    def _wait(self, attempt: int, retry_after: float) -> None:
        delay = min(self.cfg.backoff_max_s, self.cfg.backoff_s * 2 ** attempt) * (0.5 + random.random() / 2)
        if retry_after > self.cfg.backoff_max_s:
            self._count("retry_after_capped")
            log.warning("%s asked to wait %.0f s (Retry-After); waiting llm.backoff_max_s = %.0f s instead",
                        self.shown_url, retry_after, self.cfg.backoff_max_s)
            retry_after = self.cfg.backoff_max_s
        self._sleep(max(delay, retry_after))

    def _unusable(self, problem: str, meta: dict, messages: list[dict]) -> UnusableReply:
        self._count("unusable")
        for name in ("prompt_tokens", "completion_tokens"):           # what it cost still counts
            self._count(name, n=meta.get("usage", {}).get(name, 0))
        return UnusableReply(redact(f"{self.shown_url} gave no usable reply for model {self.cfg.model!r}: {problem} "
                                    f"(request: {preview(messages)}); counted as a failure, not retried",
                                    self.secrets), redact_obj(meta, self.secrets))

    def _paid(self, text: str, meta: dict) -> tuple[str, dict]:
        """Tally a usable reply (cannot raise: `parse_completion` sanitized meta) and redact it."""
        self._count("prompt_tokens", n=meta["usage"].get("prompt_tokens", 0))
        self._count("completion_tokens", n=meta["usage"].get("completion_tokens", 0))
        self._count("usage_malformed", n=int(bool(meta.get("usage_malformed"))))
        self._count("served_models", meta["served_model"])
        self._count("system_fingerprints", meta["system_fingerprint"])
        return redact(text, self.secrets, generic=False), redact_obj(meta, self.secrets, generic=False)

    def send(self, messages: list[dict], settings: GenerationSettings, request_id: str = "") -> tuple[str, dict]:
        """One request with retries, each attempt under the deadline `timeout_s`: (reply text, meta), or
        LLMError / RequestRejected / UnusableReply (every message redacted)."""
        import httpx

        body = self.body(messages, settings)
        headers = {"Authorization": f"Bearer {self._key}",
                   **({"X-Client-Request-Id": request_id} if request_id else {})}
        last = "no attempt made"
        for attempt in range(self.cfg.max_retries + 1):
            retry_after = 0.0
            self._count("requests")
            try:
                resp = self._transport.post(f"{self.base_url}/chat/completions", body, headers)
            except DeadlineExceeded as e:
                self._count("deadline_exceeded")
                last = str(e)
            except ReplyTooLarge as e:
                raise self._unusable(str(e), {}, messages) from None
            except httpx.TimeoutException as e:
                last = f"timeout after {self.cfg.timeout_s} s ({type(e).__name__})"
            except (httpx.TransportError, BadEncoding) as e:
                last = f"connection error: {type(e).__name__}: {e}"
            else:
                if resp.status_code == 200:
                    try:
                        data = json.loads(resp.body)
                    except ValueError as e:
                        last = f"malformed 200 body (not JSON: {e}): {redact(resp.text, self.secrets)[:120]!r}"
                    else:
                        text, meta, problem = parse_completion(data)
                        if problem is not None:
                            raise self._unusable(problem, meta, messages)
                        return self._paid(text, meta)
                elif resp.status_code in RETRY_STATUS or resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}: {redact(resp.text, self.secrets)[:200]!r}"
                    try:
                        retry_after = float(resp.headers.get("retry-after", 0))
                    except ValueError:
                        retry_after = 0.0
                    retry_after = retry_after if retry_after == retry_after else 0.0     # NaN
                else:
                    msg = redact(f"{self.shown_url} refused the request for model {self.cfg.model!r} with HTTP "
                                 f"{resp.status_code}: {redact(resp.text, self.secrets)[:300]!r} "
                                 f"(request: {preview(messages)})", self.secrets)
                    if resp.status_code in REJECT_STATUS:
                        self._count("rejected")
                        raise RequestRejected(msg, resp.status_code)
                    raise LLMError(msg)
            if attempt < self.cfg.max_retries:
                self._count("retries")
                self._wait(attempt, retry_after)
        raise LLMError(redact(f"request to {self.shown_url} for model {self.cfg.model!r} failed after "
                              f"{self.cfg.max_retries + 1} attempt(s); last error: {last} "
                              f"(request: {preview(messages)})", self.secrets))

    def generate(self, conversations, settings, on_reply: OnReply, on_error=None, on_send=None,
                 on_done=None) -> None:
        """`on_send(i)` returning None means: answered meanwhile (another process), do not send; `on_done(i)` is
        called once request i is over, whatever happened (the client drops its claim there)."""
        def one(i: int) -> None:
            try:
                rid = on_send(i) if on_send is not None else ""
                if rid is None:
                    return
                try:
                    text, meta = self.send(conversations[i], settings, rid)
                except RequestRejected as e:
                    if on_error is None:
                        raise
                    on_error(i, e)
                else:
                    on_reply(i, text, meta)          # cached the moment it arrives
            finally:
                if on_done is not None:
                    on_done(i)

        _run_all(len(conversations), self.cfg.max_concurrency, one)

    def info(self) -> dict:
        return {"base_url": self.shown_url, "max_concurrency": self.cfg.max_concurrency, **self.stats}


class LocalBackend:
    kind = "local"

    def __init__(self, cfg, loader: Callable[[], tuple] | None = None):
        self.cfg, self._loader = cfg, loader
        self._tok = self._model = None
        self.stats = {"generate_calls": 0, "prompt_tokens": 0, "completion_tokens": 0}

    def _load(self):
        if self._model is None:
            if self._loader is not None:
                self._tok, self._model = self._loader()
            else:
                self._tok, self._model = shared_causal_lm(self.cfg.model, device=self.cfg.device)
            self._tok.padding_side = "left"
            if self._tok.pad_token is None:
                self._tok.pad_token = self._tok.eos_token
        return self._tok, self._model

    def generate(self, conversations, settings, on_reply: OnReply, on_error=None, on_send=None,
                 on_done=None) -> None:
        import torch

        tok, model = self._load()
        texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))   # similar lengths share a batch
        sample = settings.temperature > 0
        gen = dict(max_new_tokens=settings.max_new_tokens, do_sample=sample, pad_token_id=tok.pad_token_id)
        if sample:
            gen["temperature"] = settings.temperature
            if settings.top_p is not None:
                gen["top_p"] = settings.top_p
        else:   # greedy: clear the model's sampling defaults so generate() does not warn about them
            gen.update(temperature=None, top_p=None, top_k=None)
        eos = {t for t in (tok.eos_token_id, getattr(model.generation_config, "eos_token_id", None))
               for t in (t if isinstance(t, list) else [t]) if t is not None}
        bs = max(1, self.cfg.local_batch_size)
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = enc.to(model.device)
            if sample:
                torch.manual_seed(settings.seed if settings.seed is not None else 0)
            with torch.no_grad():
                out = model.generate(**enc, **gen)
            new = out[:, enc["input_ids"].shape[1]:]
            replies = tok.batch_decode(new, skip_special_tokens=True)
            self.stats["generate_calls"] += 1
            self.stats["prompt_tokens"] += int(enc["attention_mask"].sum())
            for row, (i, text) in enumerate(zip(idx, replies)):
                ids = new[row].tolist()
                ended = any(t in eos for t in ids)
                n = next((k + 1 for k, t in enumerate(ids) if t in eos), len(ids))
                self.stats["completion_tokens"] += n
                on_reply(i, text.strip(), {"served_model": self.cfg.model, "system_fingerprint": None,
                                           "finish_reason": "stop" if ended or n < settings.max_new_tokens
                                           else "length", "usage": {"completion_tokens": n}, "created": time.time()})

    def info(self) -> dict:
        return {"device": str(self._model.device) if self._model is not None else self.cfg.device, **self.stats}
