"""Where the paper, the official CrowdSelect code and this package may differ: every `official` mode and every
reading the paper leaves open, as one named setting each (README "Fidelity"; `shared/docs/method.md`).

`MODES` are the official code's rules (A-G of issue 21); `READINGS` are the open readings. Each entry names the
setting, its default with the reason, the other value, and the paper's cells it moves. `reading_notes(cfg, table)`
gives the notes printed under a table for the settings that changed which systems were trained or judged.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    key: str                 # the setting (dotted params path), or a table file's field
    name: str                # short name of the idea
    default: str             # the default value, as in params/paper.yaml
    other: str               # the other rule, one setting away
    reason: str              # why the default
    tables: tuple[str, ...]  # paper tables whose cells it moves ("*" = every table with that benchmark / row)


MODES = [
    Choice("embedding.pooling", "A embedding pooling", "official",
           "model (the model's masked mean, normalised)",
           "the official utils/get_embedding.py (padded batches of 32, unmasked mean, unnormalised) made the clusters",
           ("1", "2", "3", "4", "13", "14", "15", "16")),
    Choice("baselines.methods (direct_score_bottom)", "B Direct-Score ↓", "built for Tables 10, 12", "-",
           "a plain fix: the paper prints both directions", ("10", "12")),
    Choice("baselines.instag_rule", "C Tags", "official", "instag (InsTag's complexity-first diverse sampling)",
           "the official choose_by_tag.py and the paper's §B.3: per tag until the TOTAL count, then longest by words",
           ("2", "10", "12")),
    Choice("baselines.ifd_pre_format", "D IFD pre-experience format", "alpaca", "chat (the student's template)",
           "Cherry_LLM trains the pre-experienced model in the Alpaca prompt it scores with", ("2", "10", "12")),
    Choice("baselines.ifd_cut_answers", "E IFD answers cut at max_length", "skip", "score",
           "Cherry_LLM's +4 offset skips them (tokenizers without BOS, Qwen); skipped pairs are counted",
           ("2", "10", "12")),
    Choice("baselines.direct_score work key (selection.response)", "F Table 1 Direct-score", "keyed on the response",
           "-", "a plain fix: the three response strategies rate three answer sets", ("1",)),
    Choice("selection.subsets[difficulty_size].direction (table07/08.yaml)", "G Tables 7/8 direction", "bottom",
           "top", "the only data-size script (get_difficulty_series.py) sorts ascending and takes the first N",
           ("7", "8")),
]

READINGS = [
    Choice("judge.anchor_reading", "Arena-Hard anchor", "reanchor",
           "baseline (the base student as the judge's baseline answer)",
           "arena-hard-auto v0.1 judges against gpt-4-0314; re-anchoring keeps its battles and the paper's 50.0 row",
           ("*arena",)),
    Choice("training.global_batch_size", "global batch 16", "16 (8 GPUs x 1 x accumulation 2: 189 steps)",
           "2 (one GPU x 1 x 2: 1,500 steps)", "Table 6 lists accumulation 2 on the paper's 8-GPU server",
           ("*trained",)),
    Choice("training.simpo_beta", "SimPO beta", "2.0", "0.1 (LLaMA-Factory's pref_beta default)",
           "the SimPO paper's range 2.0-2.5; the paper names no beta", ("17",)),
    Choice("selection.response_reward_model", "Table 18 response", "null (each reward model's own best, eq. 2)",
           "Skywork-Reward-Llama-3.1-8B (official choose_best_answer.py, always)",
           "eq. 2 picks the best answer by the reward model in use; Table 18 varies it", ("18",)),
    Choice("metrics.stability_ties", "Stability of a constant family", "official (+1)", "average (0, ours)",
           "the official argsort produced the paper's numbers; on the zoo's float scores ties are rare",
           ("1", "2", "3", "4", "9", "11", "13", "14", "15", "16", "18")),
    Choice("baselines.random_draw", "Random", "python (random.seed(1..6); random.sample)", "numpy",
           "the official random_choose_1k.py; the same zoo order gives the official files' rows",
           ("2", "10", "12")),
    Choice("selection.cluster_quota", "multi-metric quota", "null (k / C)", "100 (the official file's constant)",
           "the paper selects 1,000 rows; k / C equals 100 at the paper's k = 1000, C = 10", ("4", "13")),
]

# the readings, and G, change which systems are trained or judged: a note under each table they move
_NOTED = {c.key: c for c in [*READINGS, MODES[6]]}


def _value(cfg, key: str):
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part, None)
    return obj


def _affects(choice: Choice, table: str) -> bool:
    if "*arena" in choice.tables or "*trained" in choice.tables:
        return True
    return table in choice.tables


def reading_notes(cfg, table: str) -> list[str]:
    """One note per mode or reading that moves `table`'s cells: which value produced this run's systems."""
    out = []
    for c in _NOTED.values():
        if not _affects(c, table):
            continue
        if c.key.startswith("selection.subsets"):
            dirs = [s.direction for s in cfg.selection.subsets if s.name == "difficulty_size"]
            if not dirs:
                continue
            value = dirs[0]
        else:
            value = _value(cfg, c.key)
        if c.key == "judge.anchor_reading" and "arena_hard" not in cfg.judge.benchmarks:
            continue
        out.append(f"reading: {c.name} = {value} ({c.key}; the other: {c.other}).")
    return out
