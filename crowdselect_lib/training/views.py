"""What chapter 07 shows: the loss mask of one example, loss curves (one panel per objective: an SFT NLL and a DPO
loss are different quantities), a loss summary, a trained student's answer, and the GPU command line."""
from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd

from ..escaping import literal_figure_text
from ..reporting.plots import color, pyplot
from ..reporting.registry import subset_label
from .data import SFT_METHODS, end_of_turn_positions, loss_mask_table, mask_boundary, use_end_of_turn
from .fit import load_trained
from .trainers import build_trainer

OBJECTIVE = {"sft_full": "SFT NLL", "sft_lora": "SFT NLL", "dpo": "DPO loss", "simpo": "SimPO loss",
             "orpo": "ORPO loss"}
YLABEL = {"SFT NLL": "nats per answer token", "DPO loss": "−log σ(β · margin)", "SimPO loss": "−log σ(margin − γ)",
          "ORPO loss": "NLL + λ · odds-ratio term"}


def label_preview(cfg, row: dict, student: str | None = None, width: int | None = 6) -> pd.DataFrame:
    """How TRL tokenizes one SFT chat row for `student`: ``position, token, label, in_loss`` (label -100 = the
    prompt, not in the loss). `width`: only the tokens around the prompt/answer boundary and the last ones."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(cfg.training, "sft_lora", [row], tmp, model_name=student, max_steps=1)
        table = loss_mask_table(trainer.processing_class, trainer.train_dataset[0])
    return table if width is None else mask_boundary(table, width)


def end_of_turn_coverage(run, cfg, student: str | None = None) -> pd.DataFrame:
    """Does the loss teach the student to stop? Per SFT subset of the run (`training.subsets`, first
    `training.demo_examples` rows): ``rows``; ``kept``, the rows whose answer's end-of-turn token sits inside
    `training.max_length` (TRL keeps the first max_length tokens, so it is in the loss); ``cut``, the rows cut
    before it; ``share_kept``; ``longest`` (tokens of the longest row); ``first_cut``, the first cut row's
    instruction ('' when none is cut)."""
    from ..models import load_tokenizer
    from .run import subset_names, training_rows

    t = cfg.training
    name = student or t.student
    tok = load_tokenizer(name, revision=t.student_revisions.get(name))
    if t.replace_eos:
        use_end_of_turn(tok)
    out = []
    for sub in subset_names(cfg):
        rows = training_rows(run, cfg, sub, "sft_full")
        pos = end_of_turn_positions(tok, rows)
        cut = np.flatnonzero(pos >= t.max_length)
        out.append({"subset": sub, "rows": len(rows), "kept": len(rows) - len(cut), "cut": len(cut),
                    "share_kept": (len(rows) - len(cut)) / len(rows), "longest": int(pos.max()) + 2,
                    "first_cut": rows[cut[0]]["messages"][-2]["content"] if len(cut) else ""})
    return pd.DataFrame(out)


def loss_summary(history: pd.DataFrame) -> pd.DataFrame:
    """One row per training: steps, and the first / last logged loss in the column of its objective (SFT NLL
    per answer token for SFT; the preference loss for DPO / SimPO / ORPO: not comparable with an NLL)."""
    rows = []
    for (system, subset, method), g in history.groupby(["system", "subset", "method"], sort=False):
        g = g.sort_values("step")
        kind = "sft_nll" if method in SFT_METHODS else "preference_loss"
        rows.append({"system": system, "subset": subset, "method": method, "steps": int(g["step"].max()),
                     f"{kind}_first": g["loss"].iloc[0], f"{kind}_last": g["loss"].iloc[-1]})
    cols = ["system", "subset", "method", "steps", "sft_nll_first", "sft_nll_last", "preference_loss_first",
            "preference_loss_last"]
    return pd.DataFrame(rows).reindex(columns=cols)


def subset_colours(subsets) -> dict:
    """The colour of each subset, the one every chapter uses (`reporting.plots.color` of its paper label)."""
    return {s: color(subset_label(s), i) for i, s in enumerate(dict.fromkeys(subsets))}


def plot_loss_curves(history: pd.DataFrame, title: str | None = None, smooth: int = 1):
    """Training loss per optimizer step, one panel per objective (`OBJECTIVE`: the SFT NLL, the DPO / SimPO / ORPO
    losses are different quantities), a line per training coloured by subset (`subset_colours`), dashed for
    LoRA; each panel's title names its learning rate(s) (`loss_history`'s ``learning_rate``). `smooth`: rolling-mean window. Returns a `matplotlib.figure.Figure` (a notebook shows it inline, like
    every chapter figure)."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    if history.empty:
        raise ValueError("no finished training to plot (run the training cells first)")
    colours = subset_colours(history["subset"])
    objective = history["method"].map(OBJECTIVE)
    panels = list(dict.fromkeys(objective))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.6), squeeze=False, layout="constrained")
    for ax, name in zip(axes[0], panels):
        for (system, subset, method), g in history[objective == name].groupby(["system", "subset", "method"],
                                                                               sort=False):
            g = g.sort_values("step")
            y = g["loss"].rolling(smooth, min_periods=1).mean() if smooth > 1 else g["loss"]
            ax.plot(g["step"], y, color=colours[subset], ls="--" if method.endswith("lora") else "-",
                    marker="o" if len(g) < 12 else None, ms=3, lw=1.6,
                    label=f"{subset_label(subset)} · {subset} ({method})")
        rates = sorted(set(history.loc[objective == name, "learning_rate"])) if "learning_rate" in history else []
        lr = f" · lr {', '.join(f'{r:g}' for r in rates)}" if rates else ""
        ax.set(xlabel="optimizer step", ylabel=f"{name} ({YLABEL[name]})", title=f"{name}{lr}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    return literal_figure_text(fig)


def sample_answer(path, instruction: str, max_new_tokens: int = 48) -> dict:
    """Greedy answer of a trained student (`load_trained`) to one instruction through its saved chat template:
    ``answer``, ``new_tokens`` and ``stopped`` (True = it ended at its end-of-turn token before the limit)."""
    import torch

    tok, model = load_trained(path)
    ids = tok.apply_chat_template([{"role": "user", "content": instruction}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True).to(model.device)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    stops = set(np.atleast_1d(model.generation_config.eos_token_id).tolist())
    return {"answer": tok.decode(new, skip_special_tokens=True), "new_tokens": len(new),
            "stopped": bool(new) and new[-1] in stops}


def accelerate_command(params_file: str, subset: str = "crowdselect", method: str = "sft_full",
                       config: str = "params/accelerate/ddp.yaml") -> str:
    """The command that trains one subset of a params file's run on every GPU of a machine."""
    return (f"accelerate launch --config_file {config} -m crowdselect_lib.training "
            f"--params {params_file} --subset {subset} --method {method}")
