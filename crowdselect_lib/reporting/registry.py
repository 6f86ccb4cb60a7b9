"""The paper's result tables, numbered as in the paper text we reproduce (the ACL-submission text of arXiv
2503.01836: Tables 1-4 and 7-18; Tables 5, 6 list models and settings), plus arXiv v1's Table 17 (a Qwen2.5-3B
base weight sweep the ACL text dropped) as the appendix table ``v1-17``.

Each `TableSpec` says how the table is laid out, which training method fills it, what the paper prints beside the
score (Arena-Hard 95% intervals in every table, average answer tokens in Tables 7, 8, 14-16) and the paper's
bold/underline rule as far as the text shows it (``crowdselect_lib/data/paper_notes.csv``, kind ``marking``):

- ``layout="group"``: rows ``"<group> / <benchmark>"``, one column per selection (Tables 1, 2, 4, 9-13, 17, 18); a
  group is a grid cell (student, response choice, clusters, reward model) or, for Table 17, a training method.
- ``layout="sweep"``: one row per selection (a weight vector), columns = benchmarks (Tables 3, 14-16, v1-17).
- ``layout="size"``: one row per grid cell (a data size), columns = benchmarks (Tables 7, 8).
- ``marking``: ``"row"`` best/second along each row (Table 2), ``"block"`` within one benchmark over the response
  choices for one metric's ↓/↑ columns together (Table 1), ``"column"`` (Table 3: the one bold survives at the
  column maximum), ``None`` where the text keeps no mark (nothing is marked rather than a rule we invented).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from ..runs import repo_root

BENCHMARK_LABELS = {"mt_bench": "MT-Bench", "arena_hard": "Arena-Hard"}
TRAIN_METHOD_LABELS = {"sft_full": "SFT", "sft_lora": "SFT (LoRA)", "dpo": "DPO", "simpo": "SimPO", "orpo": "ORPO"}
DEMO_CAPTION = "offline demo: simulated zoo, {student} student, proxy judge (not MT-Bench/Arena-Hard)"

# Column labels of selection names (chapters 05/06) as the paper prints them (↑ top-k, ↓ bottom-k).
SUBSET_LABELS = {
    "base": "Base", "random": "Random", "instag": "Tags", "ifd_no_pre": "IFD (no_pre)", "ifd_pre": "IFD (pre)",
    "direct_score": "Direct-Score ↑", "direct_score_bottom": "Direct-Score ↓", "length_bottom": "Length ↓",
    "length_top": "Length ↑", "reward_bottom": "Reward-Score ↓", "reward_top": "Reward-Score ↑",
    "selectllm": "SelectLLM", "coreset": "Coreset",
    "difficulty_bottom": "Difficulty ↓", "difficulty_top": "Difficulty ↑", "difficulty_size": "Difficulty (size)",
    "separability_bottom": "Separability ↓", "separability_top": "Separability ↑",
    "stability_bottom": "Stability ↓", "stability_top": "Stability ↑",
    "crowdselect": "Multi",
}


def subset_label(name: str) -> str:
    """Column label of a selection: `SUBSET_LABELS`; weight variants ``crowdselect_1_-1_1.5`` -> "w=(1, -1, 1.5)"
    (Tables 3, 14-16); per-cluster variants ``<name>_cluster`` -> "<label> + cluster" (Tables 4, 13)."""
    if name in SUBSET_LABELS:
        return SUBSET_LABELS[name]
    if name.startswith("crowdselect_"):
        return "w=(" + ", ".join(name.split("_")[1:]) + ")"
    if name.endswith("_cluster"):
        return subset_label(name[: -len("_cluster")]) + " + cluster"
    return name


@dataclass(frozen=True)
class TableSpec:
    """One paper table (module docstring). `train_method`: the method whose students fill the table (None: the
    groups are methods, Table 17); `stages`: chapters besides the always-needed ones that its cells run."""
    id: str
    title: str
    layout: Literal["group", "sweep", "size"] = "group"
    group_by: Literal["cell", "train_method"] = "cell"
    train_method: Optional[str] = "sft_full"
    marking: Optional[Literal["row", "block", "column"]] = None
    tokens: bool = False
    needs_baselines: bool = False
    version: Literal["acl", "v1"] = "acl"
    appendix: bool = False
    labels: tuple[tuple[str, str], ...] = ()   # this table's own header for a selection, e.g. Table 1's "DirectScore"

    def label(self, subset: str) -> str:
        return dict(self.labels).get(subset) or subset_label(subset)

    @property
    def params_name(self) -> str:
        return f"table{int(self.id):02d}" if self.id.isdigit() else f"table_{self.id}"


TABLES: dict[str, TableSpec] = {s.id: s for s in [
    TableSpec("1", "Foundation metrics, top (↑) and bottom (↓) selections, under three response choices (eq. 2), "
                   "full fine-tuning", marking="block", needs_baselines=True,
              labels=(("direct_score", "DirectScore"),)),
    TableSpec("2", "Full fine-tuning of four students with different data selection strategies", marking="row",
              needs_baselines=True),
    TableSpec("3", "CrowdSelect weights (Difficulty, Separability, Stability), eq. 9, with clustering, "
                   "Llama-3.2-3B-Instruct, full fine-tuning", layout="sweep", marking="column"),
    TableSpec("4", "Per-cluster selection with 10 / 20 / 30 clusters, Llama-3.2-3B-Instruct, full fine-tuning"),
    TableSpec("7", "Data size 0.25k-10k selected by Difficulty, Llama-3.2-3B-Instruct", layout="size", tokens=True),
    TableSpec("8", "Data size 0.25k-10k selected by Difficulty, Llama-3.2-3B", layout="size", tokens=True),
    TableSpec("9", "LoRA fine-tuning of four students: foundation metrics", train_method="sft_lora"),
    TableSpec("10", "LoRA fine-tuning of four students: baselines", train_method="sft_lora", needs_baselines=True),
    TableSpec("11", "Full fine-tuning of four students: foundation metrics"),
    TableSpec("12", "Full fine-tuning of four students: baselines", needs_baselines=True),
    TableSpec("13", "Full fine-tuning of four students on per-cluster selections"),
    TableSpec("14", "CrowdSelect weights with clustering, Llama-3.2-3B-Instruct, full fine-tuning",
              layout="sweep", tokens=True),
    TableSpec("15", "CrowdSelect weights, Qwen2.5-3B-Instruct, full fine-tuning", layout="sweep", tokens=True),
    TableSpec("16", "CrowdSelect weights, Llama-3.2-3B, full fine-tuning", layout="sweep", tokens=True),
    TableSpec("17", "Llama-3.2-3B-Instruct fine-tuned with SFT, DPO, SimPO and ORPO", group_by="train_method",
              train_method=None, needs_baselines=True),
    TableSpec("18", "LoRA fine-tuning of Llama-3.2-3B-Instruct, metrics from three reward models",
              train_method="sft_lora", needs_baselines=True),
    TableSpec("v1-17", "Appendix (arXiv v1 only): CrowdSelect weights, Qwen2.5-3B, full fine-tuning",
              layout="sweep", version="v1", appendix=True),
]}
for _t in ("3", "14", "15", "16", "v1-17"):   # in a weight sweep, CrowdSelect's default weights are one row (§4.1)
    TABLES[_t] = dataclasses.replace(TABLES[_t], labels=(("crowdselect", "w=(1, 1, 2)"),))
RESULT_TABLES = [t for t, s in TABLES.items() if not s.appendix]   # the 16 tables of `make tables`


def table_spec(table: str | int) -> TableSpec:
    key = str(table).lstrip("0") if str(table).isdigit() else str(table)
    if key not in TABLES:
        raise KeyError(f"no paper table {table!r}; the paper text's tables are {RESULT_TABLES} "
                       f"(plus the appendix table 'v1-17')")
    return TABLES[key]


def params_file(table: str | int) -> Path:
    """``params/table02.yaml`` of a paper table; ``params/table_v1-17.yaml`` for the appendix table."""
    return repo_root() / "params" / f"{table_spec(table).params_name}.yaml"


def demo_caption(cfg) -> str:
    """What the offline demo stands in with (`DEMO_CAPTION` with the run's student)."""
    return DEMO_CAPTION.format(student=", ".join(cfg.training.students or [cfg.training.student]))


def caption(cfg, text: str) -> str:
    """Caption of a table or figure; says plainly when the numbers come from the offline demo."""
    return f"{text} ({demo_caption(cfg)})" if cfg.run.offline_demo else text


def table_caption(cfg, table: str) -> str:
    spec = table_spec(table)
    name = f"Table {spec.id}" if not spec.appendix else f"Appendix table {spec.id}"
    return caption(cfg, f"{name}: {spec.title}")
