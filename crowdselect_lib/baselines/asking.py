"""Asking an LLM for a validated answer (Direct score, Instag, SelectLLM).

Contract: a parser takes the reply text and returns the parsed value or raises `ParseError` whose message says
what is wrong. `ask_with_retries` asks every conversation, re-asks the invalid ones (the reply and a reminder
naming the problem appended) at most `max_retries` times, then records the item as a failure: it never gets a
default value, it is excluded and counted. A request with no usable reply at all (refused, content filter,
malformed completion) is such a failure at once: asking again would pay for the same refusal. A reply cut off at
`max_new_tokens` (finish reason ``length``, or a parser's `Truncated`) is counted as truncated. Replies go
through the LLM client's own cache (`llm.make_llm`), so a rerun never pays twice.
"""
from __future__ import annotations

import pandas as pd

from ..llm import GenerationSettings, endpoint_of, make_llm
from ..runs import digest


class ParseError(ValueError):
    """An LLM reply without a valid answer; the message says what is wrong (it is sent back on a retry)."""


class Truncated(ParseError):
    """A reply that stops in the middle of its answer (cut off at the token limit)."""


def generation(cfg, max_new_tokens: int) -> GenerationSettings:
    """The generation settings of a baseline request: `llm` temperature / top_p / seed, the method's token limit."""
    return GenerationSettings(cfg.llm.temperature, max_new_tokens, cfg.llm.top_p, cfg.llm.seed)


def llm_identity(cfg, max_new_tokens: int, prompt) -> dict:
    """Key part of an LLM baseline: who answers (backend, base_url, model), the generation settings, the digest of
    the prompt texts and the retry budget."""
    return {"endpoint": endpoint_of(cfg.llm).as_dict(), "generation": generation(cfg, max_new_tokens).__dict__,
            "prompt": digest(prompt), "max_retries": cfg.baselines.llm_max_retries,
            "example": cfg.baselines.llm_example}


class LLMCostNotConfirmed(RuntimeError):
    """The LLM baselines would send more paid requests than `baselines.max_calls_without_confirm` unconfirmed."""


def check_llm_cost(llm, cfg, conversations, settings: GenerationSettings) -> None:
    """The LLM baselines' cost gate: raise `LLMCostNotConfirmed` (naming the ``--set`` that opens it) when an
    OpenAI-compatible backend would send more uncached requests than `baselines.max_calls_without_confirm`."""
    b = cfg.baselines
    if cfg.llm.backend != "openai" or b.confirm_cost or not hasattr(llm, "estimate"):
        return
    n = llm.estimate(conversations, settings)["to_send"]
    if n > b.max_calls_without_confirm:
        raise LLMCostNotConfirmed(
            f"the LLM baselines would send {n:,} requests to {cfg.llm.model}, more than "
            f"baselines.max_calls_without_confirm={b.max_calls_without_confirm}; open the gate with "
            f"--set baselines.confirm_cost=true")


def client(run, cfg):
    """The run's LLM client (`llm` section), its reply cache under ``<run>/cache/llm``; `ask_with_retries` runs
    its cost gate (`check_llm_cost`) before the first request."""
    llm = make_llm(cfg.llm, cache_dir=run.dir / "cache" / "llm")
    llm.cost_gate = lambda conversations, settings: check_llm_cost(llm, cfg, conversations, settings)
    return llm


def _ask(llm, convs, settings):
    """(texts, cut-off flags, errors) of one batch; `complete` gives the finish reason when the client has it, and
    a request with no usable reply (refused, content filter, malformed) as text None with its error."""
    if hasattr(llm, "complete"):
        replies = llm.complete(convs, settings, skip_rejected=True)
        return ([r.text for r in replies], [(r.meta or {}).get("finish_reason") == "length" for r in replies],
                [r.error for r in replies])
    texts = llm.chat(convs, settings)
    return list(texts), [False] * len(texts), [None] * len(texts)


def ask_with_retries(llm, conversations: list[list[dict]], parse, settings: GenerationSettings,
                     max_retries: int = 2) -> pd.DataFrame:
    """Ask every conversation and parse each reply with `parse` (one callable, or one per conversation).

    Returns one row per conversation: ``value`` (parsed, None on failure), ``reply`` (last raw reply),
    ``attempts``, ``truncated`` (last reply cut off), ``error`` (None when valid)."""
    n = len(conversations)
    value, reply, attempts, cut, error = [None] * n, [""] * n, [0] * n, [False] * n, ["not asked"] * n
    parsers = list(parse) if isinstance(parse, (list, tuple)) else [parse] * n
    if len(parsers) != n:
        raise ValueError(f"{len(parsers)} parsers for {n} conversations")
    gate = getattr(llm, "cost_gate", None)
    if gate is not None:
        gate(conversations, settings)
    convs, todo = [list(c) for c in conversations], list(range(n))
    for _ in range(max_retries + 1):
        if not todo:
            break
        texts, flags, errors = _ask(llm, [convs[i] for i in todo], settings)
        failed = []
        for i, text, flag, err in zip(todo, texts, flags, errors):
            attempts[i] += 1
            if err is not None:              # no usable reply: a counted failure, not asked again
                reply[i], error[i] = "", f"no usable reply: {err}"
                continue
            reply[i] = text
            try:
                value[i], error[i], cut[i] = parsers[i](text), None, False
            except ParseError as e:
                error[i], cut[i] = str(e), flag or isinstance(e, Truncated)
                convs[i] = convs[i] + [{"role": "assistant", "content": text},
                                       {"role": "user", "content": f"That answer is invalid: {e}. Please answer "
                                                                   "again, following the required format exactly."}]
                failed.append(i)
        todo = failed
    return pd.DataFrame({"value": value, "reply": reply, "attempts": attempts, "truncated": cut, "error": error})


def llm_report(method: str, asked: pd.DataFrame, llm=None) -> dict:
    """Counts of an LLM baseline: asked, failed (excluded), retried, truncated, three failure examples."""
    fails = asked["error"].notna()
    out = {"method": method, "asked": int(len(asked)), "failed": int(fails.sum()),
           "retried": int((asked["attempts"] > 1).sum()),
           "truncated": int(asked["truncated"].sum()) if "truncated" in asked else 0,
           "failure_examples": asked.loc[fails, "error"].head(3).tolist()}
    if llm is not None:
        out["llm"] = getattr(llm, "name", str(llm))
    return out
