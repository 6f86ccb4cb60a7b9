"""One LLM client for every LLM call of the project (Direct score, Instag, SelectLLM, judges, students):
`client` (the cached client, `make_llm`, cost estimate), `cache` (endpoint identity, reply cache, pending log),
`backends` (OpenAI-compatible HTTP, in-process transformers), `transport` (one HTTP attempt under a deadline
and a size cap), `redact` (no API key in any file, log or error)."""
from typing import Protocol, runtime_checkable

from .backends import DEFAULT_BASE_URL, LLMError, LocalBackend, OpenAIBackend, RequestRejected, UnusableReply
from .cache import Endpoint, GenerationSettings, ReplyCache, request_key
from .client import (CacheMiss, CachedLLM, Reply, check_conversations, endpoint_of, estimate_cost, make_llm,
                     settings_from_config)


@runtime_checkable
class LLM(Protocol):
    name: str

    def chat(self, conversations: list[list[dict]], settings: GenerationSettings = GenerationSettings()) -> list[str]: ...

    def info(self) -> dict: ...


__all__ = ["LLM", "CachedLLM", "CacheMiss", "DEFAULT_BASE_URL", "Endpoint", "GenerationSettings", "LLMError",
           "LocalBackend", "OpenAIBackend", "Reply", "ReplyCache", "RequestRejected", "UnusableReply",
           "check_conversations", "endpoint_of", "estimate_cost", "make_llm", "request_key", "settings_from_config"]
