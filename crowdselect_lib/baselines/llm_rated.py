"""LLM-rated baselines (CrowdSelect Tables 2, 10, 12; appendix B.3): Direct score (Alpagasus) and Instag (InsTag).

Direct score: an LLM grades each (instruction, answer) pair 0-5 (the answer of `selection.response`: eq. 2's best
by default, so Table 1's three rows rate three answer sets and get three keys) with Alpagasus' own prompts, verbatim
(`rating/chatgpt_rating.py`: the system prompt, the ``###Instruction / ### Input / ### Response`` triplet, then the
rating request); the grade is the number on the reply's first line (`parse_grade`). ``direct_score`` takes the
top-k, ``direct_score_bottom`` the bottom-k (Tables 10 and 12, "Direct-Score ↓/↑"); ties (grades are coarse) are
broken in a seeded random order, as the official script's seeded shuffle before a stable sort does.

Instag: an LLM tags each instruction — open tags with InsTag's prompt (default), or the official CrowdSelect
code's fixed list of 29 labels (`instag_tagging: official_labels`); tags are normalised (`normalise_tag`). The
selection is InsTag's complexity-first diverse sampling (`instag_order`).
"""
from __future__ import annotations

import json
import re

import pandas as pd

from ..runs import Step, read_json, write_json, write_parquet
from ..selection import pair_responses
from ..zoo import default_reward_model, zoo_step
from .asking import ParseError, Truncated, ask_with_retries, client, generation, llm_identity, llm_report
from .common import BASELINE_CODE, Baseline, Context, Picked, candidate_settings, candidates, subset_k, top_available

VERSION = "1"

# ------------------------------------------------------------------ Direct score (Alpagasus)

ALPAGASUS_SYSTEM = ("We would like to request your feedback on the performance of AI assistant in response to the "
                    "instruction and the given input displayed following.")
ALPAGASUS_TRIPLET = "###Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}\n\n"
ALPAGASUS_REQUEST = ("Please rate according to the {dimension} of the response to the instruction and the input. Each "
                     "assistant receives a score on a scale of 0 to 5, where a higher score indicates higher level of "
                     "the {dimension}. Please first output a single line containing value indicating the scores. In "
                     "the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding "
                     "any potential bias. \n\n")
# `baselines.llm_example` only (ours, not Alpagasus'): one worked turn that shows a tiny local model the format
DIRECT_SCORE_EXAMPLE = ("How many legs does a spider have?", "Spiders have eight legs.",
                        "5\nThe answer is correct and complete.")

_NUM = r"[-+]?\d+(?:\.\d+)?"
_GRADE = re.compile(rf"^({_NUM})(?:\s*(?:/|out of)\s*({_NUM}))?$", re.I)
_LABELLED = re.compile(rf"\b(?:score|grade|rating)\b[^:\n]*:\s*(.+)$", re.I)


def _clean(line: str) -> str:
    return line.strip().strip("*#_`").strip().rstrip(".").strip()


def _grade_value(text: str, low: float, high: float) -> float | None:
    """The grade a whole (cleaned) text states, or None if it is not a grade; out-of-scale grades raise."""
    m = _GRADE.match(_clean(text))
    if m is None:
        return None
    x = float(m.group(1))
    if m.group(2) is not None and float(m.group(2)) != high:
        raise ParseError(f"grade {m.group(0)} is on another scale; give a number from {low:g} to {high:g}")
    if not low <= x <= high:
        raise ParseError(f"grade {m.group(1)} is outside {low:g}..{high:g}")
    return x


def parse_grade(reply: str, low: float = 0.0, high: float = 5.0) -> float:
    """Alpagasus' rule: the grade is the number that makes up the reply's first line ("4", "4.5", "4/5"); else, as
    Alpagasus' fallback, the value after a "Score:" / "Grade (0-5):" / "Rating:" label. It must lie in [low, high]:
    a signed ("-3") or other-scale ("5/10") grade is a ParseError, never read as 3 or 5; a number inside a
    sentence ("Out of 5, I'd say 3") is not a grade. Raises ParseError (asked again, then a counted failure)."""
    lines = [ln for ln in (reply or "").splitlines() if ln.strip()]
    if not lines:
        raise ParseError("the reply is empty; the first line must be the grade")
    x = _grade_value(lines[0], low, high)
    if x is not None:
        return x
    for line in lines:
        m = _LABELLED.search(line)
        if m is not None:
            x = _grade_value(m.group(1), low, high)
            if x is not None:
                return x
    raise ParseError(f"no grade on the first line; it must be a single number from {low:g} to {high:g}")


def direct_score_prompt(cfg) -> list[str]:
    dimension = cfg.baselines.direct_score_dimension
    return [ALPAGASUS_SYSTEM, ALPAGASUS_TRIPLET, ALPAGASUS_REQUEST.format(dimension=dimension)]


def direct_score_conversations(pairs: pd.DataFrame, dimension: str = "accuracy",
                               example: bool = False) -> list[list[dict]]:
    """Alpagasus' rating request per (instruction, response) row (no input: the ``### Input`` block is empty)."""
    request = ALPAGASUS_REQUEST.format(dimension=dimension)

    def user(q, a):
        return {"role": "user", "content": ALPAGASUS_TRIPLET.format(instruction=q, input="", output=a) + request}

    head = [{"role": "system", "content": ALPAGASUS_SYSTEM}]
    if example:
        q0, a0, r0 = DIRECT_SCORE_EXAMPLE
        head += [user(q0, a0), {"role": "assistant", "content": r0}]
    return [head + [user(q, a)] for q, a in zip(pairs["instruction"].tolist(), pairs["response"].tolist())]


def direct_score_ratings(zoo, llm, uuids, settings, *, dimension: str = "accuracy", reward_model: str | None = None,
                         max_retries: int = 2, example: bool = False, response: str = "best",
                         seed: int = 0) -> pd.DataFrame:
    """Grade each candidate's answer of the `response` strategy (eq. 2's best by default; Table 1 also rates the
    random and top-5-random answers): ``uuid, model, value, reply, attempts, truncated, error``."""
    pairs = pair_responses(zoo, uuids, response, seed, reward_model)
    asked = ask_with_retries(llm, direct_score_conversations(pairs, dimension, example), parse_grade, settings,
                             max_retries)
    return pd.concat([pairs[["uuid", "model"]], asked], axis=1)


def direct_score_pick(ratings: pd.DataFrame, k: int, direction: str = "top", seed: int = 0) -> Picked:
    """Top-k (or bottom-k) by grade among the valid ratings; failures excluded and counted. Each row keeps the
    answer that was rated (column ``model``, when present)."""
    ok = ratings[ratings["error"].isna()]
    report = llm_report("direct_score", ratings) | {"candidates": int(len(ok)), "k": k,
                                                     "grades": ok["value"].astype(float).value_counts().to_dict()}
    score = pd.Series(ok["value"].astype(float).to_numpy(), index=pd.Index(ok["uuid"]))
    models = pd.Series(ok["model"].to_numpy(), index=pd.Index(ok["uuid"])) if "model" in ok else None
    return Picked(top_available(score, k, report, direction, seed), report, models)


# ------------------------------------------------------------------ Instag (InsTag)

INSTAG_SYSTEM = "You are a helpful assistant."
INSTAG_REQUEST = ("Please identify tags of user intentions in the following user query and provide an explanation "
                  "for each tag. Please respond in the JSON format {{\"tag\": str, \"explanation\": str}}.\n"
                  "Query: {instruction}")
# the official CrowdSelect code's fixed labels (`baseline/instag/get_tags.py`) and its system prompt
OFFICIAL_LABELS = ["information", "request", "data", "research", "analysis", "retrieval", "inquiry", "writing",
                   "creative", "program", "loop", "mathematics", "solve", "coding", "problem", "operation", "creation",
                   "generation", "development", "handling", "declaration", "comparison", "arithmetic", "statement",
                   "reasoning", "extraction", "roleplay", "humanities", "STEM"]
OFFICIAL_SYSTEM = "You are a tag generator. Classify the instruction into relevant tags from this list: " + \
                  ", ".join(OFFICIAL_LABELS)
INSTAG_EXAMPLE = ("Write a short poem about autumn leaves for my daughter's school project.",
                  '[{"tag": "poetry", "explanation": "a poem"}, {"tag": "children", "explanation": "for a child"}]',
                  "writing, creative")


def normalise_tag(tag: str) -> str:
    """Lower case, ``_``/``-`` as spaces, single spaces, no surrounding quotes or punctuation."""
    t = re.sub(r"[_\-]+", " ", str(tag).lower())
    return re.sub(r"\s+", " ", t).strip(" \t\"'`.,;:!?()[]{}")


def parse_tags(reply: str) -> list[str]:
    """Open tags: the JSON list that opens at the reply's first ``[`` — strings or {"tag": str} objects (InsTag's
    format; bare objects without a list are read too). Normalised, de-duplicated in order. A nested list, a
    non-string tag or an empty list is a ParseError; a list cut off before its ``]`` is `Truncated`."""
    text = reply or ""
    dec, start = json.JSONDecoder(), text.find("[")
    if start >= 0:
        try:
            items, _ = dec.raw_decode(text, start)
        except json.JSONDecodeError:
            if "]" not in text[start:]:
                raise Truncated("the list of tags is cut off before its closing ']'") from None
            raise ParseError("the list of tags is not valid JSON") from None
    else:
        items, pos = [], text.find("{")
        while pos >= 0:
            try:
                obj, end = dec.raw_decode(text, pos)
            except json.JSONDecodeError:
                raise (Truncated if "}" not in text[pos:] else ParseError)(
                    'no JSON list of tags found, expected e.g. [{"tag": "cooking", "explanation": "..."}]') from None
            items.append(obj)
            pos = text.find("{", end)
        if not items:
            raise ParseError('no JSON list of tags found, expected e.g. [{"tag": "cooking", "explanation": "..."}]')
    tags = []
    for i, it in enumerate(items if isinstance(items, list) else [items]):
        t = it.get("tag") if isinstance(it, dict) else it
        if not isinstance(t, str):
            raise ParseError(f"item {i + 1} of the list is {type(t).__name__}, not a tag string")
        tags.append(normalise_tag(t))
    tags = list(dict.fromkeys(t for t in tags if t))
    if not tags:
        raise ParseError("the list of tags is empty")
    return tags


def parse_official_labels(reply: str) -> list[str]:
    """Official-labels mode: comma-separated labels of `OFFICIAL_LABELS` (the official code splits on ", ")."""
    known = {normalise_tag(x): x.lower() for x in OFFICIAL_LABELS}
    tags = [normalise_tag(t) for t in re.split(r"[,\n]", reply or "")]
    tags = [t for t in tags if t]
    if not tags:
        raise ParseError("no labels found; answer with labels from the list, separated by commas")
    unknown = [t for t in tags if t not in known]
    if unknown:
        raise ParseError(f"label {unknown[0]!r} is not in the list")
    return list(dict.fromkeys(known[t] for t in tags))


def instag_conversations(instructions, tagging: str = "open", example: bool = False) -> list[list[dict]]:
    if tagging == "official_labels":
        head, ex = [{"role": "system", "content": OFFICIAL_SYSTEM}], (INSTAG_EXAMPLE[0], INSTAG_EXAMPLE[2])
        user = [{"role": "user", "content": str(q)} for q in instructions]
        ex_turn = [{"role": "user", "content": ex[0]}, {"role": "assistant", "content": ex[1]}]
    else:
        head = [{"role": "system", "content": INSTAG_SYSTEM}]
        user = [{"role": "user", "content": INSTAG_REQUEST.format(instruction=q)} for q in instructions]
        ex_turn = [{"role": "user", "content": INSTAG_REQUEST.format(instruction=INSTAG_EXAMPLE[0])},
                   {"role": "assistant", "content": INSTAG_EXAMPLE[1]}]
    return [head + (ex_turn if example else []) + [u] for u in user]


def instag_order(tags: pd.Series, k: int) -> pd.Series:
    """InsTag's complexity-first diverse sampling: instructions sorted by tag count (most first; ties in the
    given order); in a pass, an instruction is taken only if it adds a tag not yet covered in that pass; passes
    repeat over the rest until k are taken. tags: uuid -> list of tags. Returns uuid -> tag count, in pick order.
    (A sequential scan by construction: each pick depends on the tags covered so far.)"""
    if not 0 < k <= len(tags):
        raise ValueError(f"asked for k={k} rows but {len(tags)} tagged instructions exist")
    n = tags.map(len)
    order = list(n.sort_values(ascending=False, kind="stable").index)
    sets = {u: set(t) for u, t in tags.items()}
    chosen: list = []
    while len(chosen) < k:
        covered, rest = set(), []
        for u in order:
            if len(chosen) < k and not sets[u] <= covered:
                chosen.append(u)
                covered |= sets[u]
            else:
                rest.append(u)
        order = rest
    return n.reindex(pd.Index(chosen)).astype(float)


def instag_official_order(tags: pd.Series, instructions: pd.Series, k: int) -> pd.Series:
    """The official CrowdSelect Tags rule (`choose_by_tag.py`, paper §B.3): group instructions by tag (tags in
    order of first appearance), each group sorted by word count (most first, ties in the given order); walk the
    tags, adding a group's longest instruction not yet taken, and stop a tag's walk once the TOTAL taken reaches
    k // (number of tags). So the first tag gives k // T and every later tag one; the rest is filled with the
    longest instructions by word count (ties: first appearance in the tag groups). Duplicates by instruction
    text count once. tags: uuid -> list; instructions: uuid -> text. Returns uuid -> word count, in pick order."""
    if not 0 < k <= len(tags):
        raise ValueError(f"asked for k={k} rows but {len(tags)} tagged instructions exist")
    pos = pd.Series(range(len(tags)), index=tags.index)
    ex = tags.explode().dropna()
    words = instructions.reindex(tags.index).astype(str).str.split().str.len()
    rows = pd.DataFrame({"tag": ex.to_numpy(), "pos": pos[ex.index].to_numpy(), "uuid": ex.index})
    rows["tag_order"] = pd.factorize(rows["tag"])[0]
    rows["words"] = words[rows["uuid"]].to_numpy()
    rows = rows.sort_values(["tag_order", "words", "pos"], ascending=[True, False, True], kind="stable")
    text = instructions.reindex(tags.index).astype(str)
    per_tag, taken, seen = k // rows["tag_order"].nunique(), [], set()
    for _, group in rows.groupby("tag_order", sort=True):   # a loop over tags, each a short walk
        for u in group["uuid"]:
            if text[u] not in seen:
                taken.append(u)
                seen.add(text[u])
                if len(taken) >= per_tag:
                    break
    fill = rows.drop_duplicates("uuid").sort_values("words", ascending=False, kind="stable")["uuid"]
    for u in fill:                     # rows keep their first appearance, so ties follow the tag groups
        if len(taken) >= k:
            break
        if text[u] not in seen:
            taken.append(u)
            seen.add(text[u])
    taken = taken[:k]
    return words.reindex(pd.Index(taken)).astype(float)


def instag_pick(tagged: pd.DataFrame, k: int, rule: str = "official",
                instructions: pd.Series | None = None) -> Picked:
    """Instag over the validly tagged candidates; failures excluded and counted. rule "official": the official
    CrowdSelect rule (`instag_official_order`, score = word count); "instag": InsTag's Algorithm 1
    (`instag_order`, score = tag count)."""
    ok = tagged[tagged["error"].isna()]
    report = llm_report("instag", tagged) | {"candidates": int(len(ok)), "k": k}
    if ok.empty:
        raise ValueError(f"instag: none of the {len(tagged)} instructions got valid tags")
    report["shortfall"] = int(max(k - len(ok), 0))
    tags = pd.Series(ok["value"].map(list).to_numpy(), index=pd.Index(ok["uuid"]))
    if rule == "official":
        if instructions is None:
            raise ValueError("instag: the official rule needs the instructions (word counts)")
        ranked = instag_official_order(tags, instructions, min(k, len(ok)))
    else:
        ranked = instag_order(tags, min(k, len(ok)))
    report.update(rule=rule, distinct_tags=int(tags.explode().nunique()),
                  tags_covered=int(tags[ranked.index].explode().nunique()),
                  mean_tags_selected=float(tags[ranked.index].map(len).mean()),
                  mean_tags_candidates=float(tags.map(len).mean()))
    return Picked(ranked, report)


# ------------------------------------------------------------------ steps

def _llm_settings(cfg, method: str) -> dict:
    b = cfg.baselines
    if method == "instag":
        prompt = [OFFICIAL_SYSTEM] if b.instag_tagging == "official_labels" else [INSTAG_SYSTEM, INSTAG_REQUEST]
        return {"tagging": b.instag_tagging, **candidate_settings(cfg, b.llm_subset),
                "llm": llm_identity(cfg, b.instag_max_new_tokens, prompt)}
    response = cfg.selection.response   # Table 1 rates each strategy's answers (a random draw: run.seed)
    return {"dimension": b.direct_score_dimension, "reward_model": default_reward_model(cfg), "response": response,
            **({"response_seed": cfg.run.seed} if response != "best" else {}), **candidate_settings(cfg, b.llm_subset),
            "llm": llm_identity(cfg, b.direct_score_max_new_tokens, direct_score_prompt(cfg))}


def work_step(run, cfg, method: str) -> Step:
    """The step of an LLM baseline's replies: ``direct_score-ratings`` (shared by both directions) or
    ``instag-tags``."""
    name = "instag-tags" if method == "instag" else "direct_score-ratings"
    return Step(run.dir, "baselines", name, _llm_settings(cfg, method), {"zoo": zoo_step(run, cfg)}, VERSION,
                BASELINE_CODE)


def items(ctx: Context, method: str) -> tuple[pd.DataFrame, dict]:
    """The per-item replies of `method` (read when its step is done, else asked and written)."""
    st = work_step(ctx.run, ctx.cfg, method).announce()
    if st.done:
        return pd.read_parquet(st.dir / "items.parquet"), read_json(st.dir / "llm.json")
    b = ctx.cfg.baselines
    uuids = candidates(ctx.zoo, b.llm_subset, ctx.cfg.run.seed)
    if method == "instag":
        inst = ctx.zoo.instructions().set_index("uuid")["instruction"].loc[uuids]
        parse = parse_official_labels if b.instag_tagging == "official_labels" else parse_tags
        asked = ask_with_retries(ctx.llm, instag_conversations(inst.tolist(), b.instag_tagging, b.llm_example), parse,
                                 generation(ctx.cfg, b.instag_max_new_tokens), b.llm_max_retries)
        df = pd.concat([pd.DataFrame({"uuid": uuids.to_numpy()}), asked], axis=1)
    else:
        df = direct_score_ratings(ctx.zoo, ctx.llm, uuids, generation(ctx.cfg, b.direct_score_max_new_tokens),
                                  dimension=b.direct_score_dimension, reward_model=ctx.reward_model,
                                  max_retries=b.llm_max_retries, example=b.llm_example,
                                  response=ctx.cfg.selection.response, seed=ctx.cfg.run.seed)
    info = {"llm": getattr(ctx.llm, "info", dict)(), "zoo_instructions": int(len(ctx.zoo.instructions()))}
    write_parquet(df, st.path("items.parquet"))
    write_json(info, st.path("llm.json"))
    st.finish(rows=len(df), failed=int(df["error"].notna().sum()))
    return df, info


def _select(ctx: Context) -> Picked:
    method = "instag" if ctx.name == "instag" else "direct_score"
    df, info = items(ctx, method)
    k = subset_k(ctx.cfg, len(df), info["zoo_instructions"])
    if method == "instag":
        inst = ctx.zoo.instructions().set_index("uuid")["instruction"]
        picked = instag_pick(df, k, ctx.cfg.baselines.instag_rule, inst)
    else:
        picked = direct_score_pick(df, k, "bottom" if ctx.name == "direct_score_bottom" else "top", ctx.cfg.run.seed)
    picked.report.update(method=ctx.name, llm=info["llm"].get("model"))
    return picked


def _table_settings(cfg, name):
    if name == "instag":
        return {"subset_k": cfg.baselines.subset_k, "rule": cfg.baselines.instag_rule}
    return {"subset_k": cfg.baselines.subset_k, "tie_seed": cfg.run.seed}   # response: in the ratings' key


BASELINES = [
    Baseline("direct_score", "Direct-Score ↑", True, "llm", "LLM grade 0-5 of the best answer (Alpagasus); top-k",
             _table_settings, _select, work_step),
    Baseline("direct_score_bottom", "Direct-Score ↓", True, "llm", "LLM grade 0-5 of the best answer; bottom-k",
             _table_settings, _select, work_step),
    Baseline("instag", "Tags", True, "llm", "LLM tags; official: per tag one, then the longest by words "
             "(choose_by_tag.py); instag: most tags first, each adding a new tag (InsTag)",
             _table_settings, _select, work_step),
]

__all__ = ["parse_grade", "parse_tags", "parse_official_labels", "normalise_tag", "instag_order",
           "instag_official_order", "instag_pick",
           "direct_score_pick", "direct_score_conversations", "instag_conversations", "direct_score_ratings",
           "ALPAGASUS_SYSTEM", "ALPAGASUS_TRIPLET", "ALPAGASUS_REQUEST", "INSTAG_REQUEST", "OFFICIAL_LABELS",
           "BASELINES", "work_step", "items"]
