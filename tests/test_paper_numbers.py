"""The paper's numbers (``crowdselect_lib/data/paper_numbers.csv``) against the paper text we reproduce, the
ACL-submission text of arXiv 2503.01836 (``../shared/docs/papers/crowdselect.txt``): every ``acl`` number is read
back from its table in that text, cell by cell, with its Arena-Hard 95% interval and average answer tokens.
Encoding of the CSV: the header rows (table ``all``) of ``crowdselect_lib/data/paper_notes.csv``."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
PAPER_TEXT = REPO.parent / "shared" / "docs" / "papers" / "crowdselect.txt"
NUMBERS = REPO / "crowdselect_lib" / "data" / "paper_numbers.csv"
NOTES = REPO / "crowdselect_lib" / "data" / "paper_notes.csv"
RESULT_TABLES = ["1", "2", "3", "4", "7", "8"] + [str(t) for t in range(9, 19)]   # Tables 5, 6: models, settings
KEY = ["table", "row", "column", "version"]

FOUNDATION = [f"{m} {a}" for m in ("Difficulty", "Separability", "Stability") for a in ("↓", "↑")]
# per table: how a text line becomes (row, column) -- "group": row "<group> / <line label>" (Arena-Hard-95%CI
# lines hold the intervals of the Arena-Hard line above); "by_benchmark": row "<line label> / <benchmark>";
# "sweep": one line per weight vector (MT-Bench, Arena-Hard); "losses": one line per data size or weight vector
# (train loss, eval loss, MT-Bench score and tokens, Arena-Hard score, interval and tokens).
LAYOUT = {
    "1": ("by_benchmark", ["DirectScore"] + FOUNDATION + ["Multi"]),
    "2": ("group", ["Base", "Random", "Tags", "IFD (pre)", "Difficulty ↑", "Separability ↑", "Stability ↑", "Multi"]),
    "3": ("sweep", ["MT-Bench", "Arena-Hard"]),
    "4": ("group", [f"{m} + cluster" for m in ("Random", "Difficulty ↑", "Separability ↑", "Stability ↑")]),
    "7": ("losses", None), "8": ("losses", None),
    "9": ("group", ["Base"] + FOUNDATION),
    "10": ("group", ["Random", "Tags", "Direct-Score ↓", "Direct-Score ↑", "Length ↓", "Length ↑",
                     "IFD (no_pre)", "IFD (pre)"]),
    "11": ("group", ["Base"] + FOUNDATION),
    "13": ("group", ["Base", "Random + cluster"] + [f"{m} + cluster" for m in FOUNDATION]),
    "14": ("losses", None), "15": ("losses", None), "16": ("losses", None),
    "17": ("group", ["Random"] + FOUNDATION),
    "18": ("group", FOUNDATION + ["Reward-Score ↓", "Reward-Score ↑"]),
}
LAYOUT["12"] = LAYOUT["10"]
STUDENT_GROUPS = {"2", "9", "10", "11", "12", "13"}      # groups are students, printed in several spellings

CELL = re.compile(r"^(?:<u>)?(?P<v>\d+(?:\.\d+)?)(?:</u>)?\s*_?(?:\((?P<lo>-?\d+\.\d+),\s*(?P<hi>-?\d+\.\d+)\))?$")
CI = re.compile(r"^\((?P<lo>-?\d+\.\d+),\s*(?P<hi>-?\d+\.\d+)\)$")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def paper_text() -> str:
    if not PAPER_TEXT.exists():
        pytest.skip(f"paper text not found at {PAPER_TEXT} (shared docs are not part of the repository)")
    return PAPER_TEXT.read_text(encoding="utf-8")


def table_regions(text: str) -> dict[str, list[str]]:
    """Table number -> its printed rows: the first run of tab-separated lines after the "Table N:" caption
    (before the next caption)."""
    lines = text.replace("−", "-").splitlines()
    caps = [(i, m.group(1)) for i, line in enumerate(lines) if (m := re.match(r"Table (\d+): ", line))]
    out = {}
    for (i, n), (j, _) in zip(caps, caps[1:] + [(len(lines), "")]):
        block = lines[i + 1: j]
        start = next(k for k, line in enumerate(block) if "\t" in line)
        end = next((k for k in range(start, len(block)) if "\t" not in block[k]), len(block))
        out[n] = block[start:end]
    return out


def student(label: str) -> str:
    """"Llama3.2-3b-base", "Qwen3.2-3b-instruct", "Qwen-3b-base" ... -> the CSV's student names."""
    low = label.lower()
    return ("Llama-3.2-3B" if "llama" in low else "Qwen2.5-3B") + ("-Instruct" if "instruct" in low else "")


def weights(label: str) -> str:
    return "w=(" + ", ".join(label.split("_")) + ")" if re.fullmatch(r"-?[\d.]+(_-?[\d.]+){2}", label) else label


def _cell(text: str) -> dict:
    m = CELL.match(text.strip())
    if not m:
        raise ValueError(f"unreadable cell {text!r}")
    return {"value": float(m["v"]), "ci_low": float(m["lo"]) if m["lo"] else None,
            "ci_high": float(m["hi"]) if m["hi"] else None, "underlined": "<u>" in text}


def parse_table(n: str, lines: list[str]) -> pd.DataFrame:
    """Cells of result table `n` as printed: table, row, column, value, ci_low, ci_high, avg_tokens, underlined
    (names as in paper_numbers.csv, see `LAYOUT`)."""
    kind, columns = LAYOUT[n]
    out, group = [], ""
    for line in lines:
        label, *cells = [c.strip() for c in line.split("\t")]
        if not any(cells):
            group = student(label) if n in STUDENT_GROUPS else label
            continue
        if not any(CELL.match(c) or CI.match(c) for c in cells if c):
            continue                                                   # header line
        cells = cells[: len(columns)] if columns else cells
        if kind == "group" and label.endswith("95%CI"):
            for col, c in zip(columns, cells):
                m = CI.match(c)
                hit = [r for r in out if r["row"] == f"{group} / Arena-Hard" and r["column"] == col]
                if not m or len(hit) != 1:
                    raise ValueError(f"Table {n}: interval {c!r} of {group}/{col} has no Arena-Hard cell")
                hit[0].update(ci_low=float(m["lo"]), ci_high=float(m["hi"]))
        elif kind in ("group", "by_benchmark", "sweep"):
            row = {"group": f"{group} / {label}", "by_benchmark": f"{label} / {group}", "sweep": weights(label)}[kind]
            if len(cells) != len(columns):
                raise ValueError(f"Table {n}: line {line!r} has {len(cells)} cells, expected {len(columns)}")
            out += [{"row": row, "column": col, **_cell(c)} for col, c in zip(columns, cells)]
        else:                                                          # losses
            _, _, mt, mt_tok, ah, ci, ah_tok = cells
            m = CI.match(ci)
            out += [{"row": weights(label), "column": "MT-Bench", **_cell(mt), "avg_tokens": float(mt_tok)},
                    {"row": weights(label), "column": "Arena-Hard", **_cell(ah), "avg_tokens": float(ah_tok),
                     "ci_low": float(m["lo"]), "ci_high": float(m["hi"])}]
    df = pd.DataFrame(out, columns=["row", "column", "value", "ci_low", "ci_high", "avg_tokens", "underlined"])
    df.insert(0, "table", n)
    return df


def parsed_tables(text: str) -> pd.DataFrame:
    regions = table_regions(text)
    return pd.concat([parse_table(n, regions[n]) for n in RESULT_TABLES], ignore_index=True)


def read_numbers() -> pd.DataFrame:
    return pd.read_csv(NUMBERS, dtype={c: str for c in ("table", "row", "column", "source", "note", "version")},
                       keep_default_na=False, na_values={c: [""] for c in ("value", "ci_low", "ci_high", "avg_tokens")})


@pytest.fixture(scope="module")
def text() -> str:
    return paper_text()


@pytest.fixture(scope="module")
def numbers() -> pd.DataFrame:
    return read_numbers()


# ------------------------------------------------------------------ the file on its own

def test_table_ids_keys_and_versions(numbers):
    assert list(numbers.columns) == ["table", "row", "column", "value", "source", "note", "version",
                                     "ci_low", "ci_high", "avg_tokens"]
    assert set(numbers["table"]) == set(RESULT_TABLES) | {"v1-17", "abstract"}
    assert not numbers.duplicated(KEY).any(), numbers[numbers.duplicated(KEY, keep=False)]
    assert set(numbers["version"]) == {"acl", "v1"}
    assert numbers["value"].notna().all() and (numbers["source"] != "").all()
    acl, v1 = numbers[numbers["version"] == "acl"], numbers[numbers["version"] == "v1"]
    assert acl["source"].str.startswith("CrowdSelect ACL-submission text (arXiv 2503.01836)").all()
    assert (v1["source"].str.contains("2503.01836v1")).all()
    only_v1 = numbers[numbers["table"] == "v1-17"]
    assert len(only_v1) == 18 and (only_v1["version"] == "v1").all()
    assert only_v1["note"].str.startswith("arXiv v1 only").all()
    # a v1 row exists only beside an acl row of the same cell whose value differs
    other = v1[v1["table"] != "v1-17"].merge(acl, on=["table", "row", "column"], suffixes=("_v1", "_acl"))
    assert len(other) == (v1["table"] != "v1-17").sum()
    assert (other["value_v1"] != other["value_acl"]).all()
    assert len(acl[acl["table"].isin(RESULT_TABLES)]) == 664


def test_spot_checks_read_by_hand(numbers):
    v = numbers.set_index(KEY)["value"]
    for strategy, acl, v1 in [("Best-answer", 85.5, 80.6), ("Random", 82.3, 71.9), ("Top5-random", 83.1, 76.6)]:
        assert v[("1", f"{strategy} / Arena-Hard", "Multi", "acl")] == acl
        assert v[("1", f"{strategy} / Arena-Hard", "Multi", "v1")] == v1
    assert v[("2", "Qwen2.5-3B-Instruct / MT-Bench", "Stability ↑", "acl")] == 7.294
    assert v[("9", "Qwen2.5-3B / MT-Bench", "Difficulty ↓", "acl")] == 5.137
    assert v[("17", "SimPO / MT-Bench", "Difficulty ↑", "acl")] == 7.137
    assert v[("18", "Skywork-Reward-Gemma-2-27B / Arena-Hard", "Reward-Score ↓", "acl")] == 56.1
    assert v[("v1-17", "w=(1, 1, 2)", "MT-Bench", "v1")] > 0
    ci = numbers.set_index(KEY)[["ci_low", "ci_high"]]
    assert tuple(ci.loc[("2", "Llama-3.2-3B-Instruct / Arena-Hard", "Multi", "acl")]) == (-0.8, 1.1)
    assert tuple(ci.loc[("12", "Llama-3.2-3B-Instruct / Arena-Hard", "Tags", "acl")]) == (-0.2, -0.2)
    tok = numbers.set_index(KEY)["avg_tokens"]
    assert tok[("7", "0.25k", "MT-Bench", "acl")] == 301 and tok[("16", "w=(1, 1, 2)", "Arena-Hard", "acl")] == 290


# ------------------------------------------------------------------ against the paper text

def test_every_acl_number_is_printed_in_its_table(text, numbers):
    """Loose check, independent of the layout: each acl value (and interval, tokens) is among the numbers
    printed in its table's region of the text."""
    regions = table_regions(text)
    acl = numbers[(numbers["version"] == "acl") & numbers["table"].isin(RESULT_TABLES)]
    printed = {n: {float(x) for x in NUMBER.findall("\n".join(regions[n]))} for n in RESULT_TABLES}
    for col in ("value", "ci_low", "ci_high", "avg_tokens"):
        have = acl[acl[col].notna()]
        missing = have[[x not in printed[t] for t, x in zip(have["table"], have[col])]]
        assert missing.empty, f"{col} not printed in its table:\n{missing[['table', 'row', 'column', col]]}"
    abstract = text.split("Abstract", 1)[1].split("1 Introduction", 1)[0]
    for x in numbers.loc[numbers["table"] == "abstract", "value"]:
        assert f"{x:g}%" in abstract


def test_every_printed_cell_matches_the_csv(text, numbers):
    """Strict check: parse each result table by its layout and compare cell by cell (all 664 cells)."""
    printed = parsed_tables(text)
    assert len(printed) == 664
    acl = numbers[(numbers["version"] == "acl") & numbers["table"].isin(RESULT_TABLES)]
    both = printed.merge(acl, on=["table", "row", "column"], how="outer", suffixes=("_text", ""), indicator=True)
    assert (both["_merge"] == "both").all(), both.loc[both["_merge"] != "both", ["table", "row", "column", "_merge"]]
    for col in ("value", "ci_low", "ci_high", "avg_tokens"):
        a, b = both[f"{col}_text"], both[col]
        bad = both[~((a == b) | (a.isna() & b.isna()))]
        assert bad.empty, f"{col} differs from the text:\n{bad[['table', 'row', 'column', col + '_text', col]]}"


def test_intervals_and_tokens_where_printed(text, numbers):
    acl = numbers[numbers["version"] == "acl"]
    ah = acl["row"].str.endswith("Arena-Hard") | (acl["column"] == "Arena-Hard")
    res = acl["table"].isin(RESULT_TABLES)
    assert acl.loc[res & ah, ["ci_low", "ci_high"]].notna().all().all()          # every table prints them
    assert acl.loc[~ah, ["ci_low", "ci_high"]].isna().all().all()
    has_tokens = acl["table"].isin(["7", "8", "14", "15", "16"])
    assert acl.loc[has_tokens, "avg_tokens"].notna().all() and acl.loc[~has_tokens, "avg_tokens"].isna().all()


def test_notes_name_the_anchors_and_real_tables(numbers):
    notes = pd.read_csv(NOTES, dtype=str, keep_default_na=False)
    assert list(notes.columns) == ["table", "note"] and (notes["note"] != "").all()
    assert set(notes["table"]) <= set(numbers["table"]) | {"all"}
    kinds = notes["note"].str.extract(r"^(\w+):")[0]
    assert kinds.notna().all() and set(kinds) <= {"encoding", "marking", "anchor", "inconsistency", "caption"}
    acl = numbers[numbers["version"] == "acl"]
    fifty = acl[(acl["value"] == 50.0) & acl["row"].str.endswith("Arena-Hard")]
    anchors = notes.loc[kinds == "anchor"]
    named = {(t, m[0], m[1]) for t, n in zip(anchors["table"], anchors["note"])
             for m in [re.search(r"row '([^']+)', column '([^']+)'", n).groups()]}
    assert {(t, r, c) for t, r, c in zip(fifty["table"], fifty["row"], fifty["column"])} == named
    assert set(notes.loc[kinds == "marking", "table"]) == set(RESULT_TABLES)
