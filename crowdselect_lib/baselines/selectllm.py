"""SelectLLM (Parkar et al., "SelectLLM: Can LLMs Select Important Instructions to Annotate?") — an EXTRA baseline
of this package: the CrowdSelect paper does not compare with it.

Instructions only:
1. embed the N candidates (`embedding` section), K-means into K clusters, distances D (N, K) to the centers;
2. diverse queries (SelectLLM Algorithm 2): T = floor(N / K) queries; query t takes, cluster by cluster, the
   still-unused instance nearest to that cluster's center, so each query holds K mutually diverse instructions;
3. the LLM reads each query in the Figure 4 prompt (verbatim) and names the O_t most impactful ones,
   O_t = k // T (+1 for the first k % T queries), so the picks add up to k;
4. the answer is the bracketed list the reply ENDS with ("Item [1] is too simple, so my choice is [3]" -> 3);
   invalid lists are asked again, then recorded as failed queries (their picks are a reported shortfall).
K defaults to ceil(N / k), the smallest K with T <= k, so every query gets a pick and every instance is shown
(except the N - T K left over by the floor). A smaller K leaves T - k queries unasked: reported as
``unasked_queries`` and ``unseen`` instances.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from ..runs import Step, read_json, write_json, write_parquet
from ..zoo import zoo_step
from .asking import ParseError, ask_with_retries, generation, llm_identity, llm_report
from .common import BASELINE_CODE, Baseline, Context, Picked, candidate_settings, candidates, subset_k

VERSION = "1"

# Figure 4 of the SelectLLM paper, verbatim (its line breaks are the figure's column width; paragraphs kept)
FIGURE4_HEAD = ("The following are {n} candidate instructions that describe a task, each indicated by a number "
                "identifier [].\n\n")
FIGURE4_ITEM = "[{i}]\n### Instruction: {instruction}\n"
FIGURE4_TAIL = ("\nExamine the provided list of {n} instructions, each uniquely identified by a number in brackets "
                "[].\n\nYour task is to select {num} instructions that excel in various aspects.\n\n"
                "Look for instructions that are clear and relevant, exhibit a high level of complexity and detail, "
                "represent a diverse range of scenarios and contexts, offer significant instructional value and "
                "potential learning gain, and present unique challenges and specificity.\n\n"
                "These selected instructions should ideally be the most beneficial for model fine-tuning after being "
                "annotated by human annotators.\n\nPresent your selections using the format []. e.g., [1,2] or "
                "[2,3].\n\nThe most impactful {num} instructions (only identifiers) are:")
EXAMPLE_QUERY = (["Say hi.", "Explain how vaccines train the immune system, with an example and common myths.",
                  "What is 2 + 2?"], "[2]")     # `baselines.llm_example` only (ours)
_BRACKET = re.compile(r"\[([^\[\]]*)\]")


def figure4_prompt(instructions: list[str], num: int) -> str:
    """The Figure 4 prompt for one query (items numbered 1..K; Magpie instructions have no input field)."""
    items = "".join(FIGURE4_ITEM.format(i=i, instruction=" ".join(str(q).split()))
                    for i, q in enumerate(instructions, 1))
    n = len(instructions)
    return FIGURE4_HEAD.format(n=n) + items + FIGURE4_TAIL.format(n=n, num=num)


def query_conversation(instructions: list[str], num: int, example: bool = False) -> list[dict]:
    head = []
    if example:
        shot, answer = EXAMPLE_QUERY
        head = [{"role": "user", "content": figure4_prompt(shot, 1)}, {"role": "assistant", "content": answer}]
    return head + [{"role": "user", "content": figure4_prompt(instructions, num)}]


def diverse_queries(distances: np.ndarray, n_queries: int | None = None) -> np.ndarray:
    """SelectLLM Algorithm 2. distances: (N, K). Returns (T, K) instance indices, T = floor(N / K) by default:
    row t, column c is the instance nearest to center c among those unused by earlier picks. Each column is
    argsorted once and a pointer per cluster skips used rows: O(N K log N) instead of a scan per pick."""
    d = np.asarray(distances, dtype=float)
    n, k = d.shape
    t_max = n // k
    t = t_max if n_queries is None else n_queries
    if not 0 < t <= t_max:
        raise ValueError(f"{n} instances and {k} clusters allow 1..{t_max} queries, asked for {t}")
    order = np.argsort(d, axis=0, kind="stable")           # (N, K)
    used, ptr = np.zeros(n, dtype=bool), np.zeros(k, dtype=np.int64)
    out = np.empty((t, k), dtype=np.int64)
    for q in range(t):
        for c in range(k):
            p = ptr[c]
            while used[order[p, c]]:
                p += 1
            out[q, c], used[order[p, c]], ptr[c] = order[p, c], True, p + 1
    return out


def picks_per_query(k: int, n_queries: int, query_size: int) -> np.ndarray:
    """O_t: k // T picks per query, one more for the first k % T queries (total k; zeros when T > k)."""
    if k > n_queries * query_size:
        raise ValueError(f"k={k} exceeds the {n_queries} queries x {query_size} instructions available")
    o = np.full(n_queries, k // n_queries)
    o[: k % n_queries] += 1
    return o


def query_size(n: int, k: int, setting: int | None) -> int:
    """K: `baselines.selectllm_clusters`, else ceil(N / k) (every query gets a pick); at most N."""
    return min(n, setting or math.ceil(n / k))


def parse_indices(reply: str, n_items: int, n_pick: int) -> list[int]:
    """0-based indices from the bracketed list of numbers the reply ends with (the last one); ParseError for no
    such list, an index outside 1..n_items, a duplicate, or a count other than n_pick."""
    lists = [m.group(1) for m in _BRACKET.finditer(reply or "") if re.fullmatch(r"[\d,\s]*\d[\d,\s]*", m.group(1))]
    if not lists:
        raise ParseError(f"no bracketed list of numbers found, expected e.g. [{', '.join(['1'] * n_pick)}]")
    nums = [int(p) for p in lists[-1].replace(",", " ").split()]
    bad = [x for x in nums if not 1 <= x <= n_items]
    if bad:
        raise ParseError(f"number {bad[0]} is out of range 1..{n_items}")
    if len(set(nums)) != len(nums):
        raise ParseError(f"the list [{lists[-1]}] repeats a number")
    if len(nums) != n_pick:
        raise ParseError(f"the list has {len(nums)} number(s), exactly {n_pick} are required")
    return [x - 1 for x in nums]


def selectllm_record(instructions: pd.Series, embeddings: np.ndarray, llm, k: int, settings, *,
                     n_clusters: int | None = None, seed: int = 42, max_retries: int = 2,
                     example: bool = False) -> tuple[pd.DataFrame, dict]:
    """Steps 1-4. instructions: uuid -> text, rows aligned with `embeddings` (N, d). Returns (one row per asked
    query: query, uuids, n_pick, value, reply, attempts, truncated, error; coverage report)."""
    from sklearn.cluster import KMeans   # heavy import, only when queries are built

    if len(instructions) != len(embeddings):
        raise ValueError(f"{len(instructions)} instructions but {len(embeddings)} embedding rows")
    n = len(instructions)
    size = query_size(n, k, n_clusters)
    km = KMeans(n_clusters=size, random_state=seed, n_init=10).fit(embeddings)
    queries = diverse_queries(km.transform(embeddings))                           # (T, K)
    o = picks_per_query(k, *queries.shape)
    ask = np.flatnonzero(o > 0)
    texts, uuids = instructions.to_numpy(), instructions.index.to_numpy()
    convs = [query_conversation(list(texts[queries[q]]), int(o[q]), example) for q in ask]
    parsers = [lambda reply, m=int(o[q]): parse_indices(reply, queries.shape[1], m) for q in ask]
    asked = ask_with_retries(llm, convs, parsers, settings, max_retries)
    record = pd.concat([pd.DataFrame({"query": ask, "uuids": [list(uuids[queries[q]]) for q in ask],
                                      "n_pick": o[ask].astype(int)}), asked], axis=1)
    coverage = {"candidates": n, "query_size": int(size), "queries": int(len(queries)), "asked": int(len(ask)),
                "unasked_queries": int(len(queries) - len(ask)), "unseen": int(n - len(ask) * size)}
    return record, coverage


def picks_from_record(record: pd.DataFrame) -> pd.DataFrame:
    """[uuid, query, position] of every valid pick of a query record."""
    ok = record[record["error"].isna()]
    rows = [(list(u)[i], q, p) for q, u, v in zip(ok["query"], ok["uuids"], ok["value"]) for p, i in enumerate(v)]
    return pd.DataFrame(rows, columns=["uuid", "query", "position"]).astype({"query": int, "position": int})


def selectllm_pick(record: pd.DataFrame, k: int, coverage: dict | None = None) -> Picked:
    """Picks ranked by their position in the LLM's list (first named first), then by query; score =
    1 / (1 + position). Failed queries excluded; their missing picks are the reported shortfall."""
    picks = picks_from_record(record)
    report = llm_report("selectllm", record) | (coverage or {}) | {
        "k": k, "picked": int(len(picks)), "shortfall": int(k - len(picks))}
    if picks.empty:
        raise ValueError(f"selectllm: every one of the {len(record)} queries failed; nothing was selected")
    ranked = picks.sort_values(["position", "query"], kind="stable")
    return Picked(pd.Series(1.0 / (1.0 + ranked["position"].to_numpy()), index=pd.Index(ranked["uuid"])), report)


# ------------------------------------------------------------------ step

def _settings(cfg) -> dict:
    from ..clustering import embedding_settings

    b = cfg.baselines
    return {**candidate_settings(cfg, b.selectllm_subset), "k": cfg.selection.k, "subset_k": b.subset_k,
            "clusters": b.selectllm_clusters, "kmeans_seed": cfg.clustering.seed,
            "embedding": embedding_settings(cfg.embedding),
            "llm": llm_identity(cfg, b.selectllm_max_new_tokens, [FIGURE4_HEAD, FIGURE4_ITEM, FIGURE4_TAIL])}


def work_step(run, cfg, name: str = "selectllm") -> Step:
    return Step(run.dir, "baselines", "selectllm-queries", _settings(cfg), {"zoo": zoo_step(run, cfg)}, VERSION,
                BASELINE_CODE)


def _select(ctx: Context) -> Picked:
    st = work_step(ctx.run, ctx.cfg).announce()
    if st.done:
        record, coverage = pd.read_parquet(st.dir / "queries.parquet"), read_json(st.dir / "coverage.json")
    else:
        from ..clustering import embed_instructions

        b = ctx.cfg.baselines
        uuids = candidates(ctx.zoo, b.selectllm_subset, ctx.cfg.run.seed)
        all_uuids, vecs = embed_instructions(ctx.run, ctx.cfg)
        pos = pd.Index(all_uuids).get_indexer(uuids)
        inst = ctx.zoo.instructions().set_index("uuid")["instruction"].loc[uuids]
        k = subset_k(ctx.cfg, len(uuids), len(all_uuids))
        record, coverage = selectllm_record(inst, vecs[pos], ctx.llm, k,
                                            generation(ctx.cfg, b.selectllm_max_new_tokens),
                                            n_clusters=b.selectllm_clusters, seed=ctx.cfg.clustering.seed,
                                            max_retries=b.llm_max_retries, example=b.llm_example)
        coverage["k"] = k
        write_parquet(record, st.path("queries.parquet"))
        write_json(coverage, st.path("coverage.json"))
        st.finish(queries=len(record), failed=int(record["error"].notna().sum()))
    picked = selectllm_pick(record, coverage["k"], coverage)
    picked.report["method"] = "selectllm"
    return picked


BASELINES = [Baseline("selectllm", "SelectLLM", False, "llm",
                      "LLM picks from diverse K-means queries (SelectLLM Fig. 4, Alg. 2); extra, not in the paper",
                      lambda cfg, name: {}, _select, work_step)]
