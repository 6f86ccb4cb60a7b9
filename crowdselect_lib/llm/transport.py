"""One HTTP POST under an overall deadline and a size cap (issue 25), for `backends.OpenAIBackend`.

httpx's timeouts bound each socket operation, not a request: a server that trickles one byte every half second
(headers or body), or a stream that never ends, holds a call for ever. Here each attempt runs as a coroutine
on one event loop per process (a daemon thread) under ``asyncio.wait_for(timeout_s)``: connect, headers and body
together, whatever the server does. The body is read raw and decompressed here (gzip, deflate) at most
`max_bytes` past what was already read, so a gzip bomb stops at the cap instead of expanding in memory.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import zlib
from dataclasses import dataclass


class DeadlineExceeded(Exception):
    """An attempt got no complete reply within its deadline; the message says how far it got."""


class ReplyTooLarge(Exception):
    """A reply body (after decompression) exceeded the size cap."""


class BadEncoding(Exception):
    """A reply body in a content encoding we did not ask for, or corrupt compressed data."""


@dataclass
class Raw:
    """A complete HTTP reply: status, headers (case-insensitive httpx.Headers), decoded body bytes."""
    status_code: int
    headers: object
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


_LOCK = threading.Lock()
_LOOP: dict[int, asyncio.AbstractEventLoop] = {}      # pid -> loop (a forked child starts its own)


def event_loop() -> asyncio.AbstractEventLoop:
    """The process's HTTP event loop, running on a daemon thread (started on first use)."""
    pid = os.getpid()
    with _LOCK:
        if pid not in _LOOP:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="crowdselect-llm-http", daemon=True).start()
            _LOOP.clear()
            _LOOP[pid] = loop
        return _LOOP[pid]


def _decoder(encoding: str):
    enc = (encoding or "identity").strip().lower()
    if enc == "identity":
        return None
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if enc == "deflate":
        return zlib.decompressobj()
    raise BadEncoding(f"reply in content encoding {enc!r}; only gzip and deflate were accepted")


class Transport:
    """POST JSON with an overall deadline per attempt (`timeout_s`) and a body cap (`max_bytes`, decompressed)."""

    def __init__(self, timeout_s: float, max_bytes: int, max_connections: int):
        self.timeout_s, self.max_bytes, self.max_connections = float(timeout_s), int(max_bytes), max_connections
        self._client, self._pid = None, None

    def _http(self):
        import httpx

        if self._client is None or self._pid != os.getpid():
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s),
                                             limits=httpx.Limits(max_connections=self.max_connections))
            self._pid = os.getpid()
        return self._client

    async def _read(self, url: str, body: dict, headers: dict, progress: dict) -> Raw:
        async with self._http().stream("POST", url, json=body,
                                       headers={**headers, "Accept-Encoding": "gzip, deflate"}) as resp:
            progress["stage"] = "reading the body"
            dec = _decoder(resp.headers.get("content-encoding", ""))
            parts, size = [], 0
            try:
                async for chunk in resp.aiter_raw():
                    progress["raw"] += len(chunk)
                    out = chunk if dec is None else dec.decompress(chunk, self.max_bytes - size + 1)
                    size += len(out)
                    if size > self.max_bytes:
                        raise ReplyTooLarge(f"reply body over llm.max_reply_bytes = {self.max_bytes} bytes "
                                            f"(decompressed; {progress['raw']} bytes received); refused")
                    parts.append(out)
                if dec is not None:
                    tail = dec.flush()
                    if size + len(tail) > self.max_bytes:
                        raise ReplyTooLarge(f"reply body over llm.max_reply_bytes = {self.max_bytes} bytes "
                                            "(decompressed); refused")
                    parts.append(tail)
            except zlib.error as e:
                raise BadEncoding(f"corrupt {resp.headers.get('content-encoding')} body: {e}") from None
            return Raw(resp.status_code, resp.headers, b"".join(parts))

    async def _attempt(self, url: str, body: dict, headers: dict, progress: dict) -> Raw:
        try:
            return await asyncio.wait_for(self._read(url, body, headers, progress), self.timeout_s)
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"no complete reply within llm.timeout_s = {self.timeout_s:g} s (deadline per "
                                   f"attempt; stopped while {progress['stage']}, {progress['raw']} body bytes "
                                   "received)") from None

    def close(self) -> None:
        """Close the pooled connections (on the loop that owns them); idempotent."""
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            loop = event_loop()
            if not loop.is_closed():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)

    def __del__(self):
        try:
            self.close()
        except Exception:       # interpreter shutdown: nothing left to close
            pass

    def post(self, url: str, body: dict, headers: dict) -> Raw:
        """One attempt: a `Raw` reply, or DeadlineExceeded / ReplyTooLarge / BadEncoding / an httpx error."""
        progress = {"stage": "connecting or waiting for headers", "raw": 0}
        fut = asyncio.run_coroutine_threadsafe(self._attempt(url, body, headers, progress), event_loop())
        try:
            return fut.result(self.timeout_s + 30)    # the coroutine's own deadline fires first
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise DeadlineExceeded(f"no reply within llm.timeout_s = {self.timeout_s:g} s (event loop stalled)")
