"""Your own crowd (issue 22): the local format (`zoo.local`), its errors, and `python -m crowdselect_lib select`."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from crowdselect_lib.__main__ import main
from crowdselect_lib.metrics import family_table
from crowdselect_lib.runs.step import STEP_LOG
from crowdselect_lib.zoo import ZooError, load_zoo

MODELS = "model,family,size_b\nm-small,fam,1\nm-big,fam,7\nsolo,other,3\n"
ROWS = [{"instruction": q, "model": m, "response": f"{m} on {q}", "rm": s}
        for q, scores in (("Name a prime.", (1.0, 2.0, 0.5)), ("Say hi.", (3.0, 1.0, 2.0)),
                          ("Add 2 and 2.", (0.0, 4.0, 1.0)))
        for m, s in zip(("m-small", "m-big", "solo"), scores)]


def write_crowd(d, rows=ROWS, fmt="jsonl", shards=1, models=MODELS):
    d.mkdir(parents=True, exist_ok=True)
    (d / "models.csv").write_text(models)
    df = pd.DataFrame(rows)
    step = -(-len(df) // shards)
    for i in range(shards):
        part, p = df.iloc[i * step:(i + 1) * step], d / "shards" / f"part-{i}.{fmt}"
        p.parent.mkdir(exist_ok=True)
        if fmt == "jsonl":
            p.write_text("".join(json.dumps(r) + "\n" for r in part.to_dict("records")))
        elif fmt == "csv":
            part.to_csv(p, index=False)
        else:
            part.to_parquet(p, index=False)
    return d


@pytest.mark.parametrize("fmt,shards", [("jsonl", 1), ("csv", 2), ("parquet", 3)])
def test_local_crowd_reads_every_format_and_makes_stable_uuids(tmp_path, fmt, shards):
    zoo = load_zoo("local", write_crowd(tmp_path / "c", fmt=fmt, shards=shards))
    assert zoo.source == "local" and zoo.reward_models == ["rm"] and zoo.model_names == ["m-small", "m-big", "solo"]
    uuid = hashlib.sha1(b"Name a prime.").hexdigest()[:16]
    s = zoo.scores("rm")
    assert s.loc[uuid].tolist() == [1.0, 2.0, 0.5] and s.shape == (3, 3)
    fam = family_table(zoo)                                          # one size: reported, not an error
    assert fam.loc["other", "why"] == "one known size only" and bool(fam.loc["fam", "in_stability"])


def test_local_crowd_keeps_given_uuids_and_counts_drops(tmp_path):
    rows = [dict(r, uuid=f"u{i // 3}") for i, r in enumerate(ROWS)]
    rows[4]["rm"] = None                                             # u1 has a NaN score: incomplete
    zoo = load_zoo("local", write_crowd(tmp_path / "c", rows), drop_incomplete=True)
    assert sorted(zoo.responses["uuid"].unique()) == ["u0", "u2"] and zoo.info["dropped_incomplete"] == 1


@pytest.mark.parametrize("case,message,streamed", [
    ("model missing", r"models.csv lacks 1 model\(s\) of the crowd: \['solo'\]", None),
    ("text score", r"1 non-numeric score\(s\) in column 'rm', e.g. 'high'", r"non-numeric score in column 'rm' of "),
    ("cut jsonl", r"part-0.jsonl: line 9 is not valid JSON .*half-written", None),
    ("cut parquet", r"part-0.parquet is not a readable parquet file \(half written\?\)", None),
    ("cut csv", r"part-0.csv: the last row is cut short", None),
    ("no score", r"has no score column", r"unknown reward model 'rm'; this crowd has \[\]"),
    ("shards differ", r"every shard needs the same columns", None),
])
def test_local_crowd_bad_input_is_a_named_error(tmp_path, case, message, streamed):
    """The same bad crowd gives a named error in memory (`load_zoo`) and streamed (`ScoreStream`, `select --stream`)."""
    from crowdselect_lib.zoo import ScoreStream

    d, rows, models, fmt, shards = tmp_path / "c", [dict(r) for r in ROWS], MODELS, "jsonl", 1
    if case == "model missing":
        models = MODELS.replace("solo,other,3\n", "")
    elif case == "text score":
        rows[2]["rm"] = "high"
    elif case == "no score":
        rows = [{k: v for k, v in r.items() if k != "rm"} for r in rows]
    elif case == "shards differ":
        fmt, shards = "csv", 2
    elif case in ("cut parquet", "cut csv"):
        fmt = case.split()[1]
    write_crowd(d, rows, fmt=fmt, shards=shards, models=models)
    if case == "shards differ":
        p = d / "shards" / "part-1.csv"
        pd.read_csv(p).rename(columns={"rm": "rm2"}).to_csv(p, index=False)
    if case.startswith("cut"):
        p = d / "shards" / f"part-0.{fmt}"
        p.write_bytes(p.read_bytes()[:-7])
    with pytest.raises(ZooError, match=message):
        load_zoo("local", d)
    with pytest.raises(ZooError, match=streamed or message):
        list(ScoreStream(d, "rm"))


@pytest.fixture(scope="module")
def alpacaeval_crowd(tmp_path_factory, shared_data):
    """The AlpacaEval crowd converted to the local format (answers.parquet + models.csv); its first 150
    instructions, so that embedding them for the clusters stays cheap."""
    src, d = shared_data / "alpacaeval_zoo", tmp_path_factory.mktemp("alpacaeval_local")
    resp = pd.read_parquet(src / "responses.parquet")
    resp = resp[resp["instruction"].isin(resp["instruction"].unique()[:150])]
    resp.rename(columns={"output": "response", "preference": "gpt4_preference"}).to_parquet(d / "answers.parquet")
    shutil.copy(src / "models.csv", d / "models.csv")
    return d


def test_select_writes_50_chat_rows_and_a_second_call_reuses_everything(alpacaeval_crowd, tmp_path, capsys):
    out, run = tmp_path / "subset.jsonl", tmp_path / "run"
    args = ["select", "--zoo", str(alpacaeval_crowd), "--k", "50", "--out", str(out), "--run", str(run)]
    assert main(args) == 0, capsys.readouterr().err
    first = capsys.readouterr().out
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 50 and all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)
    assert "4 computed, 0 reused (-)" in first
    assert "crowd: 147 instructions x 56 models" in first and "3 instruction(s) dropped" in first
    assert "chose 50 of 147" in first and "equal quotas per cluster" in first
    assert sum(int(line.split()[3]) for line in first.splitlines() if line[:7].strip().isdigit()) == 50
    assert "Stability (eq. 5) averages over 6 families" in first
    assert "outside Stability (one known size only): 28 families, alpaca," in first
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "computing" not in second, second
    assert "0 computed, 3 reused (metrics/gpt4_preference, selections/crowdselect, zoo/local)" in second
    assert [json.loads(x) for x in out.read_text().splitlines()] == rows


def test_select_stream_writes_the_same_file_without_loading_the_crowd(alpacaeval_crowd, tmp_path, capsys,
                                                                     monkeypatch):
    """`select --stream` (metrics by record batches, answers read back for the picked uuids only) writes the in-memory
    command's file byte for byte: the real crowd in three shards cut inside instructions, read 500 rows at a time,
    with its dropped instructions and 10 clusters over the official pooling (the zoo's instruction order)."""
    from crowdselect_lib.selection import stream

    answers = pd.read_parquet(alpacaeval_crowd / "answers.parquet")
    shards = tmp_path / "shards"
    for i, part in enumerate(np.array_split(np.arange(len(answers)), 3)):     # cuts fall inside instructions
        (shards / f"part-{i}").mkdir(parents=True)
        answers.iloc[part].to_parquet(shards / f"part-{i}" / "answers.parquet", row_group_size=300)
    shutil.copy(alpacaeval_crowd / "models.csv", shards / "models.csv")
    monkeypatch.setattr(stream, "BATCH_ROWS", 500)
    outs = {}
    for mode in ("memory", "stream"):
        out = tmp_path / f"{mode}.jsonl"
        args = ["select", "--zoo", str(shards), "--k", "30", "--out", str(out), "--run", str(tmp_path / mode)]
        assert main(args + ["--stream"] * (mode == "stream")) == 0, capsys.readouterr().err
        outs[mode] = (out.read_bytes(), capsys.readouterr().out)
    assert outs["stream"][0] == outs["memory"][0] and outs["memory"][0].count(b"\n") == 30
    said = outs["stream"][1]
    assert "3 computed, 0 reused (-)" in said and "zoo/local" not in said      # metrics, clusters, subset; no zoo
    assert "crowd: 147 instructions x 56 models" in said and "3 instruction(s) dropped" in said
    def explanation(text):                                   # from "crowd: ..." to the last metric line
        return text[text.index("crowd: "):text.index("wrote ")]

    assert explanation(said) == explanation(outs["memory"][1])
    monkeypatch.setattr(stream, "read_rows", lambda *a, **k: pytest.fail("a reused subset reads the crowd again"))
    assert main(args + ["--stream"]) == 0
    again = capsys.readouterr().out
    assert "0 computed, 2 reused" in again and explanation(again) == explanation(said)      # metrics, subset


def test_select_stream_follows_k_and_going_back_serves_the_old_subset_again(tmp_path, capsys):
    """Under one run name: k 30 -> 31 recomputes only the subset; back to 30 recomputes nothing, and `latest/`,
    ``dataset_info.json`` and the written file serve the k = 30 subset again."""
    zoo = load_zoo("demo", n_instructions=300, seed=0)
    crowd = tmp_path / "crowd"
    crowd.mkdir()
    zoo.responses.to_parquet(crowd / "answers.parquet", index=False)
    zoo.models.to_csv(crowd / "models.csv", index=False)
    run, said, outs = tmp_path / "run", [], []
    for i, k in enumerate([30, 31, 30]):
        outs.append(tmp_path / f"out{i}.jsonl")
        args = ["select", "--zoo", str(crowd), "--k", str(k), "--out", str(outs[-1]), "--run", str(run),
                "--clusters", "1", "--stream"]
        assert main(args) == 0, capsys.readouterr().err
        said.append(capsys.readouterr().out)
        step = (run / "stream" / "selection-crowdselect" / "latest").resolve()
        info = json.loads((run / "dataset_info.json").read_text())["crowdselect"]["file_name"]
        assert (run / info).resolve() == step / "crowdselect.json"
        assert len(outs[-1].read_text().splitlines()) == k
        if i == 0:
            first = step
    assert "2 computed, 0 reused" in said[0] and "1 computed, 1 reused" in said[1] and "0 computed, 2 reused" in said[2]
    assert step == first and outs[2].read_bytes() == outs[0].read_bytes()


def test_select_formats_and_plain_top_k(alpacaeval_crowd, tmp_path, capsys):
    out = tmp_path / "sub.json"
    assert main(["select", "--zoo", str(alpacaeval_crowd), "--k", "5", "--out", str(out), "--run",
                 str(tmp_path / "run"), "--clusters", "1", "--weights", "1,0,0", "--format", "llamafactory"]) == 0
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert len(rows) == 5 and set(rows[0]) == {"instruction", "input", "output"} and info["sub"]["file_name"] == "sub.json"
    assert "top-k, no clustering" in text


@pytest.mark.parametrize("extra,message", [
    (["--weights", "1,x,2"], "error: --weights '1,x,2' is not a comma-separated list of numbers"),
    (["--reward-model", "nope"], "error: --reward-model 'nope' is not a score column of the crowd; it has ['rm']"),
    (["--k", "99"], "error: asked for k=99 rows but only 3 exist"),
])
def test_select_bad_input_is_one_line(tmp_path, capsys, extra, message):
    d = write_crowd(tmp_path / "c")
    args = ["select", "--zoo", str(d), "--k", "2", "--out", str(tmp_path / "o.jsonl"), "--run", str(tmp_path / "r"),
            "--clusters", "1", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip() == message and err.count("\n") == 1


def test_build_a_crowd_from_instructions_then_select(tmp_path, capsys):
    """30 instructions x 3 local models (SmolLM2-135M and two tiny random Llamas) x the tiny reward model, offline,
    then `select`; a second build reuses the answers and the scores (no model is called)."""
    import crowdselect_lib as cs
    from crowdselect_lib.models import tiny_llama_path

    cfg = cs.load_config(None, {"run.root": str(tmp_path), "run.name": "build", "llm.backend": "local",
                                "llm.local_batch_size": 32, "scoring.reward_models": ["tiny-reward"]})
    run = cs.Run.from_config(cfg)
    instructions = [f"Give one tip about topic number {i}." for i in range(30)]
    models = [{"model": "smollm2-135m", "family": "smollm2", "size_b": 0.135, "source": "smollm2-135m-instruct"},
              {"model": "tiny-2x64", "family": "tiny", "size_b": 0.0003, "source": "tiny-llama"},
              {"model": "tiny-4x64", "family": "tiny", "size_b": 0.0005, "source": str(tiny_llama_path(layers=4))}]
    answers = cs.zoo.generate_answers(run, instructions, models, cfg.llm, max_new_tokens=4, temperature=1.0)
    assert answers.shape[0] == 90 and answers["response"].notna().all()
    assert answers.groupby("model")["uuid"].nunique().tolist() == [30, 30, 30]
    key = cs.zoo.answers_step(run, cs.zoo.instruction_table(instructions), cs.zoo.crowd_models(models), cfg.llm,
                              cs.llm.GenerationSettings(temperature=1.0, max_new_tokens=4)).key
    assert answers.attrs["key"] == key
    crowd = cs.scoring.score_crowd(run, cfg, answers)
    assert crowd["tiny-reward"].notna().all() and crowd["tiny-reward"].nunique() > 30
    folder = cs.zoo.write_crowd(tmp_path / "crowd", crowd, cs.zoo.crowd_models(models))
    capsys.readouterr()
    again = cs.zoo.generate_answers(run, instructions, models, cfg.llm, max_new_tokens=4, temperature=1.0)
    assert again.equals(answers) and cs.scoring.score_crowd(run, cfg, again).equals(crowd)
    assert [(status, label) for status, label, _ in STEP_LOG[-2:]] == [("reused", "crowd/answers"),
                                                                       ("reused", "crowd/scored")]
    assert "computing" not in capsys.readouterr().out
    out = tmp_path / "subset.jsonl"
    assert main(["select", "--zoo", str(folder), "--k", "10", "--out", str(out), "--run", str(tmp_path / "sel"),
                 "--clusters", "1"]) == 0
    printed = capsys.readouterr().out
    assert "crowd: 30 instructions x 3 models, reward model 'tiny-reward'" in printed
    assert "Stability (eq. 5) averages over 1 family: ['tiny']" in printed
    assert "outside Stability (one known size only): 1 family, smollm2" in printed
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 10 and rows[0]["messages"][0]["content"] in instructions


def test_a_crowd_in_shards_is_streamed_for_the_metrics_by_row_groups(tmp_path):
    """Metrics from Arrow record batches equal the in-memory ones exactly; the buffer holds one batch plus open
    instructions; an instruction with a NaN score is dropped and counted."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from crowdselect_lib.metrics import base_metrics, streamed_metrics
    from crowdselect_lib.zoo import ScoreStream

    zoo = load_zoo("demo", n_instructions=1000, seed=3)
    rm = zoo.default_reward_model
    long = zoo.responses.sort_values(["uuid", "model"], kind="stable")[["uuid", "instruction", "model", "response", rm]]
    long.loc[long.index[5], rm] = np.nan                                      # one incomplete instruction
    d = tmp_path / "crowd"
    for i, a in enumerate(range(0, len(long), 5000)):                         # 4 files, shard edges inside instructions
        (d / f"shard-{i // 2}").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(long.iloc[a:a + 5000], preserve_index=False),
                       d / f"shard-{i // 2}" / f"part-{i}.parquet", row_group_size=700)
    zoo.models.to_csv(d / "models.csv", index=False)
    with pytest.raises(ZooError, match="1 instruction\\(s\\) lack some model's answer or score"):
        list(ScoreStream(d, rm, batch_rows=1000))
    stream = ScoreStream(d, rm, batch_rows=1000, drop_incomplete=True)
    assert stream.families() == zoo.families()                                # read from models.csv alone
    got = streamed_metrics(stream, stream.families())
    full = zoo.scores(rm).drop(index=long["uuid"].iloc[5])
    want = base_metrics(full, zoo.families())
    assert got.index.sort_values().equals(want.index.sort_values())
    assert np.array_equal(got.loc[want.index].to_numpy(), want.to_numpy())   # bit for bit
    assert stream.stats == {"rows": len(long), "instructions": 999, "dropped_incomplete": 1,
                            "max_buffered_rows": stream.stats["max_buffered_rows"],
                            "dropped_reasons": {"no_answer": 0, "nan_score": 1, "missing_rows": 0}}
    assert stream.stats["max_buffered_rows"] < 1000 + 19


@pytest.mark.parametrize("fmt", ["parquet", "parquet-dictionary", "jsonl"])
def test_the_stream_drops_and_counts_exactly_what_validation_drops(tmp_path, fmt):
    """The stream's incomplete instructions are `validate`'s: a lone zero-width space, a BOM, a NUL or a tab is no
    answer (`zoo.model.BLANK_CHARS`; AlpacaEval has eight zero-width answers), a NaN score for *any* scorer drops
    the instruction, a missing row too, and a models.csv model without a single row leaves the crowd."""
    from crowdselect_lib.metrics import base_metrics, streamed_metrics
    from crowdselect_lib.zoo import ScoreStream

    zoo = load_zoo("demo", n_instructions=100, seed=4)
    rm, other = zoo.reward_models[0], zoo.reward_models[1]
    long = zoo.responses.copy()
    blanks = {3: "\u200b", 40: "\ufeff", 77: "\x00", 120: " \t ", 200: "\u200b ok"}       # the last one is text
    for row, text in blanks.items():
        long.loc[long.index[row], "response"] = text
    long.loc[long.index[300], other] = np.nan                                 # another scorer's NaN
    long = long.drop(index=long.index[500])                                   # a missing row
    d = tmp_path / "crowd"
    d.mkdir()
    if fmt == "parquet":
        long.to_parquet(d / "answers.parquet", index=False)
    elif fmt == "parquet-dictionary":         # pandas categoricals: dictionary-encoded text columns
        long.astype({c: "category" for c in ("uuid", "instruction", "model", "response")}).to_parquet(
            d / "answers.parquet", index=False)
    else:
        long.to_json(d / "answers.jsonl", orient="records", lines=True)
    extra = pd.DataFrame({"model": ["never-answered"], "family": ["qwen2.5"], "size_b": [0.5]})
    pd.concat([zoo.models, extra]).to_csv(d / "models.csv", index=False)
    kept = load_zoo("local", d, drop_incomplete=True)
    stream = ScoreStream(d, rm, batch_rows=300, drop_incomplete=True)
    got = streamed_metrics(stream, stream.families())
    assert stream.stats["dropped_incomplete"] == kept.info["dropped_incomplete"] == 6
    assert stream.stats["dropped_reasons"] == kept.info["dropped_reasons"] == {"no_answer": 4, "nan_score": 1,
                                                                               "missing_rows": 1}
    want = base_metrics(kept.scores(rm), kept.families())
    assert np.array_equal(got.loc[want.index].to_numpy(), want.to_numpy()) and len(got) == len(want) == 94
    assert stream.instructions()["uuid"].tolist() == kept.instructions()["uuid"].tolist()    # the zoo's order


def test_preflight_checks_a_local_crowd_folder(tmp_path):
    import crowdselect_lib as cs
    from crowdselect_lib.preflight.data import check_zoo_dir

    d = write_crowd(tmp_path / "c", fmt="csv", shards=2)
    check, size = check_zoo_dir(cs.load_config(None, {"zoo.source": "local", "zoo.data_dir": str(d)}))
    assert check.status == "OK" and size == (3, 3) and "scores ['rm']" in check.detail
    (d / "models.csv").unlink()
    check, size = check_zoo_dir(cs.load_config(None, {"zoo.source": "local", "zoo.data_dir": str(d)}))
    assert check.status == "FAIL" and "models.csv is missing" in check.detail and size is None


@pytest.mark.parametrize("direction", ["top", "bottom"])
def test_rank_order_equals_the_full_lexsort_on_heavy_ties(direction):
    """The scale fix sorts uuids only inside runs of tied scores; the order is the full (score, uuid) lexsort."""
    import numpy as np

    from crowdselect_lib.selection import rank_order

    rng = np.random.default_rng(0)
    uuids = np.array([f"u{x:05d}" for x in rng.permutation(5000)], dtype=object)
    v = np.r_[rng.integers(0, 40, 4000) / 8, rng.random(999), -0.0] * (1 if direction == "top" else -1)
    v[:3] = 0.0
    score = pd.Series(v, index=uuids)
    by_uuid = np.argsort(np.argsort(uuids))
    want = np.lexsort((by_uuid, -v if direction == "top" else v))
    assert np.array_equal(rank_order(score, direction), want)
    ints = pd.Series(v, index=rng.permutation(5000))
    assert np.array_equal(rank_order(ints, direction),
                          np.lexsort((ints.index.to_numpy(), -v if direction == "top" else v)))


def test_a_crowd_from_openai_compatible_endpoints_is_cost_gated_and_resumes(tmp_path, monkeypatch):
    """Two endpoint models (a vLLM server is one): the gate counts uncached requests before any call; a refused
    request is a None answer with its error; a second build sends nothing."""
    from fake_openai import FakeOpenAI

    import crowdselect_lib as cs

    monkeypatch.setenv("CROWD_TEST_KEY", "sk-test")
    cfg = cs.load_config(None, {"run.root": str(tmp_path), "run.name": "api", "llm.max_retries": 0,
                                "llm.api_key_env": "CROWD_TEST_KEY"})
    run = cs.Run.from_config(cfg)
    questions = ["Say a.", "Say b.", "Say c."]
    with FakeOpenAI(replies=lambda body: body["messages"][-1]["content"].upper(),
                    faults=lambda n, body: 400 if body["messages"][-1]["content"] == "Say c." and
                    body["model"] == "big" else None) as srv:
        models = [{"model": m, "family": "fam", "size_b": s, "backend": "openai", "base_url": srv.base_url,
                   "source": m} for m, s in (("small", 1), ("big", 7))]
        with pytest.raises(cs.zoo.CostNotConfirmed, match="would send 6 requests to paid endpoints"):
            cs.zoo.generate_answers(run, questions, models, cfg.llm, max_calls_without_confirm=5)
        assert srv.count == 0
        answers = cs.zoo.generate_answers(run, questions, models, cfg.llm, max_calls_without_confirm=6)
        sent = srv.count
        assert answers["response"].tolist()[:5] == ["SAY A.", "SAY B.", "SAY C.", "SAY A.", "SAY B."]
        assert answers["response"].isna().tolist() == answers["error"].notna().tolist() == [False] * 5 + [True]
        again = cs.zoo.generate_answers(run, questions, models, cfg.llm, max_calls_without_confirm=0)
        assert again.equals(answers) and srv.count == sent
