"""The training stage of a run (chapter 07): which subsets, students, methods and seeds are trained, each one a
keyed step (issue 10), and THE discovery of trained students that the judge reads.

- `subset_table(run, cfg, name)`: a selection subset of chapter 05 (`selection.load_run_selection`) or a
  baseline of chapter 06 (`baselines.load_run_baseline`), by name.
- `train_step(run, cfg, subset, student, method, seed)`: the key of one training, from the config alone: the
  settings that change the model (method, lr, epochs, steps, batch, length, LoRA, betas, precision, end-of-turn,
  seed, student name and revision, the global batch, the demo cap, the eval split) and the subset's own step key
  (plus the zoo's for preference pairs). The model lives in ``runs/<run>/training/<name>/<key>/model/``;
  checkpoints in ``checkpoints/`` beside it (a killed run resumes); ``manifest.json`` only when training finished.
- `trained_systems(run, cfg)`: one row per configured training (``system, subset, student, method, seed, key,
  path, done``), computed from the config: answers are keyed by `key`, so a retrained student is never judged
  on its old answers.
- `run_training` / `train_all`: train (or reuse) one or every configured training.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import baselines, selection, zoo
from ..runs import Step, check_name, read_json, slug
from .data import PREFERENCE_METHODS, SFT_METHODS, preference_pairs, preference_rows, split_rows
from .fit import TrainResult, train
from .trainers import is_main_process, learning_rate_for, steps_for, uses_lora

TRAINING_VERSION = "1"   # bump when a change of code changes the model a config trains
SUMMARY_COLUMNS = ["system", "subset", "method", "student", "seed", "key", "steps", "n_train", "train_loss",
                   "eval_loss", "seconds", "reused"]


def students(cfg) -> list[str]:
    """The students this run trains: ``training.students``, else ``[training.student]``."""
    return list(cfg.training.students or [cfg.training.student])


UNTRAINED_ROWS = ("base",)   # table rows that are untouched students, not trained subsets


def subset_names(cfg) -> list[str]:
    """The subsets this run trains: ``training.subsets`` when set (it wins); else the rows the table prints
    (``tables.rows`` less the untouched ``base``: Table 2 trains its 7 printed subsets, not all 14); else every
    selection subset (chapter 05) and every baseline (chapter 06). A row that is none of these is an error."""
    if cfg.training.subsets is not None:
        return list(cfg.training.subsets)
    every = [s.name for s in cfg.selection.subsets] + list(cfg.baselines.methods)
    if cfg.tables.rows is None:
        return every
    unknown = [r for r in cfg.tables.rows if r not in every and r not in UNTRAINED_ROWS]
    if unknown:
        raise ValueError(f"tables.rows names {unknown}: neither a selection subset (selection.subsets), a baseline "
                         f"(baselines.methods) nor an untouched row {list(UNTRAINED_ROWS)}")
    return [r for r in cfg.tables.rows if r not in UNTRAINED_ROWS]


def subset_kind(cfg, name: str) -> str:
    """'selection' (a subset of ``selection.subsets``) or 'baseline' (a method of ``baselines.methods``)."""
    sel = [s.name for s in cfg.selection.subsets]
    if name in sel:
        return "selection"
    if name in cfg.baselines.methods:
        return "baseline"
    raise ValueError(f"training subset {name!r} is neither a selection subset (selection.subsets: {sel}) nor a "
                     f"baseline (baselines.methods: {list(cfg.baselines.methods)})")


def subset_step(run, cfg, name: str) -> Step:
    """The step key of a training subset (its selection's or its baseline's)."""
    if subset_kind(cfg, name) == "selection":
        return selection.selection_step(run, cfg, name)
    return baselines.baseline_step(run, cfg, name)


def subset_table(run, cfg, name: str) -> pd.DataFrame:
    """The selection table of `name` (columns `selection.SELECTION_COLUMNS`, in rank order)."""
    if subset_kind(cfg, name) == "selection":
        return selection.load_run_selection(run, cfg, name)
    return baselines.load_run_baseline(run, cfg, name)


def train_settings(cfg, method: str, student: str, seed: int) -> dict:
    """Exactly the config values that change the model of one training (the step's settings)."""
    t = cfg.training
    s = {"method": method, "student": student, "revision": t.student_revisions.get(student), "seed": seed,
         "learning_rate": learning_rate_for(t, method), "epochs": t.epochs, "max_steps": steps_for(t, method),
         "per_device_batch_size": t.per_device_batch_size, "global_batch_size": t.global_batch_size,
         "gradient_accumulation_steps": t.gradient_accumulation_steps, "optim": t.optim,
         "lr_scheduler": t.lr_scheduler, "warmup_steps": t.warmup_steps, "weight_decay": t.weight_decay,
         "max_length": t.max_length, "dtype": t.dtype, "mixed_precision": t.mixed_precision,
         "replace_eos": t.replace_eos, "demo_examples": t.demo_examples, "eval_fraction": t.eval_fraction,
         "eval_split_seed": cfg.run.seed if t.eval_fraction else None}
    if uses_lora(t, method):
        s["lora"] = {"r": t.lora_r, "alpha": t.lora_alpha, "dropout": t.lora_dropout,
                     "target_modules": t.lora_target_modules}
    if method in PREFERENCE_METHODS:
        s["beta"] = {"dpo": t.dpo_beta, "simpo": t.simpo_beta, "orpo": t.orpo_beta}[method]
        s["reward_model"] = cfg.metrics.reward_model     # which answers are chosen / rejected
        if method == "simpo":
            s["simpo_gamma"] = t.simpo_gamma
    return s


def step_name(subset: str, method: str, student: str, seed: int) -> str:
    """``<subset>.<method>.<student>.seed<N>``: a plain folder name."""
    return check_name(f"{subset}.{method}.{slug(student).strip('_.-') or 'student'}.seed{seed}", "training step name")


def train_step(run, cfg, subset: str, student: str, method: str, seed: int) -> Step:
    """The key of one training (pure: the config and the upstream keys; nothing is loaded)."""
    inputs = {"subset": subset_step(run, cfg, subset)}
    if method in PREFERENCE_METHODS:
        inputs["zoo"] = zoo.zoo_step(run, cfg)
    return Step(run.dir, "training", step_name(subset, method, student, seed),
                train_settings(cfg, method, student, seed), inputs, TRAINING_VERSION, "crowdselect_lib.training")


def combinations(cfg) -> list[tuple[str, str, str, int]]:
    """Every (subset, student, method, seed) the config trains, in that nesting order."""
    t = cfg.training
    return [(sub, stu, m, seed) for sub in subset_names(cfg) for stu in students(cfg) for m in t.methods
            for seed in t.seeds]


def system_name(cfg, subset: str, student: str, method: str, seed: int) -> str:
    """``<subset>.<method>``, plus ``.<student>`` / ``.seed<N>`` when the run trains several."""
    parts = [subset, method]
    if len(students(cfg)) > 1:
        parts.append(slug(student).strip("_.-"))
    if len(cfg.training.seeds) > 1:
        parts.append(f"seed{seed}")
    return ".".join(parts)


def trained_systems(run, cfg) -> pd.DataFrame:
    """THE discovery of trained students: one row per configured training, computed from the config (columns
    ``system, subset, student, method, seed, key, path, done``; path = the ``model/`` folder)."""
    rows = []
    for sub, stu, m, seed in combinations(cfg):
        st = train_step(run, cfg, sub, stu, m, seed)
        rows.append({"system": system_name(cfg, sub, stu, m, seed), "subset": sub, "student": stu, "method": m,
                     "seed": seed, "key": st.key, "path": str(st.dir / "model"), "done": st.done})
    return pd.DataFrame(rows, columns=["system", "subset", "student", "method", "seed", "key", "path", "done"])


def training_rows(run, cfg, subset: str, method: str) -> list[dict]:
    """Rows of one subset: chat rows for SFT, (best, worst) preference rows otherwise; the first
    ``training.demo_examples`` only when set."""
    table = subset_table(run, cfg, subset)
    if cfg.training.demo_examples is not None:
        table = table.head(cfg.training.demo_examples)
    if method in SFT_METHODS:
        return selection.to_chat_messages(table)
    return preference_rows(preference_pairs(zoo.load_run_zoo(run, cfg), table["uuid"], cfg.metrics.reward_model))


def _summary_row(cfg, st: Step, subset, student, method, seed, info: dict, reused: bool) -> dict:
    return {"system": system_name(cfg, subset, student, method, seed), "subset": subset, "method": method,
            "student": student, "seed": seed, "key": st.key, "steps": info["steps"], "n_train": info["n_train"],
            "train_loss": info["train_loss"], "eval_loss": info["eval_loss"], "seconds": info["seconds"],
            "reused": reused}


def run_training(run, cfg, subset: str, student: str, method: str, seed: int, callbacks=None) -> dict:
    """Train one (subset, student, method, seed) into its step folder, or reuse it when done; one summary row."""
    st = train_step(run, cfg, subset, student, method, seed).announce()
    if st.done:
        return _summary_row(cfg, st, subset, student, method, seed, st.manifest(), True)
    rows = training_rows(run, cfg, subset, method)
    train_rows, eval_rows = split_rows(rows, cfg.training.eval_fraction, cfg.run.seed)
    res: TrainResult = train(cfg.training, method, train_rows, st.dir, model_name=student, eval_rows=eval_rows,
                             seed=seed, callbacks=callbacks, desc=f"training {st.name}")
    info = {k: v for k, v in res.to_dict().items() if k not in ("log_history", "output_dir", "skipped")}
    if is_main_process():
        st.finish(**info)
    return _summary_row(cfg, st, subset, student, method, seed, info, False)


def train_all(run, cfg, *, subsets: list[str] | None = None, methods: list[str] | None = None,
              student_names: list[str] | None = None, seeds: list[int] | None = None) -> pd.DataFrame:
    """Every configured training (narrowed by the arguments), each trained or reused: `SUMMARY_COLUMNS`."""
    out = [run_training(run, cfg, sub, stu, m, seed) for sub, stu, m, seed in combinations(cfg)
           if (subsets is None or sub in subsets) and (methods is None or m in methods)
           and (student_names is None or stu in student_names) and (seeds is None or seed in seeds)]
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def loss_history(run, cfg) -> pd.DataFrame:
    """Logged losses of every finished training: ``system, subset, method, step, loss, learning_rate`` (long). A run
    shorter than ``training.logging_steps`` logs no step loss: its mean training loss stands at its last step instead."""
    frames = []
    for r in trained_systems(run, cfg).itertuples():
        if not r.done:
            continue
        hist = read_json(Path(r.path).parent / "metrics.json")["log_history"]
        points = [(h["step"], h["loss"]) for h in hist if "loss" in h]
        points = points or [(h["step"], h["train_loss"]) for h in hist if "train_loss" in h][-1:]
        frames.append(pd.DataFrame(points, columns=["step", "loss"])
                      .assign(system=r.system, subset=r.subset, method=r.method,
                              learning_rate=learning_rate_for(cfg.training, r.method)))
    cols = ["system", "subset", "method", "step", "loss", "learning_rate"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
