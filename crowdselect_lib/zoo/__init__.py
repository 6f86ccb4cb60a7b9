"""The zoo (paper §3.1, chapter 01): `model` (the data model and its validation), `sources` (Magpie, AlpacaEval),
`local` (your own crowd's file format), `stream` (a crowd larger than memory, read by batches), `build` (a crowd
from instructions alone), `demo` (the simulated zoo with planted truth), `holdout` (a fixed held-out split, never
selectable), `plots` (chapter 01's figures).

Step cache (issue 10): `zoo_step(run, cfg)` is the zoo's key, computed from the config alone: the `zoo:` section,
`run.seed` for the demo, and a fingerprint of the local input files (`zoo.data_dir`) and of the packaged model
tables. `load_run_zoo(run, cfg)` reads the zoo of that key, or loads, validates and saves it
(``runs/<run>/zoo/<source>/<key>/``, ``latest`` beside it).
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pandas as pd

from ..runs import Step, check_name, fingerprint
from .holdout import heldout_uuids, hold_out
from .demo import DEMO_DEFAULT_RM, SIM_REWARD_MODELS, demo_zoo, planted_correlations
from .model import (KEY_COLUMNS, LABELS, MAX_ABS_SCORE, Zoo, ZooError, alpacaeval_models, check_models,
                    magpie_models, validate, validation_report)
from .build import OFFLINE_CROWD, CostNotConfirmed, answers_step, crowd_models, generate_answers, instruction_table
from .local import (MODELS_FILE, crowd_files, load_local, local_input_files, local_reward_models, read_crowd_file,
                    read_local_models, write_crowd)
from .plots import model_order, plot_scores_by_family
from .stream import ScoreStream, read_rows
from .sources import (ALPACAEVAL_REWARD_MODEL, DEFAULT_REWARD_MODEL, MAGPIE_REPO, MAGPIE_REWARD_MODELS,
                      alpacaeval_instructions, input_files, load_alpacaeval, load_magpie)

ZOO_VERSION = "2"   # kept for old callers: the step key follows the zoo package's code digest (issue 25)
SOURCE_REWARD_MODELS = {"demo": list(SIM_REWARD_MODELS), "magpie": MAGPIE_REWARD_MODELS,
                        "alpacaeval": [ALPACAEVAL_REWARD_MODEL]}
SOURCE_DEFAULT_RM = {"demo": DEMO_DEFAULT_RM, "magpie": DEFAULT_REWARD_MODEL, "alpacaeval": ALPACAEVAL_REWARD_MODEL}


def load_zoo(source: str = "demo", data_dir: str | Path | None = None, *, n_instructions: int = 3000,
             limit: int | None = None, reward_models: list[str] | None = None, seed: int = 0,
             drop_incomplete: bool = False) -> Zoo:
    """Load and validate a zoo. `source` is 'demo' | 'magpie' | 'alpacaeval' | 'local' (see `sources`, `demo`,
    `local`: your own crowd files).

    n_instructions: size of the simulated demo zoo (100 .. 3,000,000). limit: keep the first `limit`
    instructions of a real zoo. reward_models: keep only these score columns (error if unknown or empty).
    """
    if reward_models is not None and len(reward_models) == 0:
        raise ZooError("reward_models=[] keeps no score column; pass None for all of the zoo's reward models")
    if source == "demo":
        zoo = demo_zoo(n_instructions, seed=seed)
    elif source == "magpie":
        zoo = load_magpie(data_dir, limit)
    elif source == "alpacaeval":
        zoo = load_alpacaeval(data_dir, limit)
    elif source == "local":
        zoo = load_local(data_dir, limit)
    else:
        raise ZooError(f"unknown zoo source {source!r}; choose demo, magpie, alpacaeval or local")
    if reward_models is not None:
        unknown = [rm for rm in reward_models if rm not in zoo.reward_models]
        if unknown:
            raise ZooError(f"unknown reward model(s) {unknown}; this zoo has {zoo.reward_models}")
        zoo.responses = zoo.responses.drop(columns=[rm for rm in zoo.reward_models if rm not in reward_models])
        zoo.reward_models = list(reward_models)
        if zoo.default_reward_model not in reward_models:
            zoo.default_reward_model = reward_models[0]
    return validate(zoo, drop_incomplete=drop_incomplete)


def load_config_zoo(cfg) -> Zoo:
    """`load_zoo` with the `zoo:` section of a RunConfig (and `run.seed` for the demo)."""
    z = cfg.zoo
    zoo = load_zoo(z.source, z.data_dir, n_instructions=z.n_instructions, limit=z.limit,
                   reward_models=z.reward_models, seed=cfg.run.seed, drop_incomplete=z.drop_incomplete)
    return hold_out(zoo, z.holdout_fraction, cfg.run.seed) if z.holdout_fraction else zoo


def zoo_reward_models(cfg) -> list[str]:
    """The score columns the configured zoo carries (from the config and, for a local crowd, its files' header)."""
    if cfg.zoo.reward_models:
        return list(cfg.zoo.reward_models)
    if cfg.zoo.source == "local":
        return local_reward_models(cfg.zoo.data_dir)
    return list(SOURCE_REWARD_MODELS[cfg.zoo.source])


def default_reward_model(cfg) -> str:
    """`metrics.reward_model`, else the source's default (Skywork-Reward-Llama-3.1-8B for Magpie, the paper's)."""
    if cfg.metrics.reward_model:
        return cfg.metrics.reward_model
    have = zoo_reward_models(cfg)
    preferred = SOURCE_DEFAULT_RM.get(cfg.zoo.source)
    return preferred if preferred in have else have[0]


def data_fingerprint(source: str, data_dir) -> str:
    """Digest of the contents of the local input files and the model tables (`runs.fingerprint`)."""
    paths = local_input_files(data_dir) if source == "local" and data_dir is not None else input_files(source, data_dir)
    if data_dir is not None and not paths:
        raise FileNotFoundError(f"zoo.data_dir {data_dir} holds none of the {source} input files")
    tables = [Path(str(files("crowdselect_lib").joinpath("data", f"{n}_models.csv"))) for n in ("magpie", "alpacaeval")]
    return fingerprint([*paths, *tables])


def zoo_step(run, cfg) -> Step:
    """The zoo's step key (pure: reads the config and the input files' fingerprint, loads nothing)."""
    z = cfg.zoo
    settings = {"source": z.source, "reward_models": z.reward_models, "drop_incomplete": z.drop_incomplete,
                "files": data_fingerprint(z.source, z.data_dir)}
    if z.source == "demo":
        settings.update(n_instructions=z.n_instructions, seed=cfg.run.seed)
    else:
        settings.update(limit=z.limit, data_dir=None if z.data_dir is None else "local")
    if z.holdout_fraction:                      # a held-out split (never selectable): its own zoo
        settings.update(holdout_fraction=z.holdout_fraction, holdout_seed=cfg.run.seed)
    return Step(run.dir, "zoo", check_name(z.source, "zoo.source"), settings, {}, ZOO_VERSION, "crowdselect_lib.zoo")


def load_run_zoo(run, cfg) -> Zoo:
    """The run's zoo for `cfg`: read when its step is done, else loaded, validated, saved (chapter 01)."""
    st = zoo_step(run, cfg).announce()
    if st.done:
        return Zoo.load(st.dir)
    zoo = load_config_zoo(cfg)
    zoo.save(st.dir)
    st.finish(instructions=int(zoo.responses["uuid"].nunique()), models=len(zoo.models),
              dropped_incomplete=zoo.info.get("dropped_incomplete", 0), data_version=zoo.info.get("data_version"))
    run.update_meta(zoo_source=zoo.source, zoo_label=zoo.label, zoo_key=st.key,
                    data_version=zoo.info.get("data_version"), dropped_incomplete=zoo.info.get("dropped_incomplete", 0))
    return zoo


_HELDOUT: dict[tuple, pd.DataFrame] = {}


def heldout_items(run, cfg) -> pd.DataFrame:
    """``uuid, dataset, instruction, reference``: the first `judge.heldout_items` held-out instructions of the run's
    zoo (`holdout`, their fixed order) with their reference answers (AlpacaEval: GPT-4-turbo's). Read once per
    process and zoo key."""
    key = (str(run.dir), zoo_step(run, cfg).key, cfg.judge.heldout_items)
    if key not in _HELDOUT:
        _HELDOUT[key] = _heldout_items(run, cfg)
    return _HELDOUT[key].copy()


def _heldout_items(run, cfg) -> pd.DataFrame:
    held = load_run_zoo(run, cfg).info.get("heldout_uuids") or []
    if not held:
        raise ZooError("the held-out loss needs held-out instructions: set zoo.holdout_fraction > 0")
    if cfg.zoo.source != "alpacaeval":
        raise ZooError(f"the held-out loss needs reference answers: zoo.source alpacaeval, not {cfg.zoo.source!r}")
    held = held[: cfg.judge.heldout_items] if cfg.judge.heldout_items else held
    inst = alpacaeval_instructions(cfg.zoo.data_dir, cfg.zoo.limit).set_index("uuid")
    missing = [u for u in held if u not in inst.index]
    if missing:
        raise ZooError(f"held-out uuid(s) {missing[:3]} are not in the AlpacaEval instructions")
    t = inst.loc[held]
    blank = t.index[t["reference_output"].fillna("").astype(str).str.strip() == ""].tolist()
    if blank:
        raise ZooError(f"held-out uuid(s) {blank[:3]} have a blank reference answer")
    dataset = t["dataset"].to_numpy() if "dataset" in t else [""] * len(t)
    return pd.DataFrame({"uuid": held, "dataset": dataset, "instruction": t["instruction"].to_numpy(),
                         "reference": t["reference_output"].to_numpy()})


prepare_run_zoo = load_run_zoo   # the chapter 01 name of earlier versions

__all__ = ["Zoo", "ZooError", "load_zoo", "load_config_zoo", "zoo_step", "load_run_zoo", "prepare_run_zoo", "validate",
           "validation_report", "heldout_uuids", "hold_out", "heldout_items", "alpacaeval_instructions",
           "check_models", "magpie_models", "alpacaeval_models", "demo_zoo", "planted_correlations", "zoo_reward_models",
           "default_reward_model", "plot_scores_by_family", "load_local", "crowd_files", "local_input_files",
           "local_reward_models", "read_crowd_file", "read_local_models", "read_rows", "MODELS_FILE", "ScoreStream", "write_crowd", "generate_answers", "crowd_models",
           "answers_step", "instruction_table", "CostNotConfirmed", "OFFLINE_CROWD", "model_order", "KEY_COLUMNS", "LABELS", "MAX_ABS_SCORE", "MAGPIE_REPO", "MAGPIE_REWARD_MODELS",
           "DEFAULT_REWARD_MODEL", "ALPACAEVAL_REWARD_MODEL", "SIM_REWARD_MODELS", "DEMO_DEFAULT_RM", "ZOO_VERSION"]
