"""The real 56-model AlpacaEval crowd through papermill (issue 16): chapters 01-06 offline from a local copy."""
from __future__ import annotations

import pytest

import crowdselect_lib as cs
from crowdselect_lib.pipeline import main
from tests.conftest import REPO

pytestmark = pytest.mark.smoke


def test_alpacaeval_chapters_run_and_show_the_real_crowd(tmp_path, shared_data, capsys):
    zoo_dir = shared_data / "alpacaeval_zoo"
    sets = [f"run.root={tmp_path}", f"zoo.data_dir={zoo_dir}"]
    rc = main(["demo", "--params", str(REPO / "params" / "alpacaeval.yaml"), "--only",
               "download,base_metrics,clustering,crowdselect,baselines", *sum([["--set", s] for s in sets], [])])
    assert rc == 0, capsys.readouterr().err[-2000:]
    cfg = cs.load_config(REPO / "params" / "alpacaeval.yaml", {"run.root": str(tmp_path),
                                                               "zoo.data_dir": str(zoo_dir)})
    run = cs.Run.from_config(cfg)
    zoo = cs.zoo.load_run_zoo(run, cfg)
    assert zoo.scores(zoo.default_reward_model).shape == (769, 56)      # 36 incomplete instructions dropped
    sel = cs.selection.load_run_selection(run, cfg, "crowdselect")
    assert len(sel) == cfg.selection.k == 100
    metrics = cs.metrics.load_run_metrics(run, cfg)
    assert sel["stability"].mean() > metrics["stability"].quantile(0.75)   # the subset leans on Stability (w = 2)
    random = cs.baselines.load_run_baseline(run, cfg, "random")
    assert len(random) == 100
