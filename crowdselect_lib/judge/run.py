"""Judging and the score table of paper §4.1, as keyed steps.

- `judgments_step(run, cfg, system, benchmark)`: keyed by the answers' key, the judge's identity (backend,
  base_url, model, extra request fields, `judge_revision`), the digest of the benchmark's judge prompts and the
  number of judge samples. Every judgment records who judged: the model the server says it served, its system
  fingerprint, the finish reason and a timestamp; each finished step appends one line to
  ``<run>/judge/judging_log.jsonl`` (never overwritten). Replies are cached per request (`llm` reply cache:
  answer content + judge identity + prompt + repetition), so a rerun or another cell pays nothing.
- "Each experiment was conducted 3 times" (§4.1) = three training seeds (`training.seeds`), each answered once
  and judged once; `judge.repetitions` > 1 adds independent judge samples (each its own request and cache key).
  `score_summary` reports mean, median and spread over seeds and samples.
- A failed judgment (MT-Bench: no rating or one outside 1-10; Arena-Hard: no verdict after
  ``number_of_judgment_attempts`` asks, contradictory verdicts, or a refused request) is counted and named in
  the log, never an abort.
- `judged_scores(run, cfg)`: the tidy table the reports read, one row per system, benchmark and judge sample.
  Arena-Hard scores are win rates against the anchor (paper: the untouched Llama-3.2-3B base for every student),
  judged once and shared by every cell.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import pandas as pd

from ..config import LLMConfig
from ..llm import make_llm
from ..runs import Progress, append_jsonl, read_jsonl, write_parquet
from .answers import (anchor_system, answers_step, in_judging_pass, load_answers, run_answers, step_name,
                      systems_table)
from .benchmarks import benchmarks_for
from .heldout import HELDOUT, heldout_mode, heldout_plan, run_all_heldout
from .prompts import attempts, judge_jobs, judge_settings, prompt_digest
from .proxy import ProxyJudge
from .scores import arena_hard_scores, mt_bench_score
from .verdicts import CONTINUE, ask_again, parse_rating, parse_verdict, verdict_labels

log = logging.getLogger("crowdselect")
KEEP = ("id", "question_id", "category", "turn", "game", "prompt_name")


class CostNotConfirmed(RuntimeError):
    """A paid judge run is larger than `judge.max_calls_without_confirm` and `judge.confirm_cost` is false."""


class JudgeNotRun(RuntimeError):
    """A score was asked for before its judgments exist."""


def judge_identity(cfg) -> dict:
    j = cfg.judge
    if heldout_mode(cfg):
        return {"backend": HELDOUT, "model": "reference answers", "max_length": j.heldout_max_length}
    if j.judge == "proxy":
        return {"backend": "proxy", "model": j.proxy_embedding}
    return {"backend": "openai", "base_url": (j.judge_base_url or "").rstrip("/"), "model": j.judge_model,
            "extra_body": j.judge_extra_body, "revision": j.judge_revision}


def make_judge(run, cfg):
    """The proxy judge, or the LLM judge (an OpenAI-compatible endpoint; retries and timeouts from `llm:`)."""
    j, llm = cfg.judge, cfg.llm
    if j.judge == "proxy":
        return ProxyJudge(j.proxy_embedding, cache_dir=run.dir / "cache" / "embeddings")
    c = LLMConfig(backend="openai", model=j.judge_model, base_url=j.judge_base_url, api_key_env=j.judge_api_key_env,
                  extra_body=j.judge_extra_body, max_concurrency=j.judge_max_concurrency, max_retries=llm.max_retries,
                  backoff_s=llm.backoff_s, backoff_max_s=llm.backoff_max_s, timeout_s=llm.timeout_s)
    return make_llm(c, cache_dir=run.dir / "cache" / "llm" / "judge")


def _baseline_reading(cfg, benchmark: str) -> bool:
    return benchmark == "arena_hard" and cfg.judge.anchor_reading == "baseline"


@in_judging_pass
def judged_benchmark(run, cfg, benchmark: str, benches: dict | None = None):
    """The benchmark as judged under `judge.anchor_reading`: "reanchor" (default) keeps the judge's baseline
    (gpt-4-0314 in v0.1); "baseline" makes the anchor system's answers the Arena-Hard baseline (its name too)."""
    bench = benchmarks_for(run, cfg, benches)[benchmark]
    if not _baseline_reading(cfg, benchmark):
        return bench
    anchor = anchor_system(cfg, systems_table(run, cfg)["system"].tolist())
    ans = load_answers(run, cfg, anchor, benchmark, benches)
    ok = ans[ans["error"].isna()]
    return dataclasses.replace(bench, baseline=anchor,
                               references={q: [t[0]] for q, t in zip(ok["question_id"], ok["turns"])})


def _jobs(run, cfg, system: str, benchmark: str, benches: dict | None = None) -> list[dict]:
    """The judge requests of `system` (none for the anchor when it is the judge's baseline)."""
    bench = judged_benchmark(run, cfg, benchmark, benches)
    if _baseline_reading(cfg, benchmark) and system == bench.baseline:
        return []
    answers = load_answers(run, cfg, system, benchmark, benches)
    answers = answers[answers["error"].isna() & answers["question_id"].isin(list(bench.references))] \
        if benchmark == "arena_hard" else answers[answers["error"].isna()]
    return judge_jobs(bench, answers, system)


@in_judging_pass
def judgments_step(run, cfg, system: str, benchmark: str, benches: dict | None = None, log=print):
    bench = benchmarks_for(run, cfg, benches)[benchmark]
    ans = answers_step(run, cfg, system, benchmark, benches, log=None)
    inputs = {"answers": ans}
    if _baseline_reading(cfg, benchmark):     # judged against the anchor's answers: an input too
        anchor = anchor_system(cfg, systems_table(run, cfg)["system"].tolist())
        inputs["baseline_answers"] = answers_step(run, cfg, anchor, benchmark, benches, log=None)
    return run.step("judgments", step_name(system, benchmark), version="1", inputs=inputs,
                    code="crowdselect_lib.judge",
                    settings={"judge": judge_identity(cfg), "prompts": prompt_digest(bench),
                              "repetitions": cfg.judge.repetitions}, log=log)


def _ask(judge, jobs: list[dict], bench, rep: int, progress) -> list[dict]:
    """Judge replies of `jobs` for judge sample `rep`: ``text, meta, error, attempts`` each; an Arena-Hard reply
    without any verdict label is asked to finish (arena-hard-auto's second attempt)."""
    if isinstance(judge, ProxyJudge):
        now = time.time()
        texts = judge.judge_jobs(jobs)
        progress.update(len(jobs))
        return [{"text": t, "meta": {"served_model": judge.name, "finish_reason": "stop", "created": now},
                 "error": None, "attempts": 1} for t in texts]
    if any(j["messages"] is None for j in jobs):
        raise ValueError(f"{bench.label}: no judge prompts (offline stand-in), so only the proxy judge can grade it; "
                         "set judge.data_dir to the real benchmark files for an LLM judge")
    settings, pattern = judge_settings(bench), bench.judge.get("regex_pattern")
    out = [{"text": r.text, "last": r.text, "meta": r.meta, "error": r.error, "attempts": 1}
           for r in judge.complete([j["messages"] for j in jobs], settings, repetition=rep, skip_rejected=True,
                                   progress=progress)]
    convs = [list(j["messages"]) for j in jobs]
    for _ in range(1, attempts(bench)):
        again = [i for i, o in enumerate(out) if o["text"] is not None and ask_again(o["text"], pattern)]
        if not again:
            break
        for i in again:
            convs[i] += [{"role": "assistant", "content": out[i]["last"]}, {"role": "user", "content": CONTINUE}]
        for i, r in zip(again, judge.complete([convs[i] for i in again], settings, repetition=rep, skip_rejected=True)):
            out[i]["attempts"] += 1
            if r.text is not None:
                out[i].update(text=out[i]["text"] + "\n" + r.text, last=r.text, meta=r.meta)
    return out


def _failure(bench, text: str | None, error: str | None) -> str | None:
    if text is None:
        return f"request refused: {error}"
    if bench.name == "mt_bench":
        return None if parse_rating(text) is not None else "no rating in 1-10"
    labels = verdict_labels(text, bench.judge["regex_pattern"])
    if parse_verdict(text, bench.judge["regex_pattern"]) is not None:
        return None
    return "no verdict label" if not labels else f"contradictory or unknown verdicts {sorted(labels)}"


def _records(judge, jobs, bench, rep: int, progress) -> list[dict]:
    rows = []
    for j, o in zip(jobs, _ask(judge, jobs, bench, rep, progress)):
        text, meta = o["text"], o["meta"] or {}
        rows.append({**{k: j[k] for k in KEEP if k in j}, "repetition": rep, "reply": text,
                     "score": parse_rating(text) if text is not None and bench.name == "mt_bench" else None,
                     "verdict": parse_verdict(text, bench.judge["regex_pattern"])
                     if text is not None and bench.name == "arena_hard" else None,
                     "failure": _failure(bench, text, o["error"]), "attempts": o["attempts"],
                     "served_model": meta.get("served_model"), "system_fingerprint": meta.get("system_fingerprint"),
                     "finish_reason": meta.get("finish_reason"),
                     "judged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(meta.get("created") or time.time()))})
    return rows


@in_judging_pass
def run_judgments(run, cfg, system: str, benchmark: str, benches: dict | None = None, judge=None) -> pd.DataFrame:
    """`system`'s judgments on `benchmark`, one row per (judge request, sample): reused when the step is done,
    else judged (resumable: ``judgments.jsonl`` in the step folder; finished ids are skipped)."""
    st = judgments_step(run, cfg, system, benchmark, benches)
    if st.done:
        return pd.read_parquet(st.dir / "judgments.parquet")
    bench = judged_benchmark(run, cfg, benchmark, benches)
    jobs = _jobs(run, cfg, system, benchmark, benches)
    path = st.path("judgments.jsonl")
    done = {(r["id"], r["repetition"]) for r in read_jsonl(path, tolerate_torn=True)}
    judge = judge if judge is not None else make_judge(run, cfg)
    todo = [(j, r) for r in range(cfg.judge.repetitions) for j in jobs if (j["id"], r) not in done]
    if todo:
        with Progress(len(todo), f"judging {system} / {benchmark}", "judgment") as p:
            for r in range(cfg.judge.repetitions):
                part = [j for j, rr in todo if rr == r]
                if part:
                    append_jsonl(path, _records(judge, part, bench, r, p))
    ids = {j["id"] for j in jobs}
    rows = [x for x in read_jsonl(path, tolerate_torn=True) if x["id"] in ids]
    out = pd.DataFrame(rows)
    if len(out):                     # the anchor as the judge's baseline has no request
        out = out.drop_duplicates(["id", "repetition"], keep="last").reset_index(drop=True)
    failed = out[out["failure"].notna()] if len(out) else out
    if len(failed):
        log.warning("%s / %s: %d failed judgment(s), e.g. %s", system, benchmark, len(failed),
                    "; ".join(f"{a}: {b}" for a, b in zip(failed["id"].head(3), failed["failure"].head(3))))
    write_parquet(out, st.path("judgments.parquet"))
    served = out["served_model"].value_counts().to_dict() if len(out) else {}
    other = served_mismatch(cfg, served)
    if other:
        log.warning("%s / %s: %s", system, benchmark, other)
    st.finish(system=system, benchmark=benchmark, judgments=len(out), failed=len(failed), served_models=served)
    append_jsonl(run.dir / "judge" / "judging_log.jsonl", [{
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "system": system, "benchmark": benchmark, "step": st.key,
        "judge": judge_identity(cfg), "served_models": served,
        "system_fingerprints": out["system_fingerprint"].dropna().value_counts().to_dict() if len(out) else {},
        "judgments": len(out), "failed": len(failed)}])
    return out


def served_mismatch(cfg, served) -> str | None:
    """A line naming the model(s) an LLM judge served other than `judge.judge_model` (None when all match)."""
    other = sorted(m for m in served if m and m != cfg.judge.judge_model) if cfg.judge.judge == "llm" else []
    return (f"WARN the judge server served {other} for judge.judge_model {cfg.judge.judge_model!r}: the scores are "
            "that model's judgments (pin the exact model the provider serves)") if other else None


def served_judges(run, cfg) -> list[str]:
    """Every model the judge server said it served for this config's judge (``judge/judging_log.jsonl``)."""
    ident = judge_identity(cfg)
    rows = read_jsonl(run.dir / "judge" / "judging_log.jsonl", tolerate_torn=True)
    return sorted({m for r in rows if r.get("judge") == ident for m in (r.get("served_models") or {}) if m})


@in_judging_pass
def plan_judging(run, cfg, benches: dict | None = None, judge=None) -> dict:
    """What the judge would still be asked, before anything is sent: requests, requests to send (not in a
    finished step or the reply cache), approximate tokens and, with `judge.price_per_mtok_*`, dollars."""
    j = cfg.judge
    if heldout_mode(cfg):
        return heldout_plan(run, cfg)
    judge = judge if judge is not None else make_judge(run, cfg)
    total = {"requests": 0, "to_send": 0, "prompt_tokens_approx": 0, "max_completion_tokens": 0}
    for system in systems_table(run, cfg)["system"]:
        for name, bench in benchmarks_for(run, cfg, benches).items():
            if judgments_step(run, cfg, system, name, benches, log=None).done:
                continue
            jobs = _jobs(run, cfg, system, name, benches)
            total["requests"] += len(jobs) * j.repetitions
            if isinstance(judge, ProxyJudge) or not jobs:
                continue
            for r in range(j.repetitions):
                e = judge.estimate([x["messages"] for x in jobs], judge_settings(bench), repetition=r)
                for k in ("to_send", "prompt_tokens_approx", "max_completion_tokens"):
                    total[k] += e[k]
    if j.price_per_mtok_in is not None and j.price_per_mtok_out is not None:
        total["usd_max_approx"] = round((total["prompt_tokens_approx"] * j.price_per_mtok_in
                                         + total["max_completion_tokens"] * j.price_per_mtok_out) / 1e6, 2)
    return total


def check_cost(estimate: dict, cfg) -> dict:
    """Raise `CostNotConfirmed` when `estimate['to_send']` exceeds `judge.max_calls_without_confirm` unconfirmed."""
    j = cfg.judge
    if estimate["to_send"] > j.max_calls_without_confirm and not j.confirm_cost:
        raise CostNotConfirmed(
            f"the judge would send {estimate['to_send']} requests (~{estimate['prompt_tokens_approx']:,} prompt "
            f"tokens, at most {estimate['max_completion_tokens']:,} completion tokens); more than "
            f"judge.max_calls_without_confirm={j.max_calls_without_confirm}. Rerun with judge.confirm_cost=true to pay for it.")
    return estimate


@in_judging_pass
def run_all_answers(run, cfg, benches: dict | None = None) -> pd.DataFrame:
    """Answers of every system to every benchmark: ``system, benchmark, question_id, first answer, finish_reasons,
    n_tokens, error``; none with the held-out loss, which reads the reference answers instead."""
    if heldout_mode(cfg):
        print("held-out loss: no answers are generated; each system is scored on the held-out reference answers")
        return pd.DataFrame(columns=["system", "benchmark", "question_id", "first answer", "finish_reasons",
                                     "n_tokens", "error"])
    frames = [run_answers(run, cfg, s, b, benches).assign(system=s, benchmark=b)
              for s in systems_table(run, cfg)["system"] for b in cfg.judge.benchmarks]
    out = pd.concat(frames, ignore_index=True)
    out["first answer"] = out["turns"].map(lambda t: t[0][:80] if len(t) else "")
    return out[["system", "benchmark", "question_id", "first answer", "finish_reasons", "n_tokens", "error"]]


@in_judging_pass
def run_all_judgments(run, cfg, benches: dict | None = None) -> pd.DataFrame:
    """Judgments of every system on every benchmark (cost gate first), one long table; with the held-out loss,
    every system's per-item loss (`heldout.run_all_heldout`)."""
    if heldout_mode(cfg):
        return run_all_heldout(run, cfg)
    judge = make_judge(run, cfg)
    check_cost(plan_judging(run, cfg, benches, judge), cfg)
    systems = systems_table(run, cfg)["system"]
    if isinstance(judge, ProxyJudge):     # one encoder load for every text of the run
        judge.prepare([x for s in systems for b in benchmarks_for(run, cfg, benches)
                       if not judgments_step(run, cfg, s, b, benches, log=None).done
                       for x in _jobs(run, cfg, s, b, benches)])
    frames = [run_judgments(run, cfg, s, b, benches, judge).assign(system=s, benchmark=b)
              for s in systems for b in cfg.judge.benchmarks]
    return pd.concat(frames, ignore_index=True)
