"""A fake OpenAI-compatible chat server on 127.0.0.1 for tests (bounded, stops by itself).

Usage::

    from fake_openai import FakeOpenAI          # tests/ is on sys.path under pytest

    with FakeOpenAI(replies=lambda req: "Score: 4", faults=[500, "timeout", None, "malformed"]) as srv:
        cfg = LLMConfig(backend="openai", model="fake-model", base_url=srv.base_url, ...)
        ...
        assert srv.count == 5                    # every HTTP request received, faults included
        assert srv.served == 1                   # requests answered with a valid completion ("paid")
        srv.requests[0]["body"]["messages"]      # what the client sent, in arrival order

API
---
``FakeOpenAI(replies=None, faults=None, *, model="fake-model", fingerprint="fp_fake_1", slow_s=2.0,
delay_s=0.0, max_requests=500, lifetime_s=300.0, require_key=None, retry_after="0", finish_reason="stop")``

- ``replies``: what a successful request answers. A callable ``f(body: dict) -> str`` (``body`` is the
  parsed JSON request, ``body["messages"]`` the conversation), a list of strings (consumed in the order
  of successful requests; once exhausted the last one repeats), a single string, or None (echo: the
  last user message prefixed with ``"echo: "``).
- ``faults``: the scripted fault of the n-th request (arrival order, 0-based), a list whose entries are
  ``None``/``"ok"`` (answer normally), ``500``/``502``/``503``/any int status (an error JSON with that
  status), ``429`` (rate limit, with ``Retry-After: 0``), ``"timeout"`` (sleep ``slow_s`` seconds, then
  answer normally: a client with a shorter timeout gives up), ``"hang"`` (sleep until the server stops;
  never answers), ``"malformed"`` (HTTP 200 with a body that is not JSON), ``"no_choices"`` (HTTP 200
  JSON without ``choices``), ``"drop"`` (close the connection without a reply); issue 25's hostile
  servers: ``"trickle"`` (headers at once, then the body one byte every ``trickle_s``), ``"slow_headers"``
  (the header block one byte every ``trickle_s``), ``"endless"`` (a chunked body that never ends, a chunk
  every ``trickle_s``), ``"gzip_bomb"`` (a completion of 50 MB of text sent gzip-compressed, ~50 KB on the
  wire), ``"null_content"`` (``content: null``, finish reason ``content_filter``), ``"list_content"``
  (content as a list of parts), ``"bad_usage"`` (a valid completion whose ``usage`` is a string),
  ``"echo_auth"`` (a valid completion whose text echoes the ``Authorization`` header), ``"echo_auth_400"``
  (HTTP 400 whose error message echoes it). Requests past the end of the list answer normally. ``faults`` may also be a callable ``f(n: int, body: dict) -> fault``.
- ``delay_s``: a delay before every normal reply (to exercise concurrency).
- ``require_key``: if set, requests without ``Authorization: Bearer <require_key>`` get a 401.
- ``retry_after``: the ``Retry-After`` header of a 429 (e.g. ``"86400"``).
- ``finish_reason``: the completion's finish reason, a string or ``f(body) -> str`` (e.g. ``"length"``).
- ``model``: the model id the server says it served (whatever the request asked for).
- Bounds: at most ``max_requests`` requests are handled (later ones get 503 and are counted in
  ``rejected``), and the server shuts itself down ``lifetime_s`` seconds after it started.

Attributes: ``base_url`` (``http://127.0.0.1:<port>/v1``), ``requests`` (list of dicts ``{n, path,
body, fault, status, headers}`` in arrival order), ``count`` (requests received), ``served`` (valid
completions sent), ``served_bodies`` (the request bodies that were answered with a valid completion),
``max_in_flight`` (the largest number of requests handled at the same time).

Endpoints: ``POST /v1/chat/completions`` and ``GET /v1/models``. A completion carries ``model``,
``system_fingerprint`` and a ``usage`` block (tokens approximated as characters / 4).
"""
from __future__ import annotations

import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


class FakeOpenAI:
    def __init__(self, replies: Callable[[dict], str] | list[str] | str | None = None,
                 faults: list[Any] | Callable[[int, dict], Any] | None = None, *,
                 model: str = "fake-model", fingerprint: str = "fp_fake_1", slow_s: float = 2.0,
                 delay_s: float = 0.0, max_requests: int = 500, lifetime_s: float = 300.0,
                 require_key: str | None = None, retry_after: str = "0",
                 finish_reason: str | Callable[[dict], str] = "stop", trickle_s: float = 0.5):
        self.replies = replies
        self.faults = faults if faults is not None else []
        self.model, self.fingerprint = model, fingerprint
        self.slow_s, self.delay_s = slow_s, delay_s
        self.max_requests, self.lifetime_s = max_requests, lifetime_s
        self.require_key = require_key
        self.retry_after, self.finish_reason = retry_after, finish_reason
        self.trickle_s = trickle_s
        self.requests: list[dict] = []
        self.served_bodies: list[dict] = []
        self.rejected = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # ------------------------------------------------------------------ public
    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeOpenAI is not running (use it as a context manager)")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def served(self) -> int:
        return len(self.served_bodies)

    def start(self) -> "FakeOpenAI":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals
    def _fault_for(self, n: int, body: dict) -> Any:
        if callable(self.faults):
            return self.faults(n, body)
        return self.faults[n] if n < len(self.faults) else None

    def _reply_for(self, body: dict) -> str:
        r = self.replies
        if r is None:
            users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
            return "echo: " + (users[-1] if users else "")
        if callable(r):
            return str(r(body))
        if isinstance(r, str):
            return r
        with self._lock:
            i = min(self.served, len(r) - 1)
        return r[i]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, payload: bytes, ctype: str = "application/json", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def _error(self, status: int, message: str, headers: dict | None = None):
        body = json.dumps({"error": {"message": message, "type": "fake_error", "code": status}}).encode()
        self._send(status, body, headers=headers)

    def _drip(self, data: bytes) -> None:
        """Write `data` one byte every trickle_s until done, the client leaves or the server stops."""
        for i in range(len(data)):
            try:
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
            if self.fake._stop.wait(self.fake.trickle_s):
                return

    def _hostile(self, fault: str, payload: bytes, record: dict):
        record["status"] = 200
        self.close_connection = True
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
        if fault == "slow_headers":
            return self._drip(head + b"Content-Length: %d\r\n\r\n" % len(payload))
        if fault == "trickle":
            self.wfile.write(head + b"Content-Length: %d\r\n\r\n" % len(payload))
            return self._drip(payload)
        self.wfile.write(head + b"Transfer-Encoding: chunked\r\n\r\n")       # endless
        while True:
            try:
                self.wfile.write(b"1\r\n \r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
            if self.fake._stop.wait(self.fake.trickle_s):
                return

    def do_GET(self):  # noqa: N802
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": self.fake.model, "object": "model"}]}).encode())
        else:
            self._error(404, f"unknown path {self.path}")

    def do_POST(self):  # noqa: N802
        fake = self.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {"_unparsable": raw.decode(errors="replace")}
        with fake._lock:
            n = len(fake.requests)
            record = {"n": n, "path": self.path, "body": body, "fault": None, "status": None,
                      "headers": dict(self.headers)}
            fake.requests.append(record)
            over = n >= fake.max_requests
            fake._in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
        try:
            self._answer(fake, n, body, record, over)
        finally:
            with fake._lock:
                fake._in_flight -= 1

    def _answer(self, fake: FakeOpenAI, n: int, body: dict, record: dict, over: bool):
        if over:
            with fake._lock:
                fake.rejected += 1
            record["status"] = 503
            return self._error(503, f"fake server request budget ({fake.max_requests}) exhausted")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            record["status"] = 404
            return self._error(404, f"unknown path {self.path}")
        if fake.require_key is not None and self.headers.get("Authorization") != f"Bearer {fake.require_key}":
            record["status"] = 401
            return self._error(401, "invalid api key")
        fault = fake._fault_for(n, body)
        fault = None if fault == "ok" else fault
        record["fault"] = fault
        if isinstance(fault, int):
            record["status"] = fault
            headers = {"Retry-After": fake.retry_after} if fault == 429 else None
            return self._error(fault, f"injected {fault}", headers)
        if fault == "hang":
            fake._stop.wait(fake.lifetime_s)
            self.close_connection = True
            return None
        if fault == "drop":
            self.close_connection = True
            return None
        if fault == "timeout":
            if fake._stop.wait(fake.slow_s):
                return None
        if fault == "malformed":
            record["status"] = 200
            return self._send(200, b'{"choices": [ this is not json', ctype="application/json")
        if fault == "no_choices":
            record["status"] = 200
            return self._send(200, json.dumps({"id": "x", "object": "chat.completion", "model": fake.model}).encode())
        if fault == "echo_auth_400":
            record["status"] = 400
            return self._error(400, f"bad request from {self.headers.get('Authorization')}")
        if fault == "gzip_bomb":
            record["status"] = 200
            return self._send(200, _bomb(), headers={"Content-Encoding": "gzip"})
        if fault not in (None, "timeout", "trickle", "slow_headers", "endless", "null_content", "list_content",
                         "bad_usage", "echo_auth"):
            raise ValueError(f"unknown fault {fault!r}")
        if fake.delay_s and fake._stop.wait(fake.delay_s):
            return None
        text = fake._reply_for(body)
        if fault == "echo_auth":
            text = f"you sent Authorization: {self.headers.get('Authorization')}"
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        payload = {
            "id": f"chatcmpl-fake-{n}", "object": "chat.completion", "created": int(time.time()),
            "model": fake.model, "system_fingerprint": fake.fingerprint,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": fake.finish_reason(body) if callable(fake.finish_reason) else fake.finish_reason}],
            "usage": {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(text) // 4 + 1,
                      "total_tokens": prompt_chars // 4 + len(text) // 4 + 2},
        }
        message = payload["choices"][0]["message"]
        if fault == "null_content":
            message["content"], payload["choices"][0]["finish_reason"] = None, "content_filter"
        elif fault == "list_content":
            message["content"] = [{"type": "text", "text": text}]
        elif fault == "bad_usage":
            payload["usage"] = "lots"
        record["status"] = 200
        with fake._lock:
            fake.served_bodies.append(body)
        if fault in ("trickle", "slow_headers", "endless"):
            return self._hostile(fault, json.dumps(payload).encode(), record)
        return self._send(200, json.dumps(payload).encode())


_BOMB: list[bytes] = []


def _bomb() -> bytes:
    """A gzip-compressed completion whose text is 50 MB of one letter (~50 KB compressed), built once."""
    if not _BOMB:
        co = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        head = b'{"id": "bomb", "model": "fake-model", "choices": [{"index": 0, "finish_reason": "stop", ' \
               b'"message": {"role": "assistant", "content": "'
        parts = [co.compress(head)] + [co.compress(b"a" * 2 ** 20) for _ in range(50)]
        _BOMB.append(b"".join(parts + [co.compress(b'"}}]}'), co.flush()]))
    return _BOMB[0]


# ---------------------------------------------------------------------- judge-stage helpers for tests

KEY_ENV = "CROWDSELECT_TEST_KEY"
TRAINED = {"system": "crowdselect-sft_lora-s42", "subset": "crowdselect", "student": "smollm2-135m-instruct",
           "method": "sft_lora", "seed": 42, "key": "trainedkey01", "path": "/nonexistent/trained"}


def judge_reply(body: dict) -> str:
    """A well-behaved judge: a verdict for Arena-Hard requests, a rating for MT-Bench ones."""
    user = body["messages"][-1]["content"]
    return "My final verdict is: [[B>A]]" if "Assistant A" in body["messages"][0]["content"] else "Rating: [[7]]"


def student_reply(body: dict) -> str:
    return "Answer: " + body["messages"][-1]["content"][:40]


def judge_config(run_root, shared_data, student_url: str, judge_url: str | None = None, trained: bool = True,
                 monkeypatch=None, **overrides):
    """A demo-scale config whose students (and judge, when `judge_url`) are fake servers; with `trained`, one
    trained system stands in for the training stage (`training.trained_systems` / `train_step` patched)."""
    import pandas as pd

    import crowdselect_lib as cs
    from crowdselect_lib import training

    if monkeypatch is not None:
        rows = [TRAINED] if trained else []

        def train_step(run, cfg, *args, **kwargs):
            """A finished stand-in training step (answers key on what it wrote, issue 25)."""
            st = cs.runs.Step(run.dir, "training", "stand-in", {"key": TRAINED["key"]}, code=__name__)
            if not st.done:
                st.finish()
            return st

        monkeypatch.setattr(training, "trained_systems",
                            lambda run, cfg: pd.DataFrame(rows, columns=list(TRAINED)), raising=False)
        monkeypatch.setattr(training, "train_step", train_step, raising=False)
        monkeypatch.setenv(KEY_ENV, "sk-test")
    o = {"run.root": str(run_root), "run.name": "t", "judge.data_dir": str(shared_data), "judge.n_questions": 2,
         "judge.pick": "round_robin", "judge.student_backend": "openai", "judge.student_base_url": student_url,
         "judge.student_api_key_env": KEY_ENV, "judge.n_bootstrap": 10, "llm.backoff_s": 0.001,
         "llm.backoff_max_s": 0.01, "llm.timeout_s": 5.0,
         "training.student": "smollm2-135m-instruct",   # the base student is the anchor, whatever demo.yaml trains
         "judge.anchor": "smollm2-135m-instruct"}
    if judge_url is not None:
        o.update({"judge.judge": "llm", "judge.judge_base_url": judge_url, "judge.judge_api_key_env": KEY_ENV})
    o.update(overrides)
    return cs.load_config(cs.runs.repo_root() / "params" / "demo.yaml", o)
