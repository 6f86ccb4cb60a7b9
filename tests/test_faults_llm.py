"""Fault suite, LLM and network (issue 14): a fake OpenAI-compatible server returning 500 / 429 / timeouts /
garbage, a day-long Retry-After, bad client params, and processes killed at random points of LLM calls and of
judging, with the server's request counts checked before and after."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import crowdselect_lib as cs
from crowdselect_lib.config import LLMConfig
from crowdselect_lib.llm import LLMError, make_llm
from fake_openai import KEY_ENV, FakeOpenAI, judge_config, judge_reply, student_reply

pytestmark = pytest.mark.faults
TESTS = str(Path(__file__).parent)


def convs(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


def cfg_for(srv, **kw) -> LLMConfig:
    base = dict(backend="openai", model="fake-model", base_url=srv.base_url, api_key_env=KEY_ENV, max_retries=3,
                backoff_s=0.001, backoff_max_s=0.05, timeout_s=1.0, max_concurrency=2)
    return LLMConfig(**{**base, **kw})


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")


@pytest.mark.parametrize("fault", [500, 502, 503, 429, "timeout", "malformed", "drop"])
def test_each_server_fault_is_retried_and_paid_once(tmp_path, fault):
    with FakeOpenAI(replies="fine", faults=[fault], slow_s=2.0) as srv:
        llm = make_llm(cfg_for(srv, timeout_s=0.5), cache_dir=tmp_path)
        assert llm.chat(convs(1)) == ["fine"]
        assert (srv.count, srv.served, llm.info()["retries"]) == (2, 1, 1)


def test_a_server_that_keeps_failing_is_a_clear_error_after_bounded_retries(tmp_path):
    with FakeOpenAI(faults=lambda n, b: 503) as srv:
        with pytest.raises(LLMError, match=r"failed after 4 attempt\(s\); last error: HTTP 503"):
            make_llm(cfg_for(srv), cache_dir=tmp_path).chat(convs(1))
        assert srv.count == 4


def test_retry_after_of_a_day_is_capped_by_backoff_max_s_and_said_so(tmp_path, caplog):
    with FakeOpenAI(replies="ok", faults=[429], retry_after="86400") as srv:
        llm = make_llm(cfg_for(srv), cache_dir=tmp_path)
        t0 = time.perf_counter()
        with caplog.at_level(logging.WARNING, "crowdselect"):
            assert llm.chat(convs(1)) == ["ok"]
        assert time.perf_counter() - t0 < 5
        assert llm.info()["retry_after_capped"] == 1
        assert any("asked to wait 86400 s (Retry-After); waiting llm.backoff_max_s = 0 s" in r.message
                   for r in caplog.records)


@pytest.mark.parametrize("key, value", [("llm.max_concurrency", 0), ("llm.max_retries", -1), ("llm.timeout_s", 0),
                                        ("llm.backoff_max_s", 0.0), ("llm.top_p", 1.5),
                                        ("judge.judge_max_concurrency", 0), ("judge.repetitions", 0),
                                        ("judge.batch_size", 0), ("judge.arena_hard_max_new_tokens", 0)])
def test_bad_client_params_are_rejected_at_load_time_naming_the_key(key, value):
    with pytest.raises(cs.ConfigError, match=rf"^{key.replace('.', '[.]')}: "):
        cs.load_config(cs.runs.repo_root() / "params" / "demo.yaml", {key: value})


def test_extra_body_may_not_replace_the_request():
    with pytest.raises(cs.ConfigError, match=r"judge.judge_extra_body: may not set \['messages'\]"):
        cs.load_config(None, {"judge.judge_extra_body": {"messages": []}})


def _kill_when(proc, srv, served: int, deadline_s: float = 60) -> None:
    deadline = time.time() + deadline_s
    while srv.served < served and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.kill()
    proc.wait(10)
    time.sleep(0.3)          # the server finishes (and bills) what the dead client had in flight


CLIENT = """
import sys
sys.path.insert(0, {tests!r})
from crowdselect_lib.config import LLMConfig
from crowdselect_lib.llm import make_llm
cfg = LLMConfig(backend="openai", model="fake-model", base_url={url!r}, api_key_env={env!r}, max_concurrency=2,
                timeout_s=60)
make_llm(cfg, cache_dir={cache!r}).chat([[{{"role": "user", "content": f"q{{i}}"}}] for i in range({n})])
"""


def test_a_kill_counts_and_reports_the_requests_in_flight(tmp_path, caplog):
    hang = {"q2", "q3"}
    with FakeOpenAI(replies=lambda b: b["messages"][0]["content"].upper(),
                    faults=lambda n, b: "hang" if b["messages"][0]["content"] in hang else None) as srv:
        script = CLIENT.format(tests=TESTS, url=srv.base_url, env=KEY_ENV, cache=str(tmp_path), n=6)
        proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, KEY_ENV: "k"})
        deadline = time.time() + 60
        while srv.count < 4 and time.time() < deadline:          # q0, q1 answered; q2, q3 hanging (2 in flight)
            time.sleep(0.02)
        _kill_when(proc, srv, 2)
        assert (srv.count, srv.served) == (4, 2)
        hang.clear()
        with caplog.at_level(logging.WARNING, "crowdselect"):
            llm = make_llm(cfg_for(srv, timeout_s=5), cache_dir=tmp_path)
            assert len(llm.cache.lost_in_flight) == 2
            assert llm.chat(convs(6)) == [f"Q{i}" for i in range(6)]
        assert llm.info()["cache"]["resent"] == 2 and srv.count == 8
        assert any("2 request(s) were in flight when an earlier run stopped" in r.message for r in caplog.records)
        assert sorted(b["messages"][0]["content"] for b in srv.served_bodies) == [f"q{i}" for i in range(6)]


@pytest.mark.parametrize("kill_after", [1, 4, 7])
def test_kills_at_random_points_never_repay_a_finished_request(tmp_path, kill_after):
    with FakeOpenAI(replies=lambda b: b["messages"][0]["content"].upper(), delay_s=0.05) as srv:
        script = CLIENT.format(tests=TESTS, url=srv.base_url, env=KEY_ENV, cache=str(tmp_path), n=10)
        proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, KEY_ENV: "k"})
        _kill_when(proc, srv, kill_after)
        before = srv.served
        llm = make_llm(cfg_for(srv, timeout_s=5), cache_dir=tmp_path)
        keys = llm.keys(convs(10), cs.llm.GenerationSettings())
        cached = {f"q{i}" for i, k in enumerate(keys) if k in llm.cache}
        lost = len(llm.cache.lost_in_flight)
        assert llm.chat(convs(10)) == [f"Q{i}" for i in range(10)]
        again = [b["messages"][0]["content"] for b in srv.served_bodies[before:]]
        assert len(again) == 10 - len(cached) and cached.isdisjoint(again)   # a cached reply is never re-paid
        assert llm.info()["cache"]["resent"] == lost <= 2                     # at most max_concurrency in flight


JUDGE = """
import sys
sys.path.insert(0, {tests!r})
import pandas as pd
import crowdselect_lib as cs
from crowdselect_lib import training
from fake_openai import judge_config
training.trained_systems = lambda run, cfg: pd.DataFrame(columns=["system", "subset", "student", "method", "seed",
                                                                  "key", "path"])
cfg = judge_config({root!r}, {data!r}, {students!r}, {judge!r}, trained=False,
                   **{{"judge.judge_max_concurrency": 2, "judge.n_questions": 4}})
cs.judge.run_judging(cs.Run.from_config(cfg), cfg)
"""


def test_a_kill_during_judging_resumes_and_pays_only_the_requests_in_flight(tmp_path, shared_data, monkeypatch):
    with FakeOpenAI(replies=student_reply) as students, FakeOpenAI(replies=judge_reply, delay_s=0.1) as judge_srv:
        script = JUDGE.format(tests=TESTS, root=str(tmp_path), data=str(shared_data), students=students.base_url,
                              judge=judge_srv.base_url)
        proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, KEY_ENV: "k"})
        _kill_when(proc, judge_srv, 5, deadline_s=240)
        paid_before, student_before = judge_srv.served, students.served
        assert 5 <= paid_before < 4 * 2 + 4 * 2                       # killed mid-way through the 16 judgments
        cfg = judge_config(tmp_path, shared_data, students.base_url, judge_srv.base_url, monkeypatch=monkeypatch,
                           trained=False, **{"judge.judge_max_concurrency": 2, "judge.n_questions": 4})
        scores = cs.judge.run_judging(cs.Run.from_config(cfg), cfg)
        resent = cs.judge.make_judge(cs.Run.from_config(cfg), cfg).cache.stats["resent"]   # a fresh client: 0
        assert resent == 0 and students.served == student_before         # answers were all finished before
        assert judge_srv.served - paid_before <= 16 - paid_before + 2    # at most the 2 in flight paid twice
        assert set(scores["benchmark"]) == {"mt_bench", "arena_hard"} and (scores["n_valid"] > 0).all()


# ---------------------------------------------------------------------- issue 25: hostile servers, leaks, sharing

@pytest.mark.parametrize("fault, timeout_s, retries, stage", [
    ("trickle", 1.0, 2, "reading the body"),                       # one byte every 0.5 s, for ever
    ("slow_headers", 0.5, 1, "connecting or waiting for headers"),
    ("endless", 0.5, 1, "reading the body")])                      # a chunked body that never ends
def test_a_server_that_never_finishes_fails_within_the_deadline(tmp_path, fault, timeout_s, retries, stage):
    with FakeOpenAI(faults=lambda n, b: fault, trickle_s=0.5 if fault == "trickle" else 0.1) as srv:
        llm = make_llm(cfg_for(srv, timeout_s=timeout_s, max_retries=retries), cache_dir=tmp_path)
        t0 = time.perf_counter()
        with pytest.raises(LLMError, match=rf"failed after {retries + 1} attempt\(s\); last error: no complete "
                                           rf"reply within llm.timeout_s = {timeout_s:g} s .*while {stage}"):
            llm.chat(convs(1))
        took = time.perf_counter() - t0
        assert took < (retries + 1) * timeout_s + 3 and srv.count == retries + 1
        assert llm.info()["deadline_exceeded"] == retries + 1


def test_a_gzip_bomb_is_refused_once_and_nothing_large_is_cached(tmp_path):
    with FakeOpenAI(replies=lambda b: b["messages"][0]["content"].upper(),
                    faults=lambda n, b: "gzip_bomb" if b["messages"][0]["content"] == "q1" else None) as srv:
        llm = make_llm(cfg_for(srv, max_concurrency=1, timeout_s=20.0), cache_dir=tmp_path)   # 50 MB inflate: slow
        out = llm.complete(convs(3), skip_rejected=True)                                  # on a loaded box
        assert [r.text for r in out] == ["Q0", None, "Q2"] and srv.count == 3          # not retried
        assert "reply body over llm.max_reply_bytes = 16777216 bytes (decompressed" in out[1].error
        assert (tmp_path / "replies.jsonl").stat().st_size < 5000
        with pytest.raises(LLMError, match=r"1 of 3 request\(s\) got no usable reply .*max_reply_bytes"):
            make_llm(cfg_for(srv), cache_dir=tmp_path).chat(convs(3))
        assert srv.count == 3                                    # the refusal is cached: never paid again


@pytest.mark.parametrize("fault, words", [
    ("null_content", "content filter: choices[0].message.content is null (finish_reason 'content_filter')"),
    ("list_content", "choices[0].message.content is a list (e.g. a list of parts), not a string"),
    ("no_choices", "the reply has no choices[0]")])
def test_an_unusable_reply_is_a_counted_skip_paid_once(tmp_path, fault, words):
    with FakeOpenAI(replies=lambda b: b["messages"][0]["content"].upper(),
                    faults=lambda n, b: fault if b["messages"][0]["content"] == "q1" else None) as srv:
        llm = make_llm(cfg_for(srv), cache_dir=tmp_path)
        out = llm.complete(convs(3), skip_rejected=True)
        assert [r.text for r in out] == ["Q0", None, "Q2"] and words in out[1].error
        info = llm.info()
        assert (srv.count, info["unusable"], info["retries"], info["cache"]["unusable"]) == (3, 1, 0, 1)
        assert info["completion_tokens"] == (2 if fault == "no_choices" else 3)   # a skipped reply's usage counts
        again = make_llm(cfg_for(srv), cache_dir=tmp_path).complete(convs(3), skip_rejected=True)
        assert [r.error for r in again] == [r.error for r in out] and srv.count == 3


def test_a_content_filter_reply_is_a_counted_baseline_failure_not_asked_again(tmp_path):
    from crowdselect_lib.baselines.asking import ask_with_retries, llm_report

    def parse(text):
        return int(text[-1])

    with FakeOpenAI(replies="Score: 4", faults=lambda n, b: "null_content" if b["messages"][0]["content"] == "q1"
                    else None) as srv:
        llm = make_llm(cfg_for(srv), cache_dir=tmp_path)
        asked = ask_with_retries(llm, convs(3), parse, cs.llm.GenerationSettings(), max_retries=2)
        assert asked["value"].tolist()[0::2] == [4, 4] and asked["value"].isna().tolist() == [False, True, False]
        assert asked["error"][1].startswith("no usable reply: ") and "content filter" in asked["error"][1]
        assert asked["attempts"].tolist() == [1, 1, 1] and srv.count == 3
        assert llm_report("direct", asked)["failed"] == 1


def test_a_malformed_usage_is_counted_and_the_paid_reply_cached(tmp_path):
    with FakeOpenAI(replies="ok", faults=["bad_usage"]) as srv:
        llm = make_llm(cfg_for(srv), cache_dir=tmp_path)
        assert llm.chat(convs(1)) == ["ok"]
        assert (llm.info()["usage_malformed"], llm.info()["prompt_tokens"]) == (1, 0)
        assert make_llm(cfg_for(srv), cache_dir=tmp_path).chat(convs(1)) == ["ok"] and srv.count == 1


def test_the_api_key_reaches_no_file_log_or_error(tmp_path, monkeypatch, caplog):
    key = "sk-live-0123456789abcdef"
    monkeypatch.setenv(KEY_ENV, key)
    faults = {"q0": "echo_auth", "q1": "echo_auth_400"}
    with FakeOpenAI(replies="ok", retry_after="86400",      # q2: a 429 first, then a reply; q1: a 400 each time
                    faults=lambda n, b: 429 if n == 2 else faults.get(b["messages"][0]["content"])) as srv:
        url = srv.base_url.replace("/v1", f"/{key}/v1")                   # a key in the URL too
        llm = make_llm(cfg_for(srv, base_url=url), cache_dir=tmp_path)
        with caplog.at_level(logging.WARNING, "crowdselect"):
            out = llm.complete(convs(3), skip_rejected=True)
            with pytest.raises(LLMError) as err:
                llm.chat(convs(2))
            logging.getLogger("crowdselect").warning("another module quotes %s", str(out[0].meta) + key)
        assert srv.requests[0]["headers"]["Authorization"] == f"Bearer {key}"   # it was sent...
        assert out[0].text == "you sent Authorization: Bearer ***" and "Bearer ***" in out[1].error
        texts = {"exception": str(err.value), "log": caplog.text, "info": repr(llm.info()),
                 **{p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()}}
        assert {"replies.jsonl", "pending.jsonl"} <= set(texts) and "asked to wait 86400 s" in caplog.text
        assert "another module quotes" in caplog.text
        assert [name for name, text in texts.items() if key in text] == []        # ...and written nowhere


WORKER = """
import sys
sys.path.insert(0, {tests!r})
from crowdselect_lib.config import LLMConfig
from crowdselect_lib.llm import make_llm
cfg = LLMConfig(backend="openai", model="fake-model", base_url={url!r}, api_key_env={env!r}, max_concurrency=2,
                timeout_s=20)
llm = make_llm(cfg, cache_dir={cache!r})
out = llm.chat([[{{"role": "user", "content": f"q{{i}}"}}] for i in range(10)])
assert out == [f"Q{{i}}" for i in range(10)], out
assert llm.info()["cache"]["resent"] == 0      # the other process's requests in flight are not "lost"
"""


def test_two_processes_sharing_a_cache_pay_each_request_once(tmp_path):
    with FakeOpenAI(replies=lambda b: b["messages"][0]["content"].upper(), delay_s=0.1) as srv:
        script = WORKER.format(tests=TESTS, url=srv.base_url, env=KEY_ENV, cache=str(tmp_path))
        procs = [subprocess.Popen([sys.executable, "-c", script], env={**os.environ, KEY_ENV: "k"}) for _ in range(2)]
        assert [p.wait(60) for p in procs] == [0, 0]
        assert (srv.count, srv.served) == (10, 10)
        assert sorted(b["messages"][0]["content"] for b in srv.served_bodies) == sorted(f"q{i}" for i in range(10))
