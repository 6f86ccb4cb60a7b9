"""Faults of the training stage (issue 14): kills at random points resume from the last checkpoint without redoing
finished work, the final manifest appears only when training finished, and bad params are rejected at load time
with an error naming the key."""
from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest
from transformers import TrainerCallback

import crowdselect_lib as cs
from crowdselect_lib.config import ConfigError, TrainingConfig, load_config

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[1]
T = cs.training


class Kill(TrainerCallback):
    """Raise right after optimizer step `at` (before that step's checkpoint is written): a kill mid-run."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.at:
            raise RuntimeError(f"killed after step {self.at}")


def chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                         {"role": "assistant", "content": f"The answer is {2 * i}."}]}


def tiny_cfg(**kw) -> TrainingConfig:
    base = dict(student="tiny-llama", learning_rate=1e-2, per_device_batch_size=2, global_batch_size=2,
                max_length=96, warmup_steps=0, logging_steps=1, mixed_precision="no", seeds=[42])
    return TrainingConfig(**{**base, **kw})


@pytest.mark.parametrize("kill_at, resumed", [(3, "checkpoint-2"), (1, None)])
def test_killed_training_resumes_from_its_last_checkpoint(tmp_path, kill_at, resumed):
    cfg = tiny_cfg(max_steps=4, save_steps=2)
    rows = [chat(i) for i in range(4)]
    with pytest.raises(RuntimeError, match=f"killed after step {kill_at}"):
        T.train(cfg, "sft_full", rows, tmp_path, callbacks=[Kill(kill_at)])
    assert not (tmp_path / "result.json").exists() and not (tmp_path / "model").exists()
    assert T.last_checkpoint(tmp_path) == (str(tmp_path / "checkpoints" / resumed) if resumed else None)
    res = T.train(cfg, "sft_full", rows, tmp_path)
    assert res.resumed_from == resumed and res.steps == 4
    logged = [h for h in res.log_history if "loss" in h]
    assert [h["step"] for h in logged] == [1, 2, 3, 4]                     # restored steps + new ones, none twice
    assert res.train_loss == pytest.approx(sum(h["loss"] for h in logged) / 4)


def test_default_checkpoints_every_quarter_so_a_long_run_resumes(tmp_path):
    """`save_steps: null` = a checkpoint each quarter of the run (a 189-step paper run: every 48 steps); killed at
    step 7 of 8, the run resumes from checkpoint-6 and only trains steps 7-8 again."""
    prec = T.precision_settings(tiny_cfg(), cuda=False)
    assert T.trainers.trl_args(tiny_cfg(), "sft_full", tmp_path, 42, 189, False, prec).save_steps == 0.25
    cfg = tiny_cfg(max_steps=8)
    with pytest.raises(RuntimeError, match="killed after step 7"):
        T.train(cfg, "sft_full", [chat(i) for i in range(4)], tmp_path, callbacks=[Kill(7)])
    res = T.train(cfg, "sft_full", [chat(i) for i in range(4)], tmp_path)
    assert res.resumed_from == "checkpoint-6" and res.steps == 8


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    over = {"run.root": str(tmp_path_factory.mktemp("runs")), "run.name": "faults", "zoo.n_instructions": 300,
            "selection.k": 12, "training.student": "tiny-llama", "training.subsets": ["random"],
            "training.methods": ["sft_full"], "training.max_steps": 4, "training.save_steps": 2,
            "training.demo_examples": 8, "training.per_device_batch_size": 2, "training.global_batch_size": 2,
            "training.max_length": 96, "training.learning_rate": 1e-2, "training.warmup_steps": 0}
    cfg = load_config(REPO / "params" / "demo.yaml", over)
    return cs.Run.from_config(cfg), cfg


def test_a_killed_step_has_no_manifest_and_its_rerun_resumes_inside_the_step_folder(toy):
    run, cfg = toy
    st = T.train_step(run, cfg, "random", "tiny-llama", "sft_full", 42)
    with pytest.raises(RuntimeError, match="killed after step 3"):
        T.run_training(run, cfg, "random", "tiny-llama", "sft_full", 42, callbacks=[Kill(3)])
    assert not st.done and not (st.dir / "manifest.json").exists()
    assert (st.dir / "checkpoints" / "checkpoint-2").is_dir()             # checkpoints live in the step folder
    assert not T.trained_systems(run, cfg)["done"].any()                    # never judged half-trained
    row = T.run_training(run, cfg, "random", "tiny-llama", "sft_full", 42)
    manifest = json.loads((st.dir / "manifest.json").read_text())
    assert st.done and manifest["resumed_from"] == "checkpoint-2" and manifest["steps"] == 4
    assert row["steps"] == 4 and math.isfinite(row["train_loss"]) and not (st.dir / "checkpoints").exists()
    assert T.run_training(run, cfg, "random", "tiny-llama", "sft_full", 42)["reused"]


@pytest.mark.parametrize("key, value, message", [
    ("learning_rate", 0.0, "training.learning_rate: 0.0 must be a finite number > 0"),
    ("learning_rate", -1e-5, "training.learning_rate"),
    ("learning_rate", float("nan"), "training.learning_rate"),
    ("learning_rate", float("inf"), "training.learning_rate"),
    ("epochs", 0, "training.epochs"),
    ("max_steps", 0, "training.max_steps: 0 must be >= 1, or -1"),
    ("max_steps", -2, "training.max_steps"),
    ("preference_max_steps", 0, "training.preference_max_steps"),
    ("per_device_batch_size", 0, "training.per_device_batch_size: 0 must be >= 1"),
    ("global_batch_size", 0, "training.global_batch_size"),
    ("gradient_accumulation_steps", 0, "training.gradient_accumulation_steps"),
    ("methods", ["sft"], "training.methods\\[0\\]: 'sft' is not one of"),
    ("methods", [], "training.methods"),
    ("eval_fraction", 1.0, "training.eval_fraction"),
    ("seeds", [1, 1], "training.seeds"),
    ("seeds", [], "training.seeds"),
    ("subsets", ["../x"], "'../x' is not a plain name"),
    ("subsets", ["random", "random"], "'random' appears twice"),
    ("demo_examples", 1, "training.demo_examples"),
    ("save_steps", 0, "training.save_steps"),
    ("lora_dropout", 1.0, "training.lora_dropout"),
    ("max_length", 4, "training.max_length"),
    ("mixed_precision", "fp8", "training.mixed_precision: 'fp8' is not one of"),
])
def test_bad_training_params_are_rejected_at_load_time(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(REPO / "params" / "demo.yaml", {f"training.{key}": value})


def test_bad_values_in_code_and_at_train_time_name_the_problem(tmp_path, monkeypatch, toy):
    with pytest.raises(ConfigError, match="training.methods"):
        TrainingConfig(methods=["sft_full", "nope"])
    with pytest.raises(ConfigError, match="both null"):
        TrainingConfig(global_batch_size=None)
    monkeypatch.setenv("WORLD_SIZE", "3")                                  # 16 / (1 x 3) does not divide
    with pytest.raises(ConfigError, match="global_batch_size 4 is not a multiple of per_device_batch_size 1 x 3"):
        T.build_trainer(tiny_cfg(per_device_batch_size=1, global_batch_size=4, max_steps=1), "sft_full",
                        [chat(1)], tmp_path)
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(ValueError, match="SFT row 1 last message"):
        T.train(tiny_cfg(max_steps=1), "sft_full", [chat(0), {"messages": [{"role": "user", "content": "q"},
                                                                            {"role": "assistant", "content": " "}]}],
                tmp_path / "blank")
    run, cfg = toy
    bad = load_config(REPO / "params" / "demo.yaml", {"training.subsets": ["crowdselect", "no_such_subset"]})
    with pytest.raises(ValueError, match="'no_such_subset' is neither a selection subset"):
        T.trained_systems(run, bad)


def test_missing_trl_experimental_is_a_clear_error(monkeypatch):
    real = importlib.import_module

    def fake(name, *a, **kw):
        if name.startswith("trl.experimental"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *a, **kw)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ImportError, match="SimPO/ORPO need trl.experimental.cpo.*install the TRL range"):
        T.experimental("cpo")
