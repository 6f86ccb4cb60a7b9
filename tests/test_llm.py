"""The LLM client (crowdselect_lib.llm) against a fake OpenAI-compatible server with injected faults."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from crowdselect_lib.config import LLMConfig
from crowdselect_lib.llm import (CacheMiss, Endpoint, GenerationSettings, LLM, LLMError, ReplyCache, estimate_cost,
                                 make_llm, request_key)
from fake_openai import FakeOpenAI

KEY_ENV = "CROWDSELECT_TEST_KEY"


def convs(n: int, prefix: str = "q") -> list[list[dict]]:
    return [[{"role": "user", "content": f"{prefix}{i}"}] for i in range(n)]


def upper(body: dict) -> str:
    return body["messages"][-1]["content"].upper()


def cfg_for(srv: FakeOpenAI, **kw) -> LLMConfig:
    base = dict(backend="openai", model="fake-model", base_url=srv.base_url, api_key_env=KEY_ENV,
                max_retries=6, backoff_s=0.001, backoff_max_s=0.01, timeout_s=2.0, max_concurrency=4)
    base.update(kw)
    return LLMConfig(**base)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")


def test_request_key_depends_on_endpoint_messages_settings_and_repetition():
    m = [{"role": "user", "content": "hi"}]
    e = Endpoint("openai", "a", "http://x/v1")
    k = request_key(e, m, GenerationSettings())
    assert k == request_key(e, [{"role": "user", "content": "hi", "extra": 1}], GenerationSettings())
    others = {request_key(Endpoint("openai", "b", "http://x/v1"), m, GenerationSettings()),
              request_key(Endpoint("openai", "a", "http://y/v1"), m, GenerationSettings()),       # another server
              request_key(Endpoint("local", "a"), m, GenerationSettings()),                       # another backend
              request_key(Endpoint("openai", "a", "http://x/v1", {"thinking": {"type": "disabled"}}), m,
                          GenerationSettings()),
              request_key(e, [{"role": "user", "content": "hi!"}], GenerationSettings()),
              request_key(e, m, GenerationSettings(temperature=0.7)), request_key(e, m, GenerationSettings(seed=1)),
              request_key(e, m, GenerationSettings(), repetition=1)}
    assert len(others | {k}) == 9


def test_extra_body_is_sent_and_top_p_left_to_the_model(tmp_path):
    with FakeOpenAI(replies="ok") as srv:
        llm = make_llm(cfg_for(srv, extra_body={"thinking": {"type": "disabled"}}), cache_dir=tmp_path)
        llm.chat(convs(1))
        body = srv.requests[0]["body"]
        assert body["thinking"] == {"type": "disabled"} and "top_p" not in body
        llm.chat(convs(1), GenerationSettings(top_p=0.9))
        assert srv.requests[1]["body"]["top_p"] == 0.9


def test_another_base_url_is_not_answered_from_the_first_endpoints_cache(tmp_path):
    with FakeOpenAI(replies="first", model="served-1") as a, FakeOpenAI(replies="second", model="served-2") as b:
        assert make_llm(cfg_for(a), cache_dir=tmp_path).chat(convs(1)) == ["first"]
        other = make_llm(cfg_for(b), cache_dir=tmp_path)
        reply = other.complete(convs(1))[0]
        assert (reply.text, reply.meta["served_model"], b.count) == ("second", "served-2", 1)


def test_repetition_is_a_new_sample(tmp_path):
    with FakeOpenAI(replies=upper) as srv:
        llm = make_llm(cfg_for(srv), cache_dir=tmp_path)
        llm.chat(convs(2))
        llm.chat(convs(2), repetition=1)
        llm.chat(convs(2), repetition=1)
        assert srv.count == 4


def test_rejected_prompt_is_a_recorded_error_not_an_abort(tmp_path):
    faults = lambda n, b: 400 if b["messages"][0]["content"] == "q1" else None     # noqa: E731
    with FakeOpenAI(replies=upper, faults=faults) as srv:
        llm = make_llm(cfg_for(srv, max_concurrency=1), cache_dir=tmp_path)
        out = llm.complete(convs(3), skip_rejected=True)
        assert [r.text for r in out] == ["Q0", None, "Q2"] and "HTTP 400" in out[1].error
        assert llm.info()["rejected"] == 1 and srv.count == 3
        with pytest.raises(LLMError, match="HTTP 400"):
            llm.chat(convs(3))


def test_concurrent_replies_in_order_and_bounded(tmp_path):
    with FakeOpenAI(replies=upper, delay_s=0.05, require_key="sk-test") as srv:
        llm = make_llm(cfg_for(srv, max_concurrency=3), cache_dir=tmp_path)
        assert isinstance(llm, LLM)
        out = llm.chat(convs(12))
        assert out == [f"Q{i}" for i in range(12)]
        assert srv.count == 12 and 1 < srv.max_in_flight <= 3
        body = srv.requests[0]["body"]
        assert body["model"] == "fake-model" and body["max_tokens"] == 256 and body["temperature"] == 0.0
        info = llm.info()
        assert info["served_models"] == {"fake-model": 12}
        assert info["system_fingerprints"] == {"fp_fake_1": 12}
        assert info["prompt_tokens"] > 0 and info["base_url"] == srv.base_url


def test_retries_every_fault_kind_then_succeeds(tmp_path):
    faults = [500, 429, "malformed", "drop", "timeout", 503]
    with FakeOpenAI(replies="fine", faults=faults, slow_s=1.0) as srv:
        llm = make_llm(cfg_for(srv, timeout_s=0.3, max_concurrency=1, max_retries=8), cache_dir=tmp_path)
        assert llm.chat(convs(1)) == ["fine"]
        assert srv.count == len(faults) + 1
        assert llm.info()["retries"] == len(faults)


def test_gives_up_after_max_retries_with_clear_error(tmp_path):
    with FakeOpenAI(faults=lambda n, body: 500) as srv:
        llm = make_llm(cfg_for(srv, max_retries=2), cache_dir=tmp_path)
        with pytest.raises(LLMError, match=r"failed after 3 attempt\(s\); last error: HTTP 500.*'q0'"):
            llm.chat(convs(1))
        assert srv.count == 3


def test_client_errors_are_not_retried(tmp_path):
    with FakeOpenAI(require_key="another-key") as srv:
        llm = make_llm(cfg_for(srv), cache_dir=tmp_path)
        with pytest.raises(LLMError, match="HTTP 401"):
            llm.chat(convs(1))
        assert srv.count == 1


def test_missing_api_key_names_the_variable(monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(LLMError, match=KEY_ENV):
        make_llm(LLMConfig(backend="openai", api_key_env=KEY_ENV))


def test_cache_hits_dedup_and_reload(tmp_path):
    with FakeOpenAI(replies=upper) as srv:
        llm = make_llm(cfg_for(srv), cache_dir=tmp_path)
        batch = convs(3) + convs(3)                    # duplicates are sent once
        assert llm.chat(batch) == ["Q0", "Q1", "Q2"] * 2
        assert srv.count == 3
        assert llm.chat(convs(4)) == ["Q0", "Q1", "Q2", "Q3"] and srv.count == 4
        again = make_llm(cfg_for(srv), cache_dir=tmp_path)   # a new process reads the disk cache
        assert again.chat(convs(4)) == ["Q0", "Q1", "Q2", "Q3"] and srv.count == 4
        assert again.info()["cache"]["hits"] == 4
        # other settings are another request
        assert again.chat(convs(1), GenerationSettings(max_new_tokens=5)) == ["Q0"] and srv.count == 5


def test_failure_mid_batch_keeps_finished_replies(tmp_path):
    fail = {"q2"}
    with FakeOpenAI(replies=upper, faults=lambda n, b: 500 if b["messages"][0]["content"] in fail else None) as srv:
        llm = make_llm(cfg_for(srv, max_retries=1, max_concurrency=1), cache_dir=tmp_path)
        with pytest.raises(LLMError):
            llm.chat(convs(5))
        paid_before = srv.served
        fail.clear()
        assert llm.chat(convs(5)) == [f"Q{i}" for i in range(5)]
        assert paid_before >= 2                         # q0, q1 (maybe q3, already in flight) were paid...
        sent = sorted(b["messages"][0]["content"] for b in srv.served_bodies)
        assert sent == [f"q{i}" for i in range(5)]     # ...and none of them is paid again


def test_killed_run_never_pays_twice(tmp_path):
    """A client process is killed while a request hangs; the rerun sends only the unfinished requests."""
    with FakeOpenAI(replies=upper, faults=lambda n, b: "hang" if b["messages"][0]["content"] == "q3" else None,
                    lifetime_s=30) as srv:
        script = textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from crowdselect_lib.config import LLMConfig
            from crowdselect_lib.llm import make_llm
            cfg = LLMConfig(backend="openai", model="fake-model", base_url={srv.base_url!r},
                            api_key_env={KEY_ENV!r}, max_concurrency=1, timeout_s=60)
            make_llm(cfg, cache_dir={str(tmp_path)!r}).chat([[{{"role": "user", "content": f"q{{i}}"}}]
                                                             for i in range(6)])
        """)
        proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, KEY_ENV: "k"})
        try:
            deadline = time.time() + 20
            while srv.count < 4 and time.time() < deadline:   # q0..q2 answered, q3 hanging
                time.sleep(0.05)
            assert srv.count == 4 and srv.served == 3
        finally:
            proc.kill()
            proc.wait(10)
        lines = (tmp_path / "replies.jsonl").read_text().splitlines()
        assert [json.loads(x)["reply"] for x in lines] == ["Q0", "Q1", "Q2"]
        srv.faults = []
        llm = make_llm(cfg_for(srv), cache_dir=tmp_path)
        assert llm.chat(convs(6)) == [f"Q{i}" for i in range(6)]
        sent = [b["messages"][0]["content"] for b in srv.served_bodies]
        assert sorted(sent) == [f"q{i}" for i in range(6)]   # each paid exactly once


def test_truncated_cache_line_is_counted_and_resent(tmp_path):
    with FakeOpenAI(replies=upper) as srv:
        llm = make_llm(cfg_for(srv), cache_dir=tmp_path)
        llm.chat(convs(2))
        with open(tmp_path / "replies.jsonl", "a") as fh:
            fh.write('{"key": "abc", "rep')              # a kill in the middle of a write
        again = make_llm(cfg_for(srv), cache_dir=tmp_path)
        assert again.cache.stats["torn_lines"] == 1 and len(again.cache) == 2
        assert again.chat(convs(3)) == ["Q0", "Q1", "Q2"] and srv.count == 3
        third = make_llm(cfg_for(srv), cache_dir=tmp_path)          # the reply after the torn line survived
        assert len(third.cache) == 3 and third.chat(convs(3)) == ["Q0", "Q1", "Q2"] and srv.count == 3


def test_replay_only_mode(tmp_path):
    with FakeOpenAI(replies=upper) as srv:
        make_llm(cfg_for(srv), cache_dir=tmp_path).chat(convs(2))
    replay = make_llm(LLMConfig(backend="replay", model="fake-model", base_url=srv.base_url), cache_dir=tmp_path)
    assert replay.chat(convs(2)) == ["Q0", "Q1"]
    assert replay.info()["backend"] == "replay"
    with pytest.raises(CacheMiss, match=r"1 of 3 requests are not in .*replies.jsonl; first missing: .*'q2'"):
        replay.chat(convs(3))
    with pytest.raises(LLMError, match="needs a cache folder"):
        make_llm(LLMConfig(backend="replay"))


def test_bad_conversations_are_rejected(tmp_path):
    llm = make_llm(LLMConfig(backend="replay", model="m", base_url="http://x/v1"), cache_dir=tmp_path)
    with pytest.raises(LLMError, match="conversation 1 message 0"):
        llm.chat([[{"role": "user", "content": "a"}], [{"role": "robot", "content": "b"}]])
    with pytest.raises(LLMError, match="conversation 0 must be a non-empty list"):
        llm.chat([[]])


def test_estimate_cost_counts_uncached_requests():
    cache = ReplyCache(None)
    s = GenerationSettings(max_new_tokens=10)
    batch = [[{"role": "user", "content": "x" * 40}], [{"role": "user", "content": "y" * 80}],
             [{"role": "user", "content": "x" * 40}]]
    e = Endpoint("openai", "m", "http://x/v1")
    cache.put(request_key(e, batch[0], s), e, batch[0], s, 0, "r")
    est = estimate_cost(batch, s, cached_keys=cache, endpoint=e, usd_per_m_prompt=1.0, usd_per_m_completion=2.0)
    assert est == {"requests": 3, "unique": 2, "cached": 1, "to_send": 1, "prompt_tokens_approx": 20,
                   "max_completion_tokens": 10, "usd_max_approx": (20 * 1.0 + 10 * 2.0) / 1e6}


def test_local_backend_generates_and_caches(tmp_path):
    llm = make_llm(LLMConfig(backend="local", model="tiny-llama", local_batch_size=2), cache_dir=tmp_path)
    s = GenerationSettings(max_new_tokens=4)
    out = llm.chat(convs(3), s)
    assert len(out) == 3 and all(isinstance(x, str) for x in out)
    info = llm.info()
    assert info["generate_calls"] == 2 and info["cache"]["writes"] == 3
    assert llm.chat(convs(3), s) == out and llm.info()["generate_calls"] == 2
    meta = llm.complete(convs(1), s)[0].meta
    assert meta["finish_reason"] in ("stop", "length") and 1 <= meta["usage"]["completion_tokens"] <= 4


def test_redact_masks_keys_url_credentials_and_bearer_tokens():
    from crowdselect_lib.llm.redact import redact, redact_obj

    text = "GET https://u:pw-123@h/v1?api_key=abc123&x=1 with Bearer tok-123456 and sk-my-secret-9 (sk-my-secret-9)"
    assert redact(text, ("sk-my-secret-9", "abc")) == \
        "GET https://u:***@h/v1?api_key=***&x=1 with Bearer *** and *** (***)"     # "abc": too short to mask
    assert redact_obj({"a": ["key=sk-my-secret-9", 3], "n": None}, ("sk-my-secret-9",)) == \
        {"a": ["key=***", 3], "n": None}
    reply = "curl -H 'Authorization: Bearer YOUR_API_KEY' https://h/v1?token=YOUR_TOKEN"     # data, not a leak
    assert redact(reply, ("sk-my-secret-9",), generic=False) == reply
