"""A real run a lab can afford (issue 20): only the trainings a table prints, preflight FAIL lines for data folders
and closed cost gates, the GPU budget from the shipped rates, `pipeline table --params/--set`, and small fixes
(IFD pre-model key, reward models under `scoring.model_dir`, loss history of short runs, saving on every rank)."""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from crowdselect_lib import pipeline
from crowdselect_lib.config import load_config
from crowdselect_lib.preflight import (Check, budget, budget_lines, cells, check_bench_dir, check_zoo_dir,
                                       closed_gates, cost_gates, gpu_rates, plan)
from crowdselect_lib.preflight import main as preflight_main
from crowdselect_lib.preflight import run_preflight
from crowdselect_lib.training import subset_names
from test_preflight import KEY_ENV, env, hand_config  # noqa: F401  (env: the autouse offline fixture)

TABLE2_ROWS = ["random", "instag", "ifd_pre", "difficulty_top", "separability_top", "stability_top", "crowdselect"]


def table2(**over):
    from crowdselect_lib.reporting import params_file

    return load_config(params_file(2), over)


# ------------------------------------------------------------------ train only what a table prints

def test_table2_trains_its_printed_rows_and_an_explicit_list_wins():
    cfg = table2()
    assert subset_names(cfg) == TABLE2_ROWS                     # rows less the untouched "base"
    p = plan(cells(cfg))
    assert p.row("train sft_full").count == 7 * 4 * 3 == 84    # 7 subsets x 4 students x 3 seeds
    assert subset_names(table2(**{"training.subsets": ["random"]})) == ["random"]
    every = subset_names(table2(**{"tables.rows": None}))
    # 7 selections + 8 baselines (Direct-Score in both directions, issue 21)
    assert len(every) == 15 and every[:2] == ["difficulty_top", "difficulty_bottom"]
    with pytest.raises(ValueError, match=r"tables.rows names \['nope'\]"):
        subset_names(table2(**{"tables.rows": ["base", "nope"]}))


# ------------------------------------------------------------------ data folders

def magpie_shard(path, columns=("uuid", "instruction"), n=3, field="content"):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = {c: [f"{c}{i}" for i in range(n)] for c in columns}
    for model in ("Qwen2.5-72B-Instruct", "gemma-2-9b-it"):
        data[f"Magpie-Align/{model}"] = [{field: "x", "Skywork-Reward-Llama-3.1-8B": 1.0}] * n
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(data), path)


def test_zoo_dir_is_checked_against_the_loader_schema_and_gives_the_real_size(tmp_path):
    cfg = hand_config(zoo={"source": "magpie", "data_dir": str(tmp_path / "zoo"), "limit": None})
    assert check_zoo_dir(cfg)[0].line() == f"FAIL zoo.data_dir: folder {tmp_path / 'zoo'} does not exist"
    (tmp_path / "zoo").mkdir()
    assert "holds no parquet shards" in check_zoo_dir(cfg)[0].detail
    magpie_shard(tmp_path / "zoo" / "a" / "train-0.parquet", n=3)
    magpie_shard(tmp_path / "zoo" / "train-1.parquet", n=4)
    check, size = check_zoo_dir(cfg)
    assert check.status == "OK" and size == (7, 2)
    assert plan({"c": cfg}, zoo_sizes={cfg.zoo.data_dir: size}).row("embedding").count == 7   # the real size
    magpie_shard(tmp_path / "zoo" / "train-2.parquet", columns=("uuid",))
    check, size = check_zoo_dir(cfg)
    assert check.failed and "lacks the Magpie schema: no column(s) ['instruction']" in check.detail and size is None


def test_alpacaeval_dir_needs_both_files_with_their_columns(tmp_path):
    cfg = hand_config(zoo={"source": "alpacaeval", "data_dir": str(tmp_path), "limit": 2})
    assert "lacks instructions.parquet" in check_zoo_dir(cfg)[0].detail
    pd.DataFrame({"instruction": ["a", "b", "c", "a"]}).to_parquet(tmp_path / "instructions.parquet")
    pd.DataFrame({"instruction": ["a"], "model": ["m"], "output": ["o"]}).to_parquet(tmp_path / "responses.parquet")
    assert check_zoo_dir(cfg)[0].detail == f"{tmp_path / 'responses.parquet'} lacks column(s) ['preference']"
    pd.DataFrame({"instruction": ["a", "b"], "model": ["m", "n"], "output": ["o", "p"],
                  "preference": [1.0, 2.0]}).to_parquet(tmp_path / "responses.parquet")
    check, size = check_zoo_dir(cfg)
    assert check.status == "OK" and size == (2, 2)             # 3 distinct instructions, limit 2; 2 models


def test_bench_dir_names_missing_files(tmp_path):
    cfg = hand_config(judge={**hand_config().judge.__dict__, "data_dir": str(tmp_path / "nope")})
    assert [c.line() for c in check_bench_dir(cfg)] == [
        f"FAIL judge.data_dir: folder {tmp_path / 'nope'} does not exist"]
    (tmp_path / "mt_bench").mkdir()
    (tmp_path / "mt_bench" / "question.jsonl").write_text("")
    cfg = hand_config(judge={**hand_config().judge.__dict__, "data_dir": str(tmp_path)})
    lines = [c.line() for c in check_bench_dir(cfg)]
    assert lines[0] == (f"FAIL judge.data_dir: {tmp_path / 'mt_bench'} lacks benchmark file(s) "
                        "['reference_answer_gpt-4.jsonl', 'judge_prompts.jsonl']")
    assert lines[1].startswith(f"FAIL judge.data_dir: {tmp_path / 'arena_hard_v0.1'} lacks benchmark file(s)")


def test_bench_dir_of_the_real_files_passes(shared_data):
    cfg = hand_config(judge={**hand_config().judge.__dict__, "data_dir": str(shared_data), "n_questions": None})
    assert [c.detail.split(": ")[-1] for c in check_bench_dir(cfg)] == ["80 mt_bench questions",
                                                                       "500 arena_hard questions"]


# ------------------------------------------------------------------ cost gates

def test_closed_gates_fail_with_the_set_that_opens_them():
    base = hand_config()
    cfg = hand_config(judge={**base.judge.__dict__, "confirm_cost": False},
                      baselines={**base.baselines.__dict__, "confirm_cost": False})
    lines = [c.line() for c in cost_gates({"c": cfg}, plan({"c": cfg}))]
    assert lines == [
        "FAIL judge cost gate: 880 paid requests planned, more than judge.max_calls_without_confirm=200: the run "
        "would stop there; open it with --set judge.confirm_cost=true",
        "FAIL LLM baselines cost gate: 1,100 paid requests planned, more than baselines.max_calls_without_confirm=200: "
        "the run would stop there; open it with --set baselines.confirm_cost=true"]
    assert [c.status for c in cost_gates({"c": base}, plan({"c": base}))] == ["OK", "OK"]
    assert [c.what for c in closed_gates(cfg)] == ["judge cost gate", "LLM baselines cost gate"]


def test_baselines_gate_at_run_time_counts_uncached_requests():
    from crowdselect_lib.baselines import LLMCostNotConfirmed, ask_with_retries, check_llm_cost
    from crowdselect_lib.llm import GenerationSettings

    class FakeLLM:
        sent = 0

        def estimate(self, convs, settings):
            return {"to_send": len(convs) - 1}                  # one of them cached

        def chat(self, convs, settings):
            self.sent += len(convs)
            return ["7"] * len(convs)

    cfg = hand_config(baselines={**hand_config().baselines.__dict__, "confirm_cost": False,
                                 "max_calls_without_confirm": 2})
    llm, convs, gs = FakeLLM(), [[{"role": "user", "content": str(i)}] for i in range(4)], GenerationSettings()
    llm.cost_gate = lambda c, s: check_llm_cost(llm, cfg, c, s)
    with pytest.raises(LLMCostNotConfirmed, match=r"would send 3 requests to judge-x, more than "
                       r"baselines.max_calls_without_confirm=2; open the gate with --set baselines.confirm_cost=true"):
        ask_with_retries(llm, convs, int, gs)
    assert llm.sent == 0
    assert ask_with_retries(llm, convs[:3], int, gs)["value"].tolist() == [7, 7, 7]   # 2 to send: under the limit


# ------------------------------------------------------------------ the budget

def test_rates_are_marked_and_the_budget_follows_them():
    rates = gpu_rates()
    assert {"train", "answer_static", "answer_continuous", "ifd", "reward", "embedding", "gpu_hour"} <= set(rates)
    assert all(r.basis.startswith(("measured on ", "estimate", "CPU extrapolation")) and r.source
               for r in rates.values())
    cfg = hand_config()
    p = plan({"c": cfg})
    rows = {r.step: r for r in budget(p, {"c": cfg}, {"s1": 3_000_000_000})}
    # 1440 steps x (1 x 1 x 2) sequences x 600 tokens / 9000 tok/s / 3600
    assert rows["train sft_full"].gpu_hours == pytest.approx(1440 * 2 * 600 / 9000 / 3600)
    # 10 trainings saved in bf16 (a GPU's training dtype: 2 B) + one transient 12 B/param checkpoint
    assert rows["train sft_full"].disk_gb == pytest.approx((10 * 3e9 * 2 + 12 * 3e9) / 1e9)
    assert rows["answer mt_bench"].gpu_hours == pytest.approx(220 * 100 / 60 / 3600)      # cap 100 < 550 tokens
    assert rows["answer arena_hard"].gpu_hours == pytest.approx(110 * 200 / 60 / 3600)    # static batches
    lines = budget_lines(list(rows.values()), p, {"c": cfg})
    assert lines[0].startswith("GPU BUDGET") and "none measured on a GPU" in lines[0]
    assert lines[-1].startswith("  total: ~") and "disk ~" in lines[-1] and "wall ~" in lines[-1]


def test_preflight_table2_plans_84_trainings_and_names_missing_folders(monkeypatch, capsys):
    from crowdselect_lib.preflight import run as pre_run

    monkeypatch.setattr(pre_run, "check_chat", lambda what, c: Check("SKIP", what, "not asked in this test"))
    assert preflight_main(["--table", "2", "--set", "zoo.data_dir=/nonexistent/zoo",
                           "--set", "judge.data_dir=/nonexistent/bench"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "FAIL zoo.data_dir: folder /nonexistent/zoo does not exist" in out
    assert "FAIL judge.data_dir: folder /nonexistent/bench does not exist" in out
    train = next(line for line in out if line.strip().startswith("train sft_full"))
    assert train.split()[2] == "84"
    assert any(line.startswith("GPU BUDGET") for line in out)
    assert any("judge cost gate" in line and "--set judge.confirm_cost=true" in line for line in out)
    assert any(line.strip().startswith("train sft_full") and "GB" not in line and "estimate" in line for line in out)


# ------------------------------------------------------------------ pipeline table --params / --set

def test_pipeline_table_takes_params_and_sets_and_stops_at_a_closed_gate(monkeypatch, capsys, tmp_path):
    with pytest.raises(SystemExit):
        pipeline.main(["table", "-h"])
    helptext = capsys.readouterr().out
    assert "--params" in helptext and "--set" in helptext
    ran = []
    monkeypatch.setattr(pipeline, "run_chain", lambda *a, **k: ran.append(a))
    rc = pipeline.main(["table", "--table", "2", "--set", f"run.root={tmp_path}", "--set", "judge.judge=llm"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and ran == [] and len(err.splitlines()) == 1
    assert err.startswith("error: judge cost gate: ") and "--set judge.confirm_cost=true" in err
    # the AlpacaEval params under an LLM judge (they ship the held-out loss): its gate binds chapter 08 alone
    alpaca = load_config(pipeline.repo_root() / "params" / "alpacaeval.yaml", {"judge.judge": "llm"})
    pipeline.check_gates(alpaca, ["download", "base_metrics", "clustering", "crowdselect", "baselines"])
    with pytest.raises(pipeline.GateClosed, match="^judge cost gate: "):
        pipeline.check_gates(alpaca, None)                       # every chapter: the judge's gate applies
    assert pipeline.main(["table", "--table", "99"]) == 1
    assert capsys.readouterr().err.startswith("error: no paper table '99'")
    params = tmp_path / "t.yaml"
    params.write_text("base: " + str(pipeline.repo_root() / "params" / "demo.yaml") + "\n")
    assert pipeline.main(["table", "--params", str(params)]) == 1
    assert "tables.table is not set; name the table with --table" in capsys.readouterr().err


# ------------------------------------------------------------------ small fixes

def test_ifd_pre_model_key_holds_only_what_changes_that_model(tmp_path):
    from crowdselect_lib.baselines.ifd import model_name, pre_model_step
    from crowdselect_lib.runs import Run

    cfg = load_config(pipeline.repo_root() / "params" / "demo.yaml", {"run.root": str(tmp_path)})
    run = Run.from_config(cfg)

    def key(**over):
        c = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, **over))
        return pre_model_step(run, c).settings

    same = key()
    for over in ({"logging_steps": 3}, {"seeds": [1, 2, 3]}, {"methods": ["sft_lora"]}, {"subsets": ["random"]},
                 {"save_steps": 5}, {"keep_checkpoints": True}):
        assert key(**over) == same, over
    assert key(weight_decay=0.5) != same          # (the demo's ifd_pre_training sets learning_rate itself)
    assert key(student_revisions={model_name(cfg): "abc"})["revision"] == "abc"     # the IFD model's pin


def test_model_dir_resolves_only_the_reward_models_a_run_uses(tmp_path):
    from crowdselect_lib.config import from_dict
    from crowdselect_lib.config.data_sections import ScoringConfig
    from crowdselect_lib.scoring import registry_table

    (tmp_path / "Skywork-Reward-Llama-3.1-8B").mkdir()
    (tmp_path / "Skywork-Reward-Llama-3.1-8B" / "config.json").write_text("{}")
    sc = from_dict(ScoringConfig, {"reward_models": ["Skywork-Reward-Llama-3.1-8B"], "model_dir": str(tmp_path)})
    table = registry_table(sc)
    assert table.loc["Skywork-Reward-Llama-3.1-8B", "source"] == str(tmp_path / "Skywork-Reward-Llama-3.1-8B")
    assert table.loc["Skywork-Reward-Gemma-2-27B", "source"] == "Skywork/Skywork-Reward-Gemma-2-27B"


def test_loss_history_of_a_run_shorter_than_logging_steps(tmp_path, monkeypatch):
    from crowdselect_lib.training import run as T

    (tmp_path / "model").mkdir()
    (tmp_path / "metrics.json").write_text(json.dumps({"log_history": [
        {"step": 2, "train_loss": 4.5, "train_runtime": 1.0}]}))
    systems = pd.DataFrame([{"system": "random.sft_full", "subset": "random", "method": "sft_full", "done": True,
                             "path": str(tmp_path / "model")}])
    monkeypatch.setattr(T, "trained_systems", lambda run, cfg: systems)
    cfg = load_config(None, {"training.learning_rate": 3e-4})
    hist = T.loss_history(None, cfg)
    assert hist.to_dict("records") == [{"system": "random.sft_full", "subset": "random", "method": "sft_full",
                                        "step": 2, "loss": 4.5, "learning_rate": 3e-4}]


def test_save_runs_on_every_rank_and_the_rest_on_rank_zero(tmp_path):
    from crowdselect_lib.training.fit import _save_model, save_dtype

    class Trainer:
        def __init__(self, main):
            self.main, self.calls = main, []
            self.model = self

        def to(self, dtype):
            self.calls.append(("to", str(dtype)))

        def save_model(self, path):
            self.calls.append(("save_model", path))

        def is_world_process_zero(self):
            return self.main

        @property
        def processing_class(self):
            raise AssertionError("a non-main rank must not touch the tokenizer")

    other = Trainer(main=False)
    _save_model(other, tmp_path, "bfloat16")
    assert other.calls == [("to", "torch.bfloat16"), ("save_model", str(tmp_path))]
    fsdp = Trainer(main=False)
    fsdp.is_fsdp_enabled = True
    _save_model(fsdp, tmp_path, "bfloat16")
    assert fsdp.calls == [("save_model", str(tmp_path))]        # gathered collectively, never cast per shard
    assert (save_dtype({"bf16": True}), save_dtype({"fp16": True}), save_dtype({})) == ("bfloat16", "float16", None)


@pytest.mark.faults
def test_two_process_ddp_saves_on_every_rank_without_hanging(tmp_path):
    """A real 2-process DDP run (torchrun, gloo on CPU): both ranks reach the save, both return, one model."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).with_name("ddp_train.py")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(port), str(script), str(tmp_path)], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks == [{"steps": 2, "world_size": 2}] * 2
    assert (tmp_path / "model" / "model.safetensors").exists() and (tmp_path / "result.json").exists()


def test_a_bad_gpu_count_is_a_fail_line_naming_it():
    lines = []
    cfg = hand_config(baselines={**hand_config().baselines.__dict__, "methods": ["random"]},
                      judge={**hand_config().judge.__dict__, "judge": "proxy"})
    assert run_preflight(cfg, gpus=[("H100", 80.0)], world_size=8, log=lines.append) == 1
    assert "FAIL world size: --world-size 8 but 1 GPU(s) visible" in lines
    lines.clear()
    assert run_preflight(cfg, gpus=[], world_size=0, log=lines.append) == 1
    assert "FAIL world size: --world-size 0: must be >= 1" in lines
