"""Secrets never reach a file, a log line or an exception (issue 25).

`redact` replaces each registered secret (an API key's value, and its URL-encoded form) with ``***`` and, in
messages (not in data: `generic=False` for prompts and replies, which may quote ``Bearer YOUR_KEY`` on their
own), masks credentials in URLs (``user:password@``, ``?api_key=...``, ``?token=...``) and bearer tokens.
The LLM client passes every reply text, error message, cache line and log line it writes through it;
`register` adds a key to a process-wide set that a filter on the ``crowdselect`` logger also redacts, so a
log line from another module that quotes an error is covered too. Values shorter than 6 characters are not
treated as secrets (they would mangle ordinary text; real keys are far longer).
"""
from __future__ import annotations

import logging
import re
import threading
from urllib.parse import quote

MASK = "***"
MIN_SECRET_LEN = 6
_URL_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")
_URL_PARAM = re.compile(r"(?i)([?&;](?:api[_-]?key|key|token|access[_-]?token|secret|password|auth|sig|signature)=)"
                        r"[^&#\s'\"]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}")
_SECRETS: set[str] = set()
_LOCK = threading.Lock()


def register(secret: str | None) -> None:
    """Add `secret` to the process-wide secrets that `redact` and the log filter mask."""
    if secret and len(secret) >= MIN_SECRET_LEN:
        with _LOCK:
            _SECRETS.update({secret, quote(secret, safe="")})
        _install_filter()


def redact(text, secrets=(), generic: bool = True) -> str:
    """`text` with every registered secret and every value in `secrets` masked; with `generic`, also URL
    credentials and bearer tokens."""
    if not isinstance(text, str):
        text = str(text)
    with _LOCK:
        values = set(_SECRETS)
    values.update(s for s in secrets if s and len(s) >= MIN_SECRET_LEN)
    for s in sorted(values, key=len, reverse=True):
        if s in text:
            text = text.replace(s, MASK)
    if not generic:
        return text
    text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
    text = _URL_PARAM.sub(rf"\1{MASK}", text)
    return _BEARER.sub(rf"\1{MASK}", text)


def redact_obj(obj, secrets=(), generic: bool = True):
    """`obj` (JSON-like: dicts, lists, strings, numbers) with `redact` applied to every string in it."""
    if isinstance(obj, str):
        return redact(obj, secrets, generic)
    if isinstance(obj, dict):
        return {redact_obj(k, secrets, generic): redact_obj(v, secrets, generic) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v, secrets, generic) for v in obj]
    return obj


class _Filter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


_FILTER = _Filter()


def _install_filter() -> None:
    log = logging.getLogger("crowdselect")
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
