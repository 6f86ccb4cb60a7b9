"""The zoo's data model and its validation (paper §3.1): many LLMs answered the same instructions and reward
models graded every answer.

`Zoo.responses`  long table, one row per (instruction, model):
    ``uuid`` (str), ``instruction`` (str), ``model`` (str), ``response`` (str), and one float column per
    reward model (e.g. ``Skywork-Reward-Llama-3.1-8B``).
`Zoo.models`     one row per generator model: ``model``, ``family``, ``size_b`` (billions; NaN = unknown, e.g.
    a closed model: it counts in Difficulty and Separability but not in Stability, eq. 5).
`Zoo.scores(rm)` the dense matrix S (index uuid, one column per model) that the metrics read (eqs. 3-5).

`validate` is the one gate every source passes through: a problem is either a `ZooError` that names it (the
column, uuid, model or value) or, for incomplete instructions with ``drop_incomplete``, a counted drop
recorded in ``Zoo.info``. What is legal but changes a selection is counted in ``Zoo.info`` and shown by
`validation_report`: instructions whose models all scored alike (no ranking signal), uuids that repeat another
uuid's text (each copy can be selected), answers without an instruction (`sources`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd

from ..runs import BadFileError, read_json, write_json, write_parquet

KEY_COLUMNS = ["uuid", "instruction", "model", "response"]
# blank = only these: Unicode whitespace (str.isspace), zero-width space/joiners, word joiner, BOM, NUL
BLANK_CHARS = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
               "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000" "\u180e\u200b\u200c\u200d\u2060\ufeff\x00")
MAX_ABS_SCORE = 1e150   # |score| above this would overflow the variance of eq. 4 (float64 max ~1.8e308)
LABELS = {
    "demo": "offline demo: simulated zoo",
    "magpie": "Magpie-100K-Generator-Zoo (paper data)",
    "alpacaeval": "AlpacaEval zoo (805 instructions x 56 models, GPT-4-turbo preference)",
    "local": "your own crowd (local files: zoo.local)",
}


class ZooError(ValueError):
    """The zoo violates the data model; the message names the offending column, uuid, model or value."""


def model_table(name: str) -> pd.DataFrame:
    """A packaged model -> (family, size_b) table (``crowdselect_lib/data/<name>_models.csv``)."""
    with files("crowdselect_lib").joinpath("data", f"{name}_models.csv").open() as fh:
        df = pd.read_csv(fh, comment="#")
    return df[["model", "family", "size_b"]]


def magpie_models() -> pd.DataFrame:
    """The 19 Magpie generator models in 6 families (Magpie-100K-Generator-Zoo)."""
    return check_models(model_table("magpie"))


def alpacaeval_models() -> pd.DataFrame:
    """The project's family/size table for the AlpacaEval zoo (public sizes; NaN where unpublished)."""
    return check_models(model_table("alpacaeval"))


def model_families(models: pd.DataFrame) -> dict[str, tuple[str, float]]:
    """model -> (family, size_b) of a model table (``model, family, size_b``), the input of `metrics.base_metrics`."""
    return dict(zip(models["model"], zip(models["family"], models["size_b"].astype(float))))


@dataclass
class Zoo:
    responses: pd.DataFrame
    models: pd.DataFrame
    reward_models: list[str]
    source: str
    default_reward_model: str
    truth: pd.DataFrame | None = None        # demo only: the planted latent values per uuid
    info: dict = field(default_factory=dict)  # provenance: data version, what was dropped, ...

    @property
    def label(self) -> str:
        return LABELS.get(self.source, self.source)

    @property
    def model_names(self) -> list[str]:
        return list(self.models["model"])

    def families(self) -> dict[str, tuple[str, float]]:
        """model -> (family, size_b), the input of `metrics.base_metrics`."""
        return model_families(self.models)

    def instructions(self) -> pd.DataFrame:
        """One row per uuid: ``uuid, instruction`` in zoo order."""
        return self.responses[["uuid", "instruction"]].drop_duplicates("uuid").reset_index(drop=True)

    def scores(self, reward_model: str | None = None) -> pd.DataFrame:
        """Dense score matrix S: index uuid (zoo order), one column per model (model-table order)."""
        rm = reward_model or self.default_reward_model
        if rm not in self.reward_models:
            raise ZooError(f"unknown reward model {rm!r}; this zoo has {self.reward_models}")
        r = self.responses
        uuid_codes, uuids = pd.factorize(r["uuid"])
        model_codes = pd.Categorical(r["model"], categories=self.model_names).codes
        mat = np.full((len(uuids), len(self.model_names)), np.nan)
        mat[uuid_codes, model_codes] = r[rm].to_numpy(dtype=float)
        missing = np.argwhere(np.isnan(mat))
        if len(missing):
            i, j = missing[0]
            raise ZooError(f"{len(missing)} (uuid, model) scores missing for {rm!r}, e.g. uuid {uuids[i]!r} "
                           f"model {self.model_names[j]!r}; load with drop_incomplete=True to drop such instructions")
        return pd.DataFrame(mat, index=pd.Index(np.asarray(uuids, dtype=object), name="uuid"),
                            columns=pd.Index(self.model_names, name="model"))

    def summary(self) -> pd.DataFrame:
        """Per reward model: instructions, models, mean/std/min/max of the scores."""
        n_inst, n_models = self.responses["uuid"].nunique(), self.responses["model"].nunique()
        return pd.DataFrame([{"reward_model": rm, "instructions": n_inst, "models": n_models,
                              **self.responses[rm].agg(["mean", "std", "min", "max"]).to_dict()}
                             for rm in self.reward_models]).set_index("reward_model")

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        write_parquet(self.responses, d / "responses.parquet")
        write_parquet(self.models, d / "models.parquet")
        if self.truth is not None:
            write_parquet(self.truth, d / "truth.parquet")
        write_json({"source": self.source, "reward_models": self.reward_models, "label": self.label,
                    "default_reward_model": self.default_reward_model, "info": self.info}, d / "zoo.json")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "Zoo":
        d = Path(directory)
        if not (d / "zoo.json").exists():
            raise FileNotFoundError(f"no saved zoo in {d} (run chapter 01 first)")
        way_out = f"delete the folder {d} and rerun chapter 01 (or load_run_zoo) to rebuild it"
        try:
            meta = read_json(d / "zoo.json")
        except BadFileError as e:
            raise ZooError(f"{e}: {way_out}") from None
        need = ("source", "reward_models", "default_reward_model")
        if not isinstance(meta, dict) or any(k not in meta for k in need):
            raise ZooError(f"{d / 'zoo.json'} is not a saved zoo's description (a mapping with {', '.join(need)}): "
                           f"{way_out}")
        truth = pd.read_parquet(d / "truth.parquet") if (d / "truth.parquet").exists() else None
        return cls(pd.read_parquet(d / "responses.parquet"), pd.read_parquet(d / "models.parquet"),
                   meta["reward_models"], meta["source"], meta["default_reward_model"], truth, meta.get("info", {}))


# ---------------------------------------------------------------------- validation

def blank_texts(s: pd.Series) -> np.ndarray:
    """True where a text cell is missing, not a string, or only `BLANK_CHARS` (categoricals: checks categories)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = pd.Series(s.cat.categories)
        bad_cat = np.flatnonzero(blank_texts(cats))
        codes = s.cat.codes.to_numpy()
        return (codes < 0) | np.isin(codes, bad_cat)
    stripped = s.str.strip(BLANK_CHARS) if s.dtype == object or pd.api.types.is_string_dtype(s.dtype) else None
    if stripped is None:
        return np.ones(len(s), dtype=bool)
    return (stripped.isna() | (stripped == "")).to_numpy(dtype=bool)


def _short(x, n: int = 60) -> str:
    t = repr(x)
    return t if len(t) <= n else t[: n - 3] + "..."


def check_models(models: pd.DataFrame) -> pd.DataFrame:
    """The model table: unique model names, a family for each, `size_b` a positive number or NaN."""
    for col in ("model", "family", "size_b"):
        if col not in models.columns:
            raise ZooError(f"model table is missing column {col!r}")
    m = models.reset_index(drop=True)
    if blank_texts(m["model"].astype(object)).any():
        raise ZooError("model table has a row without a model name")
    dup = m["model"].duplicated()
    if dup.any():
        raise ZooError(f"model table lists model {m.loc[dup, 'model'].iloc[0]!r} twice")
    fam = blank_texts(m["family"].astype(object))
    if fam.any():
        raise ZooError(f"model {m.loc[fam, 'model'].iloc[0]!r} has no family (family is {m.loc[fam, 'family'].iloc[0]!r})")
    flags = m["size_b"].map(lambda x: isinstance(x, (bool, np.bool_))).to_numpy(dtype=bool)
    if flags.any():
        raise ZooError(f"model {m.loc[flags, 'model'].iloc[0]!r}: size_b {m.loc[flags, 'size_b'].iloc[0]!r} is not a number "
                       "(billions of parameters; leave it empty when unknown)")
    size = pd.to_numeric(m["size_b"], errors="coerce").astype(float)
    bad = size.isna() & m["size_b"].notna()
    if bad.any():
        raise ZooError(f"model {m.loc[bad, 'model'].iloc[0]!r}: size_b {m.loc[bad, 'size_b'].iloc[0]!r} is not a number "
                       "(billions of parameters; leave it empty when unknown)")
    bad = ~np.isfinite(size) & size.notna() | (size <= 0)
    if bad.any():
        raise ZooError(f"model {m.loc[bad, 'model'].iloc[0]!r}: size_b {float(size[bad].iloc[0])!r} must be a positive, "
                       "finite number of billions (or empty when unknown)")
    return m.assign(size_b=size)


def _check_uuids(r: pd.DataFrame) -> pd.DataFrame:
    """uuids present and of one type: strings, or integers (converted to strings)."""
    u = r["uuid"]
    na = u.isna().to_numpy()
    if na.any():
        first = r.loc[na].iloc[0]
        raise ZooError(f"{int(na.sum())} row(s) have no uuid (NaN/None), e.g. model {first['model']!r} instruction "
                       f"{_short(first['instruction'])}; every row needs its instruction's uuid")
    if pd.api.types.is_integer_dtype(u.dtype):
        return r.assign(uuid=u.astype(str))
    if pd.api.types.is_float_dtype(u.dtype) or pd.api.types.is_bool_dtype(u.dtype):
        raise ZooError(f"uuid column has dtype {u.dtype}; uuids must be strings (or integers)")
    uniq = pd.unique(u.to_numpy(dtype=object)) if not isinstance(u.dtype, pd.CategoricalDtype) else u.cat.categories
    kinds = pd.Series([type(x).__name__ for x in uniq])
    if kinds.nunique() > 1 or kinds.iloc[0] != "str":
        ex = {k: uniq[np.flatnonzero(kinds == k)[0]] for k in kinds.unique()}
        raise ZooError(f"uuid column mixes types {sorted(ex)} (e.g. {', '.join(repr(v) for v in ex.values())}); "
                       "make every uuid a string")
    if blank_texts(u).any():
        raise ZooError("a uuid is an empty string")
    return r


def _check_scores(r: pd.DataFrame, reward_models: list[str]) -> pd.DataFrame:
    """Score columns numeric (NaN = missing, handled as incomplete), finite and below `MAX_ABS_SCORE`."""
    for rm in reward_models:
        col = r[rm]
        num = pd.to_numeric(col, errors="coerce") if not pd.api.types.is_float_dtype(col.dtype) else col
        bad = (num.isna() & col.notna()).to_numpy()
        if bad.any():
            first = r.loc[bad].iloc[0]
            raise ZooError(f"{int(bad.sum())} non-numeric score(s) in column {rm!r}, e.g. {first[rm]!r} for uuid "
                           f"{first['uuid']!r} model {first['model']!r}")
        v = num.to_numpy(dtype=float)
        bad = np.isinf(v) | (np.abs(np.nan_to_num(v)) > MAX_ABS_SCORE)
        if bad.any():
            i = np.flatnonzero(bad)[0]
            raise ZooError(f"{int(bad.sum())} infinite or huge score(s) in column {rm!r}, e.g. {float(v[i])!r} for uuid "
                           f"{r['uuid'].iloc[i]!r} model {r['model'].iloc[i]!r} (|score| must be <= {MAX_ABS_SCORE:g})")
        if num is not col:
            r = r.assign(**{rm: v})
    return r


def _check_instructions(r: pd.DataFrame) -> None:
    """Every instruction a non-blank string, one text per uuid."""
    blank = blank_texts(r["instruction"])
    if blank.any():
        first = r.loc[blank].iloc[0]
        raise ZooError(f"{int(blank.sum())} row(s) have no instruction text (None, empty or whitespace), e.g. uuid "
                       f"{first['uuid']!r} model {first['model']!r}")
    n_texts = r.groupby("uuid", sort=False, observed=True)["instruction"].nunique()
    if (n_texts > 1).any():
        u = n_texts.index[n_texts.to_numpy() > 1][0]
        texts = pd.unique(r.loc[r["uuid"] == u, "instruction"].astype(object))[:2]
        raise ZooError(f"{int((n_texts > 1).sum())} uuid(s) carry two instruction texts, e.g. uuid {u!r}: "
                       f"{_short(texts[0])} vs {_short(texts[1])}")


def validate(zoo: Zoo, drop_incomplete: bool = False) -> Zoo:
    """Check the data model (errors name the column, uuid, model or value); with `drop_incomplete`, drop the
    instructions that lack some model's answer or score (counted in ``info``, reasons and first uuids too).

    Errors: empty zoo, no reward model, missing column, bad model table (family, size_b), NaN or mixed-type
    uuids, unknown model, blank instruction or two texts for one uuid, non-numeric / infinite / huge score,
    duplicate (uuid, model), a score column that is one constant, nothing left after `drop_incomplete`. Blank =
    only whitespace, zero-width characters, BOM or NUL. Incomplete (an error unless `drop_incomplete`): a missing
    (uuid, model) row, a NaN score, a missing or blank answer. Counted in ``info``: see `_selection_hazards`.
    """
    r = zoo.responses
    if r is None or len(r) == 0:
        raise ZooError("empty zoo: no responses")
    if not zoo.reward_models:
        raise ZooError("zoo has no reward-model score column (reward_models is empty)")
    missing_cols = [c for c in KEY_COLUMNS + list(zoo.reward_models) if c not in r.columns]
    if missing_cols:
        raise ZooError(f"zoo is missing column(s) {missing_cols}")
    models = check_models(zoo.models)
    if blank_texts(r["model"]).any():
        first = r.loc[blank_texts(r["model"])].iloc[0]
        raise ZooError(f"a row of uuid {first['uuid']!r} has no model name")
    r = _check_uuids(r.reset_index(drop=True))
    unknown = sorted(set(pd.unique(r["model"])) - set(models["model"]))
    if unknown:
        raise ZooError(f"model(s) without a family entry: {unknown}")
    _check_instructions(r)
    r = _check_scores(r, zoo.reward_models)
    dup = r.duplicated(["uuid", "model"]).to_numpy()
    if dup.any():
        first = r.loc[dup].iloc[0]
        raise ZooError(f"{int(dup.sum())} duplicate (uuid, model) row(s), e.g. uuid {first['uuid']!r} "
                       f"model {first['model']!r}")
    models = models[models["model"].isin(pd.unique(r["model"]))].reset_index(drop=True)

    reasons = {"no_answer": blank_texts(r["response"]), "nan_score": r[zoo.reward_models].isna().any(axis=1).to_numpy()}
    bad_cell = reasons["no_answer"] | reasons["nan_score"]
    counts = r.loc[~bad_cell].groupby("uuid", sort=False, observed=True)["model"].size()
    counts = counts.reindex(pd.unique(r["uuid"]), fill_value=0)
    incomplete = counts.index[counts.to_numpy() < len(models)]
    info = dict(zoo.info)
    if len(incomplete):
        if not drop_incomplete:
            u = incomplete[0]
            rows = r[r["uuid"] == u]
            why = [f"{m}: {w}" for m, a, s in zip(rows["model"], reasons["no_answer"][rows.index],
                                                  reasons["nan_score"][rows.index])
                   for w in (["missing or blank answer"] if a else []) + (["NaN score"] if s else [])]
            absent = sorted(set(models["model"]) - set(rows["model"]))
            why += [f"{m}: no row" for m in absent]
            raise ZooError(f"{len(incomplete)} instruction(s) lack some model's answer or score, e.g. uuid {u!r} "
                           f"({'; '.join(why[:5])}); pass drop_incomplete=True to drop them (the count is reported)")
        gone = r["uuid"].isin(incomplete).to_numpy()
        info.update(dropped_incomplete=int(len(incomplete)), dropped_uuids=[str(u) for u in incomplete[:50]],
                    dropped_reasons={"no_answer": int(reasons["no_answer"].sum()),
                                     "nan_score": int(reasons["nan_score"].sum()),
                                     "missing_rows": int(len(incomplete) * len(models) - gone.sum())})
        r = r.loc[~gone].reset_index(drop=True)
        if not len(r):
            raise ZooError(f"drop_incomplete dropped all {len(incomplete)} instruction(s): none has every model's "
                           f"answer and score (blank answers {info['dropped_reasons']['no_answer']}, NaN scores "
                           f"{info['dropped_reasons']['nan_score']}, missing rows "
                           f"{info['dropped_reasons']['missing_rows']}); check the zoo's model list")
    else:
        info.setdefault("dropped_incomplete", 0)
    info.update(_selection_hazards(r, zoo.reward_models))
    return Zoo(r, models, list(zoo.reward_models), zoo.source, zoo.default_reward_model, zoo.truth, info)


def _selection_hazards(r: pd.DataFrame, reward_models: list[str]) -> dict:
    """Refuse a score column that is one constant (every metric equal: a selection would be uuid order); count
    instructions whose models all scored alike (``tied_instructions``, per reward model) and uuids that repeat an
    earlier uuid's instruction text (``duplicate_texts``: each copy can enter a subset)."""
    tied = {}
    for rm in reward_models:
        by = r.groupby("uuid", sort=False, observed=True)[rm]
        lo, hi = by.min(), by.max()
        if len(lo) > 1 and lo.min() == hi.max():
            raise ZooError(f"every score in column {rm!r} is {float(lo.iloc[0])!r}: each instruction would get the same "
                           "difficulty, separability and stability, and a selection would just be uuid order")
        tied[rm] = int((lo == hi).sum())
    inst = r.drop_duplicates("uuid")
    dup = inst["instruction"].duplicated(keep="first").to_numpy()
    out = {"tied_instructions": tied, "duplicate_texts": int(dup.sum())}
    if dup.any():
        first = inst.loc[dup, "instruction"].iloc[0]
        out["duplicate_text_example"] = {"uuids": [str(u) for u in inst.loc[inst["instruction"] == first, "uuid"][:5]],
                                         "text": _short(first, 80)}
    return out


def validation_report(zoo: Zoo) -> str:
    """One line per count of ``Zoo.info`` a reader should see before selecting: dropped, tied, duplicate, orphan."""
    i = zoo.info
    n = zoo.responses["uuid"].nunique()
    lines = [f"{zoo.label} | {i.get('data_version', '?')} | {n:,} instructions x {len(zoo.models)} models",
             f"dropped as incomplete: {i.get('dropped_incomplete', 0)} {i.get('dropped_reasons', '')}".rstrip()]
    for rm, k in (i.get("tied_instructions") or {}).items():
        if k:
            lines.append(f"all models scored alike ({rm}): {k} instruction(s); they rank among themselves by uuid")
    if i.get("duplicate_texts"):
        ex = i.get("duplicate_text_example", {})
        lines.append(f"uuids repeating an earlier uuid's text: {i['duplicate_texts']} (each copy can be selected), e.g. "
                     f"{ex.get('uuids')} {ex.get('text', '')}")
    if i.get("orphan_answers"):
        lines.append(f"answers without an instruction (not loaded): {i['orphan_answers']}, e.g. "
                     f"{i.get('orphan_example', '')}")
    return "\n".join(lines)
