"""The real 56-model AlpacaEval crowd through papermill (issues 16, 24): every chapter but 02 offline from a local
copy, at a tiny scale (k = 8, two trainings of SmolLM2-135M, 6 held-out items; the full run is `make alpacaeval`)."""
from __future__ import annotations

import pytest

import crowdselect_lib as cs
from crowdselect_lib.pipeline import main
from tests.conftest import REPO

pytestmark = pytest.mark.smoke
TINY = {"selection.k": 8, "judge.heldout_items": 6, "training.seeds": [42], "training.subsets": ["crowdselect", "random"],
        "training.per_device_batch_size": 8}


def test_alpacaeval_chapters_run_and_show_the_real_crowd(tmp_path, shared_data, capsys):
    zoo_dir = shared_data / "alpacaeval_zoo"
    over = {"run.root": str(tmp_path), "zoo.data_dir": str(zoo_dir), **TINY}
    sets = [f"{k}={v}".replace("'", "") for k, v in over.items()]
    rc = main(["demo", "--params", str(REPO / "params" / "alpacaeval.yaml"), "--only",
               "download,base_metrics,clustering,crowdselect,baselines,finetune,judge,tables_figures",
               *sum([["--set", s] for s in sets], [])])
    assert rc == 0, capsys.readouterr().err[-2000:]
    cfg = cs.load_config(REPO / "params" / "alpacaeval.yaml", over)
    run = cs.Run.from_config(cfg)
    zoo = cs.zoo.load_run_zoo(run, cfg)
    # 36 incomplete instructions dropped; 231 of the 769 (30%) held out and never selectable
    assert zoo.scores(zoo.default_reward_model).shape == (538, 56) and zoo.info["heldout"] == 231
    sel = cs.selection.load_run_selection(run, cfg, "crowdselect")
    assert len(sel) == 8 and not set(sel["uuid"]) & set(zoo.info["heldout_uuids"])
    assert len(cs.baselines.load_run_baseline(run, cfg, "random")) == 8
    scores = cs.judge.judged_scores(run, cfg)          # chapter 08: the held-out loss, no judge
    assert set(scores["benchmark"]) == {"heldout_loss"} and (scores["n_valid"] + scores["n_failed"] == 6).all()
    assert scores["score"].between(0.1, 10).all() and (scores["ci_low"] <= scores["score"]).all()
    versus = cs.reporting.comparisons(cs.reporting.collect_items(run, cfg), n_boot=200)
    got = versus.set_index(["subset", "reference"])["n_items"]
    n = int(scores["n_valid"].iloc[0])                  # items whose prompt fills max_length are skipped by all
    assert got.to_dict() == {("crowdselect", "base"): n, ("crowdselect", "Random"): n, ("random", "base"): n}
    assert (run.dir / "tables" / "ledger.csv").exists() and (run.dir / "tables" / "versus.csv").exists()
