"""LLM backends behind one small interface (house rule 8):
``generate(conversations, settings, on_reply, on_error=None, on_send=None)`` sends every conversation and
calls ``on_send(i)`` just before request i leaves, ``on_reply(i, text, meta)`` as each reply arrives and, for a
request the server refused (HTTP 400/413/422: e.g. a prompt longer than its context), ``on_error(i, exc)``
when given (else it raises). meta: ``served_model, system_fingerprint, finish_reason, usage, created``.

- `OpenAIBackend`: any OpenAI-compatible ``/chat/completions`` endpoint (DeepSeek, Together, vLLM, SGLang) over
  httpx; at most `max_concurrency` requests in flight; 429, 408, 409, 425, 5xx, timeouts, dropped connections and
  malformed bodies are retried with exponential backoff and jitter; a ``Retry-After`` header is honoured up to
  `backoff_max_s` (a longer one is capped, and a log line says so); 401/403/404 fail at once; `extra_body`
  fields (e.g. ``{"thinking": {"type": "disabled"}}``) are merged into every request body.
- `LocalBackend`: a transformers chat model loaded in-process (`models.shared_causal_lm`, or any loader returning
  (tokenizer, model), e.g. `training.load_trained`), batched left-padded generation with its chat template;
  greedy at temperature 0; the model's own top_p unless the settings name one; an answer that used all
  `max_new_tokens` without an end token has finish_reason ``length``.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable

from ..models import shared_causal_lm
from .cache import GenerationSettings

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


class OpenAIBackend:
    kind = "openai"

    def __init__(self, cfg, sleep: Callable[[float], None] = time.sleep):
        key = os.environ.get(cfg.api_key_env)
        if not key:
            raise LLMError(f"environment variable {cfg.api_key_env} is not set (api_key_env); export the API key "
                           "there (any non-empty value for a local server without authentication)")
        self.cfg, self._key, self._sleep = cfg, key, sleep
        self.base_url = (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._client = None
        self._lock = threading.Lock()
        self.stats = {"requests": 0, "retries": 0, "rejected": 0, "prompt_tokens": 0, "completion_tokens": 0,
                      "served_models": {}, "system_fingerprints": {}, "retry_after_capped": 0}

    def _http(self):
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.cfg.timeout_s,
                                        limits=httpx.Limits(max_connections=self.cfg.max_concurrency))
        return self._client

    def _count(self, name: str, value=None, n: int = 1) -> None:
        with self._lock:
            if isinstance(self.stats[name], dict):
                self.stats[name][value] = self.stats[name].get(value, 0) + n
            else:
                self.stats[name] += n

    @staticmethod
    def _parse(resp) -> tuple[str, dict]:
        data = resp.json()
        choice = data["choices"][0]
        text = choice["message"]["content"]
        if not isinstance(text, str):
            raise ValueError(f"choices[0].message.content is {type(text).__name__}, not a string")
        return text, {"served_model": data.get("model"), "system_fingerprint": data.get("system_fingerprint"),
                      "finish_reason": choice.get("finish_reason"), "usage": data.get("usage") or {},
                      "created": data.get("created") or time.time()}

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
                        self.base_url, retry_after, self.cfg.backoff_max_s)
            retry_after = self.cfg.backoff_max_s
        self._sleep(max(delay, retry_after))

    def send(self, messages: list[dict], settings: GenerationSettings, request_id: str = "") -> tuple[str, dict]:
        """One request with retries: (reply text, meta), or LLMError / RequestRejected."""
        import httpx

        body = self.body(messages, settings)
        headers = {"Authorization": f"Bearer {self._key}", **({"X-Client-Request-Id": request_id} if request_id else {})}
        last = "no attempt made"
        for attempt in range(self.cfg.max_retries + 1):
            retry_after = 0.0
            self._count("requests")
            try:
                resp = self._http().post(f"{self.base_url}/chat/completions", json=body, headers=headers)
            except httpx.TimeoutException as e:
                last = f"timeout after {self.cfg.timeout_s} s ({type(e).__name__})"
            except httpx.TransportError as e:
                last = f"connection error: {type(e).__name__}: {e}"
            else:
                if resp.status_code == 200:
                    try:
                        text, meta = self._parse(resp)
                    except (ValueError, KeyError, IndexError, TypeError) as e:
                        last = f"malformed 200 body ({type(e).__name__}: {e}): {resp.text[:120]!r}"
                    else:
                        self._count("prompt_tokens", n=int(meta["usage"].get("prompt_tokens") or 0))
                        self._count("completion_tokens", n=int(meta["usage"].get("completion_tokens") or 0))
                        self._count("served_models", meta["served_model"])
                        self._count("system_fingerprints", meta["system_fingerprint"])
                        return text, meta
                elif resp.status_code in RETRY_STATUS or resp.status_code >= 500:
                    last = f"HTTP {resp.status_code}: {resp.text[:200]!r}"
                    try:
                        retry_after = float(resp.headers.get("retry-after", 0))
                    except ValueError:
                        retry_after = 0.0
                else:
                    msg = (f"{self.base_url} refused the request for model {self.cfg.model!r} with HTTP "
                           f"{resp.status_code}: {resp.text[:300]!r} (request: {preview(messages)})")
                    if resp.status_code in REJECT_STATUS:
                        self._count("rejected")
                        raise RequestRejected(msg, resp.status_code)
                    raise LLMError(msg)
            if attempt < self.cfg.max_retries:
                self._count("retries")
                self._wait(attempt, retry_after)
        raise LLMError(f"request to {self.base_url} for model {self.cfg.model!r} failed after "
                       f"{self.cfg.max_retries + 1} attempt(s); last error: {last} (request: {preview(messages)})")

    def generate(self, conversations, settings, on_reply: OnReply, on_error=None, on_send=None) -> None:
        def one(i: int) -> None:
            rid = on_send(i) if on_send is not None else ""
            try:
                text, meta = self.send(conversations[i], settings, rid or "")
            except RequestRejected as e:
                if on_error is None:
                    raise
                on_error(i, e)
            else:
                on_reply(i, text, meta)          # cached the moment it arrives

        _run_all(len(conversations), self.cfg.max_concurrency, one)

    def info(self) -> dict:
        return {"base_url": self.base_url, "max_concurrency": self.cfg.max_concurrency, **self.stats}


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

    def generate(self, conversations, settings, on_reply: OnReply, on_error=None, on_send=None) -> None:
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
