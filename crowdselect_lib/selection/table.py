"""The SELECTION TABLE, the one format every method returns (CrowdSelect and every baseline), and its exports.

One row per selected instruction, columns `SELECTION_COLUMNS`: rank (1 = best), uuid, instruction, model (whose
answer), response, score (the method's selection score), difficulty, separability, stability (NaN when not
computed), cluster (-1 when not clustered), method. `write_selection` puts a table and its exports into a step's
folder: ``selection.parquet``, ``report.json``, chat JSONL for TRL (``<name>.jsonl``) and LLaMA-Factory alpaca
JSON (``<name>.json``), registered in the run's ``dataset_info.json`` (merged under a lock, so the run folder is
a LLaMA-Factory ``dataset_dir`` for every subset and baseline).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import METRICS
from ..runs import atomic_write, read_json, update_json, write_json, write_parquet
from .responses import pair_responses

SELECTION_COLUMNS = ["rank", "uuid", "instruction", "model", "response", "score", *METRICS, "cluster", "method"]


def selection_table(zoo, ranked: pd.Series, *, method: str, reward_model: str | None = None,
                    response: str = "best", seed: int = 0, metrics: pd.DataFrame | None = None,
                    clusters: pd.Series | None = None) -> pd.DataFrame:
    """Build the selection table from `ranked` (selection score per uuid, in rank order)."""
    if ranked.index.has_duplicates:
        raise ValueError(f"duplicate uuid {ranked.index[ranked.index.duplicated()][0]!r} in the selection")
    pairs = pair_responses(zoo, ranked.index, response, seed, reward_model)
    out = pd.DataFrame({"rank": np.arange(1, len(ranked) + 1), "uuid": pairs["uuid"].to_numpy(),
                        "instruction": pairs["instruction"].to_numpy(), "model": pairs["model"].to_numpy(),
                        "response": pairs["response"].to_numpy(), "score": ranked.to_numpy(dtype=float)})
    for m in METRICS:
        out[m] = metrics[m].reindex(ranked.index).to_numpy() if metrics is not None and m in metrics else np.nan
    out["cluster"] = clusters.reindex(ranked.index).fillna(-1).astype(int).to_numpy() if clusters is not None else -1
    out["method"] = method
    return out[SELECTION_COLUMNS]


# ------------------------------------------------------------------ exports

def to_chat_messages(table: pd.DataFrame) -> list[dict]:
    """[{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}, ...] in rank order (TRL format)."""
    return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in zip(table["instruction"].tolist(), table["response"].tolist())]


def export_chat_jsonl(table: pd.DataFrame, path: str | Path) -> Path:
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in to_chat_messages(table))
    return atomic_write(path, lambda p: p.write_text(lines, encoding="utf-8"))


def llamafactory_entry(file_name: str) -> dict:
    return {"file_name": file_name, "formatting": "alpaca",
            "columns": {"prompt": "instruction", "query": "input", "response": "output"}}


def export_alpaca_json(table: pd.DataFrame, path: str | Path) -> Path:
    """One alpaca JSON list ``[{"instruction", "input": "", "output"}, ...]`` in rank order."""
    rows = [{"instruction": q, "input": "", "output": a}
            for q, a in zip(table["instruction"].tolist(), table["response"].tolist())]
    text = json.dumps(rows, ensure_ascii=False, indent=1)
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def export_llamafactory(table: pd.DataFrame, directory: str | Path, name: str,
                        info_dir: str | Path | None = None) -> Path:
    """LLaMA-Factory alpaca JSON ``<directory>/<name>.json`` plus its entry in ``<info_dir>/dataset_info.json``
    (default: `directory`), merged under a lock so concurrent writers never lose an entry."""
    d = Path(directory)
    path = export_alpaca_json(table, d / f"{name}.json")
    register_llamafactory(path, name, info_dir if info_dir is not None else d)
    return path


def register_llamafactory(path: str | Path, name: str, info_dir: str | Path) -> None:
    """Point entry `name` of ``<info_dir>/dataset_info.json`` at `path` (a ``dataset_info.json`` that does not
    parse is started afresh with a warning: its entries come back as their subsets are resolved)."""
    info = Path(info_dir)
    rel = os.path.relpath(path, info)
    update_json(info / "dataset_info.json", lambda i: i.__setitem__(name, llamafactory_entry(rel)), way_out="rewrite")


def publish_selection(run, st, name: str) -> None:
    """Point the run's exports at step `st`, the selection the current settings resolved (reused or computed):
    ``dataset_info.json`` (``latest`` and the stage index are re-pointed by `Step.announce`)."""
    register_llamafactory(st.dir / f"{name}.json", name, run.dir)


def write_selection(run, st, table: pd.DataFrame, name: str, report: dict) -> None:
    """A selection table, its report and its exports into step `st`'s folder; then the step is finished."""
    missing = [c for c in SELECTION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"selection {name!r} lacks column(s) {missing}")
    write_parquet(table[SELECTION_COLUMNS], st.path("selection.parquet"))
    write_json(report, st.path("report.json"))
    export_chat_jsonl(table, st.path(f"{name}.jsonl"))
    export_llamafactory(table, st.dir, name, info_dir=run.dir)
    st.finish(rows=len(table), shortfall=report.get("shortfall", 0))


def read_selection(st) -> tuple[pd.DataFrame, dict]:
    """(table, report) of a finished selection step (its files verified against its manifest; the report gains
    the step's key, which is not written into it: the files stay byte-identical across code edits)."""
    if not st.done:
        raise FileNotFoundError(f"selection {st.label} ({st.key}) is not computed, or its files differ from its "
                                "manifest: run chapter 05 (or 06 for a baseline) to compute it")
    return pd.read_parquet(st.dir / "selection.parquet"), {**read_json(st.dir / "report.json"), "key": st.key}


def to_dataset(table: pd.DataFrame):
    """A `datasets.Dataset` with the selection columns plus `messages`."""
    import datasets

    df = table.reset_index(drop=True).copy()
    df["messages"] = [row["messages"] for row in to_chat_messages(df)]
    return datasets.Dataset.from_pandas(df, preserve_index=False)


# ------------------------------------------------------------------ comparing selections

def compare_selections(tables: dict[str, pd.DataFrame], reference: str | None = None,
                       clusters: pd.Series | None = None) -> pd.DataFrame:
    """Per selection: size, metric means, clusters covered (by `clusters` if given, else the table's own labels),
    mean response length, and Jaccard overlap of its uuids with `reference` (chapters 05 and 06)."""
    ref = set(tables[reference]["uuid"]) if reference else None
    rows = []
    for name, t in tables.items():
        lab = clusters.reindex(t["uuid"]) if clusters is not None else t.loc[t["cluster"] >= 0, "cluster"]
        row = {"selection": name, "n": len(t), **{f"mean_{m}": t[m].mean() for m in METRICS},
               "clusters_covered": int(lab.nunique()), "mean_response_chars": t["response"].str.len().mean()}
        if ref is not None:
            u = set(t["uuid"])
            row[f"jaccard_vs_{reference}"] = len(u & ref) / len(u | ref)
        rows.append(row)
    return pd.DataFrame(rows).set_index("selection")


def jaccard_matrix(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Pairwise Jaccard overlap of the selections' uuid sets."""
    sets = {n: set(t["uuid"]) for n, t in tables.items()}
    names = list(sets)
    return pd.DataFrame([[len(sets[a] & sets[b]) / len(sets[a] | sets[b]) for b in names] for a in names],
                        index=names, columns=names)


def planted_means(tables: dict[str, pd.DataFrame], truth: pd.DataFrame) -> pd.DataFrame:
    """Demo zoo only: mean planted difficulty / spread / stability of each selection, and of the whole zoo."""
    cols = ["difficulty", "spread", "stability"]
    out = pd.DataFrame({n: truth.reindex(t["uuid"])[cols].mean() for n, t in tables.items()}).T
    out.loc["(whole zoo)"] = truth[cols].mean()
    return out.add_prefix("planted_")
