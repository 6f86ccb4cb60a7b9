"""`make preflight` offline: local model folders, the fake OpenAI server (passing and failing judges), the GPU rule,
and the plan's arithmetic on a hand-computed case."""
from __future__ import annotations

import socket

import httpx
import pytest

from crowdselect_lib.config import load_config
from crowdselect_lib.models import tiny_llama_path
from crowdselect_lib.preflight import (Check, MemoryNeed, ModelRef, check_chat, check_gpus, check_hub, check_load,
                                       check_served_models, endpoint_config, memory_needs, plan, plan_lines,
                                       run_preflight, train_steps)
from crowdselect_lib.preflight import main as preflight_main
from fake_openai import FakeOpenAI

KEY_ENV = "CROWDSELECT_PREFLIGHT_KEY"
GIB = 1024 ** 3


@pytest.fixture(autouse=True)
def env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)


def hand_config(**extra):
    """The hand-computed case of `test_plan_arithmetic` (every number the plan reads is set here)."""
    overrides = {
        "zoo": {"source": "demo", "n_instructions": 1000, "limit": None},
        "scoring": {"reward_models": ["tiny-reward"], "verify_sample": 40, "score_all": False},
        "embedding": {"model": "all-MiniLM-L6-v2"},
        "selection": {"k": 100, "subsets": [{"name": "a", "metric": "difficulty"},
                                            {"name": "b", "metric": "crowdselect", "clustered": True}]},
        "baselines": {"methods": ["random", "direct_score", "selectllm"], "llm_subset": None,
                      "selectllm_subset": None, "selectllm_clusters": 10, "confirm_cost": True},
        "llm": {"backend": "openai", "model": "judge-x", "base_url": "http://judge.invalid/v1", "max_new_tokens": 256,
                "api_key_env": KEY_ENV},
        "training": {"student": "s1", "students": None, "methods": ["sft_full"], "subsets": None, "seeds": [1, 2],
                     "epochs": 3.0, "per_device_batch_size": 1, "gradient_accumulation_steps": 2, "max_steps": -1,
                     "preference_max_steps": None, "eval_fraction": 0.05, "demo_examples": None},
        "judge": {"judge": "llm", "judge_model": "judge-x", "judge_base_url": "http://judge.invalid/v1",
                  "judge_api_key_env": KEY_ENV, "n_questions": 10, "mt_bench_max_new_tokens": 100,
                  "arena_hard_max_new_tokens": 200, "repetitions": 2, "anchor": "s1", "systems": None,
                  "benchmarks": ["mt_bench", "arena_hard"], "price_per_mtok_in": 1.0, "price_per_mtok_out": 2.0,
                  "student_backend": "local", "confirm_cost": True},
        "tables": {"grid": []},
    }
    overrides.update(extra)
    return load_config(None, overrides)


# ------------------------------------------------------------------ models

def test_local_model_folder_loads_with_its_exact_parameter_count():
    path = str(tiny_llama_path())
    hub = check_hub(ModelRef("student", path))
    assert hub.status == "OK" and hub.what == f"local {path}"
    load, n = check_load(ModelRef("student", path))
    assert load.status == "OK", load.line()
    # 2 layers, hidden 64, 4 heads of 16, 2 kv heads (kv dim 32), MLP 128, tied embeddings:
    # per layer q 64*64 + k 64*32 + v 64*32 + o 64*64 + MLP 3*64*128 + 2 norms * 64 = 36,992
    from transformers import AutoConfig
    vocab = AutoConfig.from_pretrained(path).vocab_size
    assert n == vocab * 64 + 2 * 36_992 + 64


def test_missing_local_folder_fails_with_its_path(tmp_path):
    gone = tmp_path / "no-such-model"
    c = check_hub(ModelRef("student", str(gone)))
    assert c.failed and str(gone) in c.detail and "does not exist" in c.detail


def test_hub_models_are_skipped_offline_with_a_clear_line():
    hub = check_hub(ModelRef("student", "meta-llama/Llama-3.2-3B"))
    assert hub.status == "SKIP" and "HF_HUB_OFFLINE=1" in hub.detail
    load, n = check_load(ModelRef("student", "example-org/surely-not-cached-model"))
    assert load.status == "SKIP" and n is None and "not in the local cache" in load.detail


def test_gated_repo_names_the_token_and_the_revision_is_asked_for(monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    monkeypatch.delenv("HF_HUB_OFFLINE")
    asked = []

    class GatedApi:
        def model_info(self, repo, revision=None, token=None):
            asked.append((repo, revision, token))
            raise GatedRepoError("403 gated", response=httpx.Response(403, request=httpx.Request("GET", "https://hf")))

    c = check_hub(ModelRef("student", "meta-llama/Llama-3.2-3B", revision="abc123"), api=GatedApi())
    assert asked == [("meta-llama/Llama-3.2-3B", "abc123", False)]   # no saved token: HF_TOKEN only
    assert c.failed and "huggingface.co/meta-llama/Llama-3.2-3B" in c.detail and "HF_TOKEN is not set" in c.detail


# ------------------------------------------------------------------ endpoints

def judge_cfg(srv, model="judge-m", **judge):
    return hand_config(judge={**hand_config().judge.__dict__, "judge_model": model, "judge_base_url": srv.base_url,
                              **judge})


def test_judge_that_answers_and_serves_the_model_asked_for_passes():
    with FakeOpenAI(replies="ok", model="judge-m") as srv:
        cfg = judge_cfg(srv, judge_extra_body={"thinking": {"type": "disabled"}})
        c = check_chat("judge endpoint", endpoint_config(cfg, "judge"))
        assert c.status == "OK" and "served model 'judge-m'" in c.detail and "fp_fake_1" in c.detail
        body = srv.requests[0]["body"]
        assert srv.count == 1 and body["model"] == "judge-m" and body["max_tokens"] == 16
        assert body["thinking"] == {"type": "disabled"}       # the provider fields travel with the request


def test_judge_serving_another_model_fails():
    with FakeOpenAI(replies="ok", model="deepseek-v4") as srv:
        c = check_chat("judge endpoint", endpoint_config(judge_cfg(srv, model="deepseek-chat"), "judge"))
    assert c.failed and "served 'deepseek-v4' for model 'deepseek-chat'" in c.detail


def test_judge_500_fails_after_one_request():
    with FakeOpenAI(faults=lambda n, body: 500) as srv:
        c = check_chat("judge endpoint", endpoint_config(judge_cfg(srv), "judge"))
        assert srv.count == 1
    assert c.failed and "HTTP 500" in c.detail


def test_unreachable_judge_and_missing_key_fail(monkeypatch):
    with socket.socket() as s:       # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = hand_config(judge={**hand_config().judge.__dict__, "judge_base_url": f"http://127.0.0.1:{port}/v1"})
    c = check_chat("judge endpoint", endpoint_config(cfg, "judge"))
    assert c.failed and "connection error" in c.detail
    monkeypatch.delenv(KEY_ENV)
    c = check_chat("judge endpoint", endpoint_config(cfg, "judge"))
    assert c.failed and KEY_ENV in c.detail


def test_student_server_must_list_the_models():
    with FakeOpenAI(model="meta-llama/Llama-3.2-3B") as srv:
        ok = check_served_models("student server", srv.base_url, ["meta-llama/Llama-3.2-3B"], KEY_ENV)
        bad = check_served_models("student server", srv.base_url, ["Qwen/Qwen2.5-3B"], KEY_ENV)
    assert ok.status == "OK"
    assert bad.failed and "does not serve ['Qwen/Qwen2.5-3B']" in bad.detail and "Llama-3.2-3B" in bad.detail


# ------------------------------------------------------------------ GPUs

def test_memory_rule_and_gpu_check():
    cfg = hand_config(training={**hand_config().training.__dict__, "methods": ["sft_full", "sft_lora", "dpo"]})
    needs = {n.what: n for n in memory_needs(cfg, {"s1": 3 * 10 ** 9})}
    assert needs["train sft_full s1"].gib == pytest.approx(16 * 3e9 / GIB) and needs["train sft_full s1"].shardable
    assert needs["train dpo s1"].gib == pytest.approx(18 * 3e9 / GIB)
    assert needs["train sft_lora s1"].gib == pytest.approx(2 * 3e9 / GIB) and not needs["train sft_lora s1"].shardable
    assert needs["generate s1"].gib == pytest.approx(2 * 3e9 / GIB)

    two = [MemoryNeed("train", 48.0, True), MemoryNeed("generate", 6.0, False)]
    one_big = check_gpus(two, [("H100", 80.0)])
    assert [c.status for c in one_big] == ["OK", "OK", "OK"]
    assert "~60 GiB per GPU" in one_big[1].detail            # 48 x 1.2 + 2 = 59.6
    assert [c.status for c in check_gpus(two, [("A100", 40.0)])] == ["OK", "FAIL", "OK"]
    sharded = check_gpus(two, [("A100", 40.0)] * 2)
    assert [c.status for c in sharded] == ["OK", "OK", "OK"] and "~31 GiB per GPU sharded over 2" in sharded[1].detail
    none = check_gpus(two, [])
    assert len(none) == 1 and none[0].failed and "no CUDA GPU" in none[0].detail
    assert check_gpus([MemoryNeed("generate", 1.0, False)], [])[0].status == "OK"
    assert [c.status for c in check_gpus([], [], ["org/big"])] == ["WARN", "WARN"]


# ------------------------------------------------------------------ the plan

def test_plan_arithmetic():
    p = plan({"c": hand_config()})
    # 5 subsets (a, b + 3 baselines) x 1 student x 1 method x 2 seeds; 95 = 100 - 5 held out; 3 x ceil(95 / 2) = 144
    train = p.row("train sft_full")
    assert (train.count, train.steps) == (10, 1440)
    assert p.row("reward scoring").count == 40 and p.row("embedding").count == 1000
    ds = p.row("LLM baseline direct_score")   # 1000 x (150 + 150 + 450) prompt, 1000 x 100 reply
    assert (ds.llm_calls, ds.prompt_tokens, ds.completion_tokens) == (1000, 750_000, 100_000)
    assert ds.usd == pytest.approx(0.95)
    sel = p.row("LLM baseline selectllm")     # min(1000 // 10, k=100) queries of 150 + 10 x 150
    assert (sel.llm_calls, sel.prompt_tokens, sel.completion_tokens) == (100, 165_000, 3_000)
    # 11 systems (10 trained + the base s1, also the anchor) x 2 judge repetitions
    mt = p.row("judge mt_bench")              # 20 turns; 10 x (2 x 400 + 3 x 100) prompt per repetition
    assert (mt.llm_calls, mt.prompt_tokens, mt.completion_tokens) == (440, 242_000, 132_000)
    assert mt.usd == pytest.approx(0.506)
    ah = p.row("judge arena_hard")            # 20 games of 1200 + 200 prompt
    assert (ah.llm_calls, ah.prompt_tokens, ah.completion_tokens) == (440, 616_000, 352_000)
    assert ah.usd == pytest.approx(1.32)
    ans = p.row("answer mt_bench")
    assert (ans.count, ans.systems, ans.completion_tokens) == (220, 11, 22_000)
    assert p.row("answer arena_hard").count == 110
    assert p.llm_calls == 1980 and p.usd == pytest.approx(2.947) and p.unpriced_calls == 0
    assert p.row("LLM baseline direct_score").detail == "openai judge-x"
    assert "~$2.95" in plan_lines(p)[-1]


def test_plan_counts_shared_steps_once_and_world_size_changes_steps():
    grid = [{"name": "one", "overrides": {}}, {"name": "two", "overrides": {"training.student": "s2"}}]
    cfg = hand_config(tables={"grid": grid})
    from crowdselect_lib.preflight import cells

    p = plan(cells(cfg))
    assert p.row("LLM baseline direct_score").llm_calls == 1000    # same zoo, same LLM: paid once
    assert p.row("train sft_full").count == 20 and p.row("judge mt_bench").llm_calls == 22 * 40
    assert train_steps(cfg, "sft_full", world_size=8) == 3 * 6       # ceil(95 / 8) = 12 batches, 6 steps
    unpriced = hand_config(judge={**hand_config().judge.__dict__, "price_per_mtok_in": None})
    assert plan({"c": unpriced}).unpriced_calls == 1980


# ------------------------------------------------------------------ run_preflight and the command line

def test_run_preflight_passes_with_local_models_and_a_good_judge_and_fails_on_a_bad_one():
    student = str(tiny_llama_path())
    with FakeOpenAI(replies="ok", model="judge-x") as srv:
        base = hand_config()
        cfg = hand_config(
            training={**base.training.__dict__, "student": student},
            judge={**base.judge.__dict__, "anchor": student, "judge_base_url": srv.base_url},
            llm={**base.llm.__dict__, "base_url": srv.base_url},
            baselines={**base.baselines.__dict__, "methods": ["random", "direct_score"]})
        lines = []
        assert run_preflight(cfg, gpus=[], log=lines.append) == 0
        assert any(line.startswith(f"OK   load {student}") for line in lines)
        assert sum(line.startswith("OK   judge endpoint judge-x") for line in lines) == 1
        assert lines[-1] == "preflight: 0 problem(s); ready" and any(line.startswith("PLAN") for line in lines)
    bad = hand_config(training={**base.training.__dict__, "student": student},
                      judge={**base.judge.__dict__, "anchor": student, "judge_base_url": srv.base_url},
                      baselines={**base.baselines.__dict__, "methods": ["random"]})
    lines = []
    assert run_preflight(bad, gpus=[], log=lines.append) == 1     # the server is gone
    fails = [line for line in lines if line.startswith("FAIL")]
    assert len(fails) == 1 and fails[0].startswith("FAIL judge endpoint judge-x: request to")
    assert lines[-1].startswith("preflight: 1 problem(s)")


def test_cli_reports_a_bad_params_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("judge: {no_such_key: 1}\n")
    assert preflight_main(["--params", str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL params {bad}: unknown key judge.no_such_key")
    from crowdselect_lib.__main__ import main as cs_main

    assert cs_main([]) == 2 and "preflight" in capsys.readouterr().err


def test_check_line_format():
    assert Check("FAIL", "hub x", "gated").line() == "FAIL hub x: gated"
