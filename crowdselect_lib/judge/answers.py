"""Student answers to the benchmark prompts (paper §4.1): which systems are judged, and what each one answers.

Systems (`systems_table`): the trained students of the training stage (`training.trained_systems`: one per
subset, student, method and seed), the untouched base students (system ``base-<student>``) and the Arena-Hard
anchor (`judge.anchor`: a system name, or an untouched model that is set up as a system of its own).

Answers (`answers_step`, `run_answers`): keyed by the trained model's own key (or the base model's name) and the
generation settings, so one model's answers are shared by every table cell that asks for them.
- MT-Bench: two turns, the second after the student's own first answer; FastChat's temperatures per category
  (0.7 writing/roleplay, 0.1 stem/humanities, 0 otherwise; 0.7 for an unknown one); `judge.mt_bench_max_new_tokens`
  (paper 1024) per turn.
- Arena-Hard: one turn, greedy (arena-hard-auto), up to `judge.arena_hard_max_new_tokens` (paper 4096).
The model's own top_p is left alone. A trained student's sampling seed is its training seed; a base student's
is `run.seed`. Students run in-process (transformers, batched) or on OpenAI-compatible servers
(`judge.student_backend: openai`): one server per system (`judge.student_endpoints`) or one vLLM server with
every LoRA adapter of a base (model name = adapter name = `served_name`). A prompt a server refuses (HTTP 400:
longer than its context) is a counted, recorded unanswered question, not an abort; an answer that used every
new token has finish_reason ``length``.

Answer rows: ``question_id, category, turns, finish_reasons, n_tokens, served_model, error``.
"""
from __future__ import annotations

import contextlib
import functools
import json
import re
from pathlib import Path

import pandas as pd

from .. import training
from ..config import LLMConfig
from ..llm import GenerationSettings, make_llm
from ..models import load_causal_lm
from ..runs import Progress, append_jsonl, read_jsonl, write_parquet
from .benchmarks import benchmark_identity, benchmarks_for

MT_BENCH_TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                         "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}
DEFAULT_TEMPERATURE = 0.7          # FastChat's temperature for a category it does not list
SAMPLE_CONVERSATION = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "2 + 2 = 4."}]
TEMPLATE_SAMPLE_FILE = training.TEMPLATE_SAMPLE_FILE   # {"messages": [...], "rendered": "..."} saved at training
SYSTEM_COLUMNS = ["system", "subset", "student", "method", "seed", "key", "path", "kind"]
ANSWER_COLUMNS = ["question_id", "category", "turns", "finish_reasons", "n_tokens", "served_model", "error"]


class StudentError(ValueError):
    """A student cannot answer (not trained yet, no usable chat template, unknown system)."""


def step_name(system: str, benchmark: str) -> str:
    """A plain folder name for (benchmark, system)."""
    return f"{benchmark}.{re.sub(r'[^A-Za-z0-9._+=-]+', '-', system).strip('-')}"


def base_system(model: str) -> str:
    """System name of an untouched model: ``base-<last path part>``."""
    return "base-" + Path(model.rstrip("/")).name


_PASS_MEMO: dict | None = None     # systems tables of the judging pass in progress, by (run folder, config)


@contextlib.contextmanager
def judging_pass():
    """Inside, `systems_table` is derived once per (run, config). Each answers or judgments step looks its system
    up, and each lookup derives every training's key, so a pass over every system x benchmark was quadratic in the
    number of trainings. No training finishes inside a judging pass, so the table cannot change during one."""
    global _PASS_MEMO
    outer = _PASS_MEMO is not None
    if not outer:
        _PASS_MEMO = {}
    try:
        yield
    finally:
        if not outer:
            _PASS_MEMO = None


def in_judging_pass(fn):
    """Run `fn` inside `judging_pass` (a decorator for the stage's entry points)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with judging_pass():
            return fn(*args, **kwargs)
    return wrapper


def systems_table(run, cfg) -> pd.DataFrame:
    """The systems to judge (columns `SYSTEM_COLUMNS`; kind 'base' | 'trained' | 'anchor'), base students first.
    `judge.systems` keeps only the named ones (the anchor always stays). Derived once per `judging_pass`."""
    memo = _PASS_MEMO
    if memo is None:
        return _systems_table(run, cfg)
    at = (str(run.dir), id(cfg))
    if at not in memo:
        memo[at] = (cfg, _systems_table(run, cfg))        # cfg held, so its id is not reused during the pass
    return memo[at][1].copy()


def _systems_table(run, cfg) -> pd.DataFrame:
    rows = [{"system": base_system(s), "subset": "base", "student": s, "method": "", "seed": None, "key": None,
             "path": None, "kind": "base"} for s in training.students(cfg)]
    trained = training.trained_systems(run, cfg)
    rows += [{**r, "kind": "trained"} for r in trained[SYSTEM_COLUMNS[:-1]].to_dict("records")]
    names = [r["system"] for r in rows]
    anchor = anchor_system(cfg, names)
    if anchor not in names:
        rows.append({"system": anchor, "subset": "base", "student": cfg.judge.anchor, "method": "", "seed": None,
                     "key": None, "path": None, "kind": "anchor"})
    df = pd.DataFrame(rows, columns=SYSTEM_COLUMNS)
    if df["system"].duplicated().any():
        raise StudentError(f"duplicated system names {df.loc[df['system'].duplicated(), 'system'].tolist()}")
    if cfg.judge.systems is not None:
        unknown = sorted(set(cfg.judge.systems) - set(df["system"]))
        if unknown:
            raise StudentError(f"judge.systems names unknown system(s) {unknown} (known: {df['system'].tolist()})")
        df = df[df["system"].isin(set(cfg.judge.systems) | {anchor})]
    return df.reset_index(drop=True)


def anchor_system(cfg, names: list[str]) -> str:
    """The Arena-Hard anchor's system name: `judge.anchor` if it names a system, else the untouched model it names."""
    a = cfg.judge.anchor
    return a if a in names else base_system(a)


def system_row(run, cfg, system: str) -> dict:
    table = systems_table(run, cfg)
    hit = table[table["system"] == system]
    if hit.empty:
        raise StudentError(f"unknown system {system!r} (known: {table['system'].tolist()})")
    return hit.iloc[0].to_dict()


def served_name(cfg, row: dict) -> str:
    """Model name a student server answers to: `judge.student_served_names`, else the base model's id, else the
    system name (the LoRA adapter name in ``vllm serve <base> --enable-lora --lora-modules <system>=<path>``)."""
    return cfg.judge.student_served_names.get(row["system"]) or (row["student"] if row["kind"] != "trained"
                                                                  else row["system"])


def student_config(cfg, row: dict) -> LLMConfig:
    """The `LLMConfig` that answers as this student (retry settings from `llm:`)."""
    j, llm = cfg.judge, cfg.llm
    if j.student_backend == "openai":
        return LLMConfig(backend="openai", model=served_name(cfg, row),
                         base_url=j.student_endpoints.get(row["system"], j.student_base_url),
                         api_key_env=j.student_api_key_env, max_concurrency=j.student_max_concurrency,
                         max_retries=llm.max_retries,
                         backoff_s=llm.backoff_s, backoff_max_s=llm.backoff_max_s, timeout_s=llm.timeout_s)
    model = row["student"] if row["kind"] != "trained" else f"trained:{row['key']}"
    return LLMConfig(backend="local", model=model, local_batch_size=j.batch_size, device=j.student_device)


def generation_settings(cfg, row: dict, benchmark: str) -> dict:
    """The generation settings of one system's answers (part of the answers key)."""
    j = cfg.judge
    seed = int(row["seed"]) if row["kind"] == "trained" and pd.notna(row["seed"]) else cfg.run.seed
    temps = ({"by_category": MT_BENCH_TEMPERATURES, "default": DEFAULT_TEMPERATURE} if benchmark == "mt_bench"
             else {"by_category": {}, "default": 0.0})
    tokens = j.mt_bench_max_new_tokens if benchmark == "mt_bench" else j.arena_hard_max_new_tokens
    endpoint = student_config(cfg, row)
    return {"max_new_tokens": tokens, "temperatures": temps, "seed": seed, "top_p": None,
            "backend": endpoint.backend, "base_url": endpoint.base_url, "served_name": endpoint.model}


@in_judging_pass
def answers_step(run, cfg, system: str, benchmark: str, benches: dict | None = None, log=print):
    """The keyed step of `system`'s answers to `benchmark` (pure: reads the config and the benchmark files)."""
    bench = benchmarks_for(run, cfg, benches)[benchmark]
    row = system_row(run, cfg, system)
    model = ({"trained": row["key"]} if row["kind"] == "trained" else {"model": row["student"]})
    pin = cfg.training.student_revisions.get(row["student"]) if row["kind"] != "trained" else None
    if pin:
        model["revision"] = pin
    inputs = ({"trained": training.train_step(run, cfg, row["subset"], row["student"], row["method"],
                                              int(row["seed"]))} if row["kind"] == "trained" else {})
    return run.step("answers", step_name(system, benchmark), version="1", code="crowdselect_lib.judge",
                    settings={"model": model, "benchmark": benchmark_identity(bench),
                              "generation": generation_settings(cfg, row, benchmark)}, inputs=inputs, log=log)


def _read(path: Path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    for c in ("turns", "finish_reasons", "n_tokens"):
        df[c] = df[c].map(list)                  # parquet gives arrays back
    return df


@in_judging_pass
def load_answers(run, cfg, system: str, benchmark: str, benches: dict | None = None) -> pd.DataFrame:
    """The finished answers of `system` to `benchmark`; raises `StudentError` naming the step when not done."""
    st = answers_step(run, cfg, system, benchmark, benches, log=None)
    if not st.done:
        raise StudentError(f"no answers of {system!r} to {benchmark} yet (step {st.label} {st.key}): run "
                           "cs.judge.run_answers / run_judging first")
    return _read(st.dir / "answers.parquet")


def check_chat_template(tok, system: str, folder: str | Path | None = None) -> str:
    """The tokenizer's chat template renders a sample conversation intact (and, if the model folder holds
    `TEMPLATE_SAMPLE_FILE` written at training time, exactly as then). Returns the rendered sample."""
    if not tok.chat_template:
        raise StudentError(f"student {system!r}: its tokenizer has no chat template")
    rendered = tok.apply_chat_template(SAMPLE_CONVERSATION, tokenize=False)
    u, a = (rendered.find(m["content"]) for m in SAMPLE_CONVERSATION)
    if u < 0 or a < u:
        raise StudentError(f"student {system!r}: its chat template drops or reorders messages: {rendered!r:.200}")
    for f in ([Path(folder) / TEMPLATE_SAMPLE_FILE, Path(folder) / "model" / TEMPLATE_SAMPLE_FILE] if folder else []):
        if f.exists():
            saved = json.loads(f.read_text(encoding="utf-8"))
            again = tok.apply_chat_template(saved["messages"], tokenize=False)
            if again != saved["rendered"]:
                raise StudentError(f"student {system!r}: the chat template renders {f.name}'s sample differently "
                                   f"than at training time:\n saved: {saved['rendered']!r:.200}\n now:   {again!r:.200}")
    return rendered


_CLIENTS: dict[tuple, object] = {}     # one loaded student per process answers every benchmark


def student_llm(run, cfg, row: dict):
    """The client answering as this student (its replies cached under ``<run>/cache/llm/students``); a local
    model is loaded once per process and shared by the benchmarks."""
    c = student_config(cfg, row)
    memo = (str(run.dir), row["system"], row["key"], repr(c))
    if memo in _CLIENTS:
        return _CLIENTS[memo]
    loader = None
    if c.backend == "local":
        def loader():
            if row["kind"] == "trained":
                tok, model = training.load_trained(row["path"], device=cfg.judge.student_device)
            else:
                tok, model = load_causal_lm(row["student"], device=cfg.judge.student_device,
                                            revision=cfg.training.student_revisions.get(row["student"]))
            check_chat_template(tok, row["system"], row["path"] if row["kind"] == "trained" else None)
            return tok, model
    _CLIENTS.clear()                     # keep at most one student model in memory
    _CLIENTS[memo] = make_llm(c, cache_dir=run.dir / "cache" / "llm" / "students", loader=loader)
    return _CLIENTS[memo]


def _generate(llm, questions: pd.DataFrame, gen: dict, progress: Progress) -> list[dict]:
    """Answer `questions` (all turns, turn t after the student's own earlier answers); one row per question."""
    temp = questions["category"].map(lambda c: gen["temperatures"]["by_category"].get(c, gen["temperatures"]["default"]))
    rows = [{"question_id": q, "category": c, "turns": [], "finish_reasons": [], "n_tokens": [], "served_model": None,
             "error": None} for q, c in zip(questions["question_id"], questions["category"])]
    turns = questions["turns"].tolist()
    for t in range(max(map(len, turns))):
        for value in sorted(set(temp)):
            idx = [i for i in range(len(rows)) if temp.iloc[i] == value and t < len(turns[i]) and rows[i]["error"] is None]
            convs = []
            for i in idx:
                conv = []
                for k in range(t + 1):
                    conv.append({"role": "user", "content": turns[i][k]})
                    if k < t:
                        conv.append({"role": "assistant", "content": rows[i]["turns"][k]})
                convs.append(conv)
            if not convs:
                continue
            settings = GenerationSettings(float(value), gen["max_new_tokens"], None, gen["seed"])
            for i, r in zip(idx, llm.complete(convs, settings, skip_rejected=True, progress=progress)):
                if r.error is not None:
                    rows[i]["error"] = f"turn {t + 1}: {r.error}"
                    continue
                rows[i]["turns"].append(r.text)
                rows[i]["finish_reasons"].append(r.meta.get("finish_reason"))
                rows[i]["n_tokens"].append(int((r.meta.get("usage") or {}).get("completion_tokens") or 0))
                rows[i]["served_model"] = r.meta.get("served_model")
    return rows


@in_judging_pass
def run_answers(run, cfg, system: str, benchmark: str, benches: dict | None = None,
                chunk: int | None = None) -> pd.DataFrame:
    """`system`'s answers to `benchmark` (columns `ANSWER_COLUMNS`): reused when the step is done, else generated
    in passes of `chunk` questions (default `judge.answer_chunk`; None = every question in one pass, so a server
    or batch never idles waiting for a chunk's longest answer), each pass appended to ``answers.jsonl`` in the step
    folder. A killed run resumes there, and every finished reply is in the reply cache as soon as it arrives."""
    chunk = chunk or cfg.judge.answer_chunk
    st = answers_step(run, cfg, system, benchmark, benches)
    if st.done:
        return _read(st.dir / "answers.parquet")
    row = system_row(run, cfg, system)
    if row["kind"] == "trained":
        if not training.train_step(run, cfg, row["subset"], row["student"], row["method"], int(row["seed"])).done:
            raise StudentError(f"system {system!r} is not trained yet (training step {row['key']}): run the training "
                               "stage first (cs.training), or leave it out with judge.systems")
    bench = benchmarks_for(run, cfg, benches)[benchmark]
    gen = generation_settings(cfg, row, benchmark)
    log_path = st.path("answers.jsonl")
    done = {r["question_id"] for r in read_jsonl(log_path, tolerate_torn=True)}
    todo = bench.questions[~bench.questions["question_id"].isin(done)]
    if len(todo):
        llm = student_llm(run, cfg, row)
        with Progress(int(todo["turns"].map(len).sum()), f"answers {system} / {benchmark}", "turn") as p:
            step = chunk or len(todo)
            for start in range(0, len(todo), step):
                append_jsonl(log_path, _generate(llm, todo.iloc[start:start + step], gen, p))
    ids = set(bench.questions["question_id"])
    rows = {r["question_id"]: r for r in read_jsonl(log_path, tolerate_torn=True) if r["question_id"] in ids}
    out = pd.DataFrame([rows[q] for q in bench.questions["question_id"]], columns=ANSWER_COLUMNS)
    write_parquet(out, st.path("answers.parquet"))
    st.finish(system=system, benchmark=benchmark, answered=int(out["error"].isna().sum()),
              unanswered=int(out["error"].notna().sum()),
              hit_token_limit=int(sum(f.count("length") for f in out["finish_reasons"])))
    return out


def serving_plan(run, cfg) -> pd.DataFrame:
    """vLLM commands that serve every system (``judge.student_backend: openai``): one server per base student with
    every LoRA adapter trained from it (model name = adapter name = system), and one server of its own for each
    fully fine-tuned system (put its URL in ``judge.student_endpoints``). Columns ``system, served_name, command``."""
    systems = systems_table(run, cfg)
    lora = (systems["kind"] == "trained") & systems["method"].str.contains("lora")
    rows = []
    for student, g in systems.groupby("student", sort=False):
        adapters = g[lora.loc[g.index]]
        cmd = f"vllm serve {student}"
        if len(adapters):
            cmd += (f" --enable-lora --max-lora-rank {cfg.training.lora_r} --lora-modules "
                    + " ".join(f"{s}={p}" for s, p in zip(adapters["system"], adapters["path"])))
        for r in g.to_dict("records"):
            own = r["kind"] == "trained" and not lora.loc[g.index][g["system"] == r["system"]].iloc[0]
            rows.append({"system": r["system"], "served_name": served_name(cfg, r),
                         "command": f"vllm serve {r['path']} --served-model-name {served_name(cfg, r)}" if own else cmd})
    return pd.DataFrame(rows, columns=["system", "served_name", "command"])


def stop_shares(answers: pd.DataFrame) -> pd.DataFrame:
    """Per system (rows of `run.run_all_answers`): answer ``turns``, how many ``stopped`` on the end-of-turn token
    (finish_reason ``stop``, not ``length``, the token limit) and their ``share``. Empty when no answer was made."""
    ends = answers[["system", "finish_reasons"]].explode("finish_reasons").dropna(subset=["finish_reasons"])
    out = ends.assign(stopped=ends["finish_reasons"] == "stop").groupby("system", sort=False).agg(
        turns=("stopped", "size"), stopped=("stopped", "sum"))
    return out.assign(share=out["stopped"] / out["turns"])


def stop_report(answers: pd.DataFrame) -> str:
    """`stop_shares` as text for a chapter, or why there is none (the held-out loss generates no answers)."""
    shares = stop_shares(answers)
    if shares.empty:
        return ("no answer turns here: the held-out loss (judge.judge: heldout_loss) scores the reference answers "
                "and generates none, so no turn can stop or run out")
    return ("share of answer turns that ended on the end-of-turn token (not the token limit), per system:\n"
            + shares.round(2).to_string())
