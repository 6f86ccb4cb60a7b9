"""Student answers (paper §4.1): the systems judged, MT-Bench's second turn after the student's own first answer,
FastChat's category temperatures, Arena-Hard greedy with its own token budget, answers keyed by the model and
the generation settings, refused prompts counted, token-limit hits recorded, the chat-template check, and the
vLLM serving plan. Students are a fake OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py)."""
from __future__ import annotations

import json
import shutil

import pytest

import crowdselect_lib as cs
from crowdselect_lib.judge import answers as A
from fake_openai import TRAINED, FakeOpenAI, judge_config, student_reply


def _run(cfg):
    return cs.Run.from_config(cfg)


def test_systems_are_base_students_trained_systems_and_the_anchor(tmp_path, shared_data, monkeypatch):
    cfg = judge_config(tmp_path, shared_data, "http://unused/v1", monkeypatch=monkeypatch,
                       **{"judge.anchor": "meta-llama/Llama-3.2-3B"})
    table = A.systems_table(_run(cfg), cfg)
    assert table["system"].tolist() == ["base-smollm2-135m-instruct", TRAINED["system"], "base-Llama-3.2-3B"]
    assert table["kind"].tolist() == ["base", "trained", "anchor"]
    cfg2 = judge_config(tmp_path, shared_data, "http://unused/v1", monkeypatch=monkeypatch,
                        **{"judge.systems": ["base-smollm2-135m-instruct"]})
    assert A.systems_table(_run(cfg2), cfg2)["system"].tolist() == ["base-smollm2-135m-instruct"]  # anchor = base
    bad = judge_config(tmp_path, shared_data, "http://unused/v1", monkeypatch=monkeypatch, **{"judge.systems": ["x"]})
    with pytest.raises(A.StudentError, match=r"unknown system\(s\) \['x'\]"):
        A.systems_table(_run(bad), bad)


def test_mt_bench_two_turns_temperatures_and_token_budgets(tmp_path, shared_data, monkeypatch):
    with FakeOpenAI(replies=student_reply, model="served-student") as srv:
        cfg = judge_config(tmp_path, shared_data, srv.base_url, monkeypatch=monkeypatch,
                           **{"judge.n_questions": 8, "judge.mt_bench_max_new_tokens": 33,
                              "judge.arena_hard_max_new_tokens": 44})
        run = _run(cfg)
        mt = A.run_answers(run, cfg, TRAINED["system"], "mt_bench")
        assert len(mt) == 8 and mt["turns"].map(len).eq(2).all() and srv.count == 16
        bench = cs.judge.load_run_benchmarks(run, cfg)["mt_bench"]
        temps = {}
        for r in srv.requests:
            b = r["body"]
            assert b["max_tokens"] == 33 and b["model"] == TRAINED["system"] and "top_p" not in b
            assert b["seed"] == 42                                  # the training seed
            q = bench.questions[bench.questions["turns"].map(lambda t: t[0]) == b["messages"][0]["content"]]
            temps[q["category"].iloc[0]] = b["temperature"]
            if len(b["messages"]) == 3:                             # turn 2 sees the student's own first answer
                assert b["messages"][1] == {"role": "assistant", "content": student_reply({"messages": b["messages"][:1]})}
        assert temps == {**{c: A.MT_BENCH_TEMPERATURES[c] for c in temps}}
        assert {temps["writing"], temps["math"], temps["stem"]} == {0.7, 0.0, 0.1}
        assert set(mt["served_model"]) == {"served-student"} and mt["n_tokens"].map(len).eq(2).all()
        n = srv.count
        ah = A.run_answers(run, cfg, "base-smollm2-135m-instruct", "arena_hard")
        bodies = [r["body"] for r in srv.requests[n:]]
        assert len(ah) == 8 and all(b["temperature"] == 0.0 and b["max_tokens"] == 44 for b in bodies)
        assert {b["model"] for b in bodies} == {"smollm2-135m-instruct"} and {b["seed"] for b in bodies} == {0}


def test_answers_keyed_by_model_and_generation_settings(tmp_path, shared_data, monkeypatch):
    with FakeOpenAI(replies=student_reply) as srv:
        cfg = judge_config(tmp_path, shared_data, srv.base_url, monkeypatch=monkeypatch)
        run = _run(cfg)
        st = A.answers_step(run, cfg, TRAINED["system"], "arena_hard")
        A.run_answers(run, cfg, TRAINED["system"], "arena_hard")
        n = srv.count
        assert A.answers_step(run, cfg, TRAINED["system"], "arena_hard").done
        A.run_answers(run, cfg, TRAINED["system"], "arena_hard")
        assert srv.count == n                                           # unchanged rerun: no request
        more = judge_config(tmp_path, shared_data, srv.base_url, monkeypatch=monkeypatch,
                            **{"judge.arena_hard_max_new_tokens": 99})
        assert A.answers_step(run, more, TRAINED["system"], "arena_hard").key != st.key
        other_mt = judge_config(tmp_path, shared_data, srv.base_url, monkeypatch=monkeypatch,
                                **{"judge.mt_bench_max_new_tokens": 99})
        assert A.answers_step(run, other_mt, TRAINED["system"], "arena_hard").key == st.key   # unrelated setting
        monkeypatch.setitem(TRAINED, "key", "retrained")                # a retrained model: new answers
        assert A.answers_step(run, cfg, TRAINED["system"], "arena_hard").key != st.key


def test_refused_prompt_is_counted_and_token_limit_recorded(tmp_path, shared_data, monkeypatch):
    refuse = lambda n, b: 400 if len(b["messages"]) == 3 else None     # noqa: E731  (every turn 2)
    with FakeOpenAI(replies=student_reply, faults=refuse, finish_reason="length") as srv:
        cfg = judge_config(tmp_path, shared_data, srv.base_url, monkeypatch=monkeypatch)
        run = _run(cfg)
        mt = A.run_answers(run, cfg, "base-smollm2-135m-instruct", "mt_bench")
        assert mt["error"].str.startswith("turn 2: ").all() and mt["turns"].map(len).eq(1).all()
        st = A.answers_step(run, cfg, "base-smollm2-135m-instruct", "mt_bench")
        m = st.manifest()
        assert (m["answered"], m["unanswered"], m["hit_token_limit"]) == (0, 2, 2)


def test_answers_resume_after_a_kill(tmp_path, shared_data, monkeypatch):
    with FakeOpenAI(replies=student_reply) as srv:
        cfg = judge_config(tmp_path, shared_data, srv.base_url, monkeypatch=monkeypatch, **{"judge.n_questions": 4})
        run = _run(cfg)
        st = A.answers_step(run, cfg, "base-smollm2-135m-instruct", "arena_hard")
        bench = cs.judge.load_run_benchmarks(run, cfg)["arena_hard"]
        first = bench.questions["question_id"].iloc[0]
        cs.runs.append_jsonl(st.path("answers.jsonl"), [{"question_id": first, "category": "x", "turns": ["kept"],
                                                         "finish_reasons": ["stop"], "n_tokens": [1],
                                                         "served_model": "m", "error": None}])
        with open(st.path("answers.jsonl"), "a") as fh:
            fh.write('{"question_id": "torn')                        # a kill in the middle of a line
        out = A.run_answers(run, cfg, "base-smollm2-135m-instruct", "arena_hard")
        assert srv.count == 3 and out.set_index("question_id").loc[first, "turns"] == ["kept"]


def test_chat_template_check(tmp_path):
    from crowdselect_lib.models import load_tokenizer, tiny_llama_path

    tok = load_tokenizer("tiny-llama")
    sample = A.check_chat_template(tok, "s")
    assert "What is 2 + 2?" in sample
    folder = tmp_path / "student"
    shutil.copytree(tiny_llama_path(), folder)
    saved = {"messages": A.SAMPLE_CONVERSATION, "rendered": sample}
    (folder / A.TEMPLATE_SAMPLE_FILE).write_text(json.dumps(saved))
    assert A.check_chat_template(tok, "s", folder) == sample
    (folder / A.TEMPLATE_SAMPLE_FILE).write_text(json.dumps(dict(saved, rendered="something else")))
    with pytest.raises(A.StudentError, match="differently than at training time"):
        A.check_chat_template(tok, "s", folder)
    tok.chat_template = None
    with pytest.raises(A.StudentError, match="no chat template"):
        A.check_chat_template(tok, "s")


def test_serving_plan_one_vllm_server_with_every_lora_adapter(tmp_path, shared_data, monkeypatch):
    cfg = judge_config(tmp_path, shared_data, "http://unused/v1", monkeypatch=monkeypatch)
    plan = A.serving_plan(_run(cfg), cfg).set_index("system")
    cmd = plan.loc[TRAINED["system"], "command"]
    assert cmd.startswith("vllm serve smollm2-135m-instruct --enable-lora")
    assert f"--lora-modules {TRAINED['system']}={TRAINED['path']}" in cmd
    assert plan.loc["base-smollm2-135m-instruct", "command"] == cmd              # one server for the base
    assert plan.loc[TRAINED["system"], "served_name"] == TRAINED["system"]      # model name = adapter name


def test_in_process_student_answers_with_finish_reasons(tmp_path, shared_data, monkeypatch):
    cfg = judge_config(tmp_path, shared_data, "http://unused/v1", monkeypatch=monkeypatch, trained=False,
                       **{"judge.student_backend": "local", "training.student": "tiny-llama",
                          "judge.anchor": "tiny-llama", "judge.n_questions": 1, "judge.arena_hard_max_new_tokens": 4})
    out = A.run_answers(_run(cfg), cfg, "base-tiny-llama", "arena_hard")
    assert len(out) == 1 and out["error"].isna().all()
    assert out["finish_reasons"].iloc[0] in (["stop"], ["length"]) and 1 <= out["n_tokens"].iloc[0][0] <= 4


def test_answers_go_out_in_one_pass_with_the_configured_concurrency(tmp_path, shared_data, monkeypatch):
    """No wait after every 16 questions: 20 questions in flight together, up to judge.student_max_concurrency."""
    with FakeOpenAI(replies=student_reply, delay_s=2.5) as srv:     # long enough for every request to be sent
        cfg = judge_config(tmp_path, shared_data, srv.base_url, monkeypatch=monkeypatch,
                           **{"judge.n_questions": 20, "judge.student_max_concurrency": 20})
        out = A.run_answers(_run(cfg), cfg, "base-smollm2-135m-instruct", "arena_hard")
        assert len(out) == 20 and srv.count == 20 and srv.max_in_flight > 16   # the old path stopped at 16
    with FakeOpenAI(replies=student_reply, delay_s=0.05) as srv:
        cfg = judge_config(tmp_path / "b", shared_data, srv.base_url, monkeypatch=monkeypatch,
                           **{"judge.n_questions": 20, "judge.student_max_concurrency": 3})
        A.run_answers(_run(cfg), cfg, "base-smollm2-135m-instruct", "arena_hard")
        assert srv.count == 20 and srv.max_in_flight == 3
