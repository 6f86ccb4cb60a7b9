"""Reward scoring (crowdselect_lib.scoring) with a tiny random sequence-classification model saved here: batching,
truncation, the fine-grained cache (resume after a kill, process split), the keyed steps (what recomputes and
what is reused) and the checks of shipped scores. Chapter 02's "Try this" overrides each have a test here."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import crowdselect_lib as cs
from crowdselect_lib.scoring import (RewardModelSpec, RewardScorer, ScoreCache, ScoringError, agreement, attach_scores,
                                     check_rows, collect, resolve_spec, reward_model_spec, run_scores, sample_check,
                                     score_rows, score_zoo, scores_step, tiny_reward_model, verify_scores)
from crowdselect_lib.zoo import Zoo


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tiny_reward_model(tmp_path_factory.mktemp("rm") / "tiny-rm")
    return RewardModelSpec("tiny-rm", str(path), attn_implementation="sdpa", batch_size=4)


@pytest.fixture(scope="module")
def scorer(spec):
    return RewardScorer(spec, device="cpu")


def make_rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = np.array("the cat sat on a mat while dogs ran far away quickly and slowly".split())
    return pd.DataFrame({
        "uuid": [f"u{i // 3:03d}" for i in range(n)],
        "model": [f"m{i % 3}" for i in range(n)],
        "instruction": [" ".join(rng.choice(words, rng.integers(2, 12))) for _ in range(n)],
        "response": [" ".join(rng.choice(words, rng.integers(1, 60))) + f" {i}" for i in range(n)],
    })


class Counting:
    """Wraps a scorer, counts scored rows, and can die after `fail_after` batches (a simulated kill)."""

    def __init__(self, inner, fail_after=None):
        self.inner, self.fail_after, self.calls, self.rows = inner, fail_after, 0, 0

    def encode(self, *a):
        return self.inner.encode(*a)

    def score(self, ids):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.rows += len(ids)
        return self.inner.score(ids)


def scored(rows, spec, scorer, root, **kw):
    cache = ScoreCache(root, spec, "auto")
    stats = score_rows(rows, spec, cache, lambda: scorer, shard_size=kw.pop("shard_size", 2048), **kw)
    return collect(rows, cache), stats


def test_scores_do_not_depend_on_batch_size(spec, scorer, tmp_path):
    """Try this: scoring.batch_size 1 vs 16 gives the same scores (right padding)."""
    rows = make_rows(20)
    one, _ = scored(rows, RewardModelSpec(**{**spec.settings(), "batch_size": 1}), scorer, tmp_path / "b1")
    many, _ = scored(rows, RewardModelSpec(**{**spec.settings(), "batch_size": 16}), scorer, tmp_path / "b16")
    assert one["n_tokens"].nunique() > 5                        # lengths really differ -> padding happens
    np.testing.assert_allclose(one["score"], many["score"], rtol=1e-5, atol=1e-5)
    assert one["score"].std() > 0


def test_truncation_is_counted_and_matches_a_cut_input(spec, scorer, tmp_path):
    rows = make_rows(12)
    short_spec = RewardModelSpec(**{**spec.settings(), "max_length": 40})
    got, _ = scored(rows, short_spec, RewardScorer(short_spec, device="cpu"), tmp_path)
    ordered = rows.sort_values(["uuid", "model"])                 # the table's order
    full_ids, lengths = scorer.encode(ordered["instruction"].tolist(), ordered["response"].tolist())
    assert got["truncated"].tolist() == list(lengths > 40) and (lengths > 40).sum() > 0
    j = int(np.flatnonzero(lengths > 40)[0])
    assert got["score"].iloc[j] == pytest.approx(float(scorer.score([full_ids[j][:40]])[0]), abs=1e-5)
    assert ScoreCache(tmp_path, short_spec, "auto").dir != ScoreCache(tmp_path, spec, "auto").dir


def test_killed_run_resumes_without_redoing_finished_shards(spec, scorer, tmp_path):
    rows = make_rows(50)
    clean, _ = scored(rows, spec, scorer, tmp_path / "clean", shard_size=8)
    cache = ScoreCache(tmp_path / "killed", spec, "auto")
    with pytest.raises(KeyboardInterrupt):
        score_rows(rows, spec, cache, lambda: Counting(scorer, fail_after=5), shard_size=8)
    assert len(cache.parts()) == 2                             # 2 batches per shard; died in the 3rd shard
    before = {p: p.stat().st_mtime_ns for p in cache.parts()}
    with pytest.raises(ScoringError, match="34 of 50 rows not scored yet"):
        collect(rows, cache)
    again = Counting(scorer)
    stats = score_rows(rows, spec, cache, lambda: again, shard_size=8)
    assert again.rows == 50 - 16 and stats["shards_scored"] == 5 and stats["rows_scored"] == 34
    assert {p: p.stat().st_mtime_ns for p in before} == before
    pd.testing.assert_frame_equal(collect(rows, cache), clean)
    idle = score_rows(rows, spec, cache, lambda: pytest.fail("loaded a model with nothing to score"), shard_size=8)
    assert idle["rows_scored"] == 0 and not idle["loaded_model"]


def test_processes_split_shards_and_union_is_the_whole(spec, scorer, tmp_path):
    rows = make_rows(30)
    clean, _ = scored(rows, spec, scorer, tmp_path / "clean", shard_size=7)
    cache = ScoreCache(tmp_path / "dist", spec, "auto")
    s0 = score_rows(rows, spec, cache, lambda: scorer, shard_size=7, rank=0, world_size=2)
    assert s0["shards_scored"] == 3 and s0["rows_scored"] == 7 + 7 + 2
    s1 = score_rows(rows, spec, cache, lambda: scorer, shard_size=7, rank=1, world_size=2)
    assert s1["shards_scored"] == 2
    pd.testing.assert_frame_equal(collect(rows, cache), clean)


def test_bad_rows_are_named():
    rows = make_rows(6)
    with pytest.raises(ScoringError, match=r"lack column\(s\) \['response'\]"):
        check_rows(rows.drop(columns="response"))
    with pytest.raises(ScoringError, match="1 row\\(s\\) with a missing value, e.g. uuid 'u001' model 'm0'"):
        check_rows(rows.assign(response=rows.response.where(rows.index != 3, None)))
    with pytest.raises(ScoringError, match="duplicate \\(uuid, model\\) row: 'u000', 'm0'"):
        check_rows(pd.concat([rows, rows.iloc[:1]]))


def test_registry_per_model_settings_and_model_dir(tmp_path):
    assert reward_model_spec("Skywork/Skywork-Reward-Llama-3.1-8B").name == "Skywork-Reward-Llama-3.1-8B"
    armo, gemma = reward_model_spec("ArmoRM-Llama3-8B-v0.1"), reward_model_spec("Skywork-Reward-Gemma-2-27B")
    assert (armo.kind, armo.bos, armo.trust_remote_code) == ("armorm", "template", False)
    assert (gemma.batch_size, gemma.max_length, gemma.attn_fallback) == (2, 4096, "eager")
    other = reward_model_spec("org/My-RM")
    assert (other.name, other.source, other.kind) == ("My-RM", "org/My-RM", "sequence_classification")
    cfg = cs.load_config(None, {"scoring.max_length": 512, "scoring.model_dir": str(tmp_path),
                                "scoring.models": {"My-RM": {"batch_size": 3, "trust_remote_code": True}}})
    (tmp_path / "My-RM").mkdir()
    (tmp_path / "My-RM" / "config.json").write_text("{}")
    got = resolve_spec("org/My-RM", cfg.scoring)
    assert (got.source, got.batch_size, got.max_length, got.trust_remote_code) == (
        str(tmp_path / "My-RM"), 3, 512, True)
    with pytest.raises(ScoringError, match="neither config.json nor Skywork-Reward-Gemma-2-27B/config.json"):
        resolve_spec("Skywork-Reward-Gemma-2-27B", cfg.scoring)


# --------------------------------------------------------------------------- keyed steps (run level)

def demo_cfg(tmp_path, **over):
    """A demo run config from the schema defaults (the paper's) plus the offline demo's choices."""
    base = {"run.root": str(tmp_path), "run.name": "t", "zoo.source": "demo", "zoo.n_instructions": 100,
            "scoring.reward_models": ["tiny-reward"], "scoring.verify_sample": 12, "scoring.shard_size": 8,
            "scoring.batch_size": 8}
    return cs.load_config(None, {**base, **over})


def test_steps_reuse_on_equal_keys_and_recompute_on_changed_settings(tmp_path, monkeypatch):
    """Try this: scoring.max_length 64 raises the truncation count; verify_sample 12 -> 20 re-scores a bigger
    sample; batch_size is not part of the key (the scores do not depend on it); same run name throughout."""
    cfg = demo_cfg(tmp_path)
    run = cs.Run.from_config(cfg)
    rows, agree = sample_check(run, cfg)
    assert len(rows) == 12 and list(agree.index) == cs.zoo.zoo_reward_models(cfg)
    assert rows["truncated"].sum() == 0
    assert cs.runs.read_json(run.dir / "meta.json")["scoring_check"]["rows"] == 12

    import crowdselect_lib.scoring.steps as steps
    monkeypatch.setattr(steps, "RewardScorer", lambda *a, **k: pytest.fail("loaded a model for a done step"))
    same_batch = demo_cfg(tmp_path, **{"scoring.batch_size": 2})
    assert scores_step(run, same_batch, "tiny-reward", sample=True).key == scores_step(run, cfg, "tiny-reward", True).key
    again, _ = sample_check(run, same_batch)
    pd.testing.assert_frame_equal(again, rows)
    monkeypatch.undo()

    short = demo_cfg(tmp_path, **{"scoring.max_length": 64})
    rows64, _ = sample_check(run, short)
    assert rows64["truncated"].sum() > 0 and (rows64["rescored"] != rows["rescored"]).any()
    bigger = demo_cfg(tmp_path, **{"scoring.verify_sample": 20})
    rows20, info = run_scores(run, bigger, "tiny-reward", sample=True)
    assert len(rows20) == 20 and info["rows_scored"] < 20      # rows already in the text cache are not re-scored
    assert info["attn_implementation"] == "sdpa" and info["torch_dtype"] == "float32"
    with pytest.raises(ScoringError, match=r"run chapter 02 .*scoring.score_all: true"):
        cs.scoring.load_run_scores(run, cfg, "tiny-reward")


def test_score_all_adds_a_reward_model_column(tmp_path, monkeypatch):
    """Try this: scoring.score_all with another reward model adds its column to the zoo (Table 18 style)."""
    small = hand_zoo()
    import crowdselect_lib.scoring.steps as steps
    monkeypatch.setattr(steps, "load_run_zoo", lambda run, cfg: small)
    cfg = demo_cfg(tmp_path, **{"scoring.score_all": True})
    run = cs.Run.from_config(cfg)
    zoo = score_zoo(run, cfg)
    assert zoo.reward_models == ["rm1", "rm2", "tiny-reward"] and zoo.responses["tiny-reward"].notna().all()
    assert cs.scoring.load_run_scores(run, cfg, "tiny-reward")["score"].tolist() == \
        zoo.responses.sort_values(["uuid", "model"])["tiny-reward"].tolist()


# --------------------------------------------------------------------------- checks of shipped scores

def hand_zoo() -> Zoo:
    r = pd.DataFrame({"uuid": ["a", "a", "b", "b", "c", "c"], "instruction": ["qa"] * 2 + ["qb"] * 2 + ["qc"] * 2,
                      "model": ["x", "y"] * 3, "response": list("123456"),
                      "rm1": [1.0, 2.0, 3.0, np.nan, 5.0, 6.0], "rm2": [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]})
    models = pd.DataFrame({"model": ["x", "y"], "family": ["f", "f"], "size_b": [1.0, 2.0]})
    return Zoo(r, models, ["rm1", "rm2"], "demo", "rm1")


def test_verify_scores_reports_nan_and_coverage():
    v = verify_scores(hand_zoo()).set_index(["reward_model", "model"])
    assert v.loc[("rm1", "y"), "nan"] == 1 and v.loc[("rm1", "y"), "coverage"] == pytest.approx(2 / 3)
    assert not v.loc[("rm1", "y"), "ok"] and v.loc[("rm1", "x"), "ok"] and v["ok"].sum() == 3
    assert v.loc[("rm2", "x"), "mean"] == pytest.approx(4.0) and v.loc[("rm2", "x"), "std"] == pytest.approx(np.sqrt(8 / 3))


def test_agreement_and_attach():
    zoo = hand_zoo()
    shipped = zoo.responses.dropna()
    rescored = shipped[["uuid", "model"]].assign(score=np.exp(shipped["rm1"].to_numpy()))  # monotone in rm1
    a = agreement(shipped, rescored, ["rm1", "rm2"])
    assert a.loc["rm1", "spearman"] == pytest.approx(1.0) and a.loc["rm2", "spearman"] == pytest.approx(-1.0)
    assert a.loc["rm1", "rows"] == 5
    with pytest.raises(ScoringError, match="1 zoo row\\(s\\) have no 'new' score, e.g. uuid 'b' model 'y'"):
        attach_scores(zoo, rescored, "new")
    full = zoo.responses[["uuid", "model"]].assign(score=np.arange(6.0))
    z2 = attach_scores(zoo, full, "new")
    assert z2.reward_models == ["rm1", "rm2", "new"] and z2.responses.loc[5, "new"] == 5.0
    with pytest.raises(ScoringError, match="already has a column 'rm2'"):
        attach_scores(zoo, full, "rm2")


def test_command_line_single_and_two_processes(tmp_path):
    """`python -m crowdselect_lib.scoring --sample` and a 2-process torchrun launch (what `accelerate launch`
    runs) score the verification sample to the same table; each process scores only its own shards."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from crowdselect_lib.scoring import main

    params = tmp_path / "p.yaml"
    params.write_text(f"run: {{name: cli, root: {tmp_path / 'runs'}}}\nzoo: {{source: demo, n_instructions: 100}}\n"
                      "scoring: {reward_models: [tiny-reward], verify_sample: 24, shard_size: 6, batch_size: 4}\n")
    cfg = cs.load_config(params)
    run = cs.Run.from_config(cfg)
    assert main(["--params", str(params), "--sample"]) == 0
    st = scores_step(run, cfg, "tiny-reward", sample=True)
    single = pd.read_parquet(st.dir / "scores.parquet")
    assert len(single) == 24 and single["score"].notna().all()
    shutil.rmtree(run.dir / "scores")
    shutil.rmtree(run.dir / "cache" / "rewards")
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "crowdselect_lib.scoring", "--params",
                           str(params), "--sample"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[0/2]" in proc.stderr and "[1/2]" in proc.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(st.dir / "scores.parquet"), single, rtol=1e-5)
