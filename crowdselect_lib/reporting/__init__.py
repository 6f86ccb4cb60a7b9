"""The paper's tables and figures (chapter 09), numbered as in the paper text we reproduce (Tables 1-4, 7-18).

- `registry`  `TABLES`: each table's layout, training method, marking rule, intervals/tokens; labels; captions
- `grid`      a table's cells (overrides over one run directory), offline check of demo configs
- `results`   our judged scores -> the paper's layout; the paper's numbers (`version` acl | v1) and notes
- `render`    markdown / LaTeX / HTML: ours, paper, Δ per cell, the paper's marks and notes
- `manifest`  what produced each number (git, params hash, package versions, cells)
- `plots`     THE plotting helpers (matplotlib import, colours, PNG + PDF), chapter figures
- `figures`   the paper's figures (Figure 3 bars, Figure 4 sizes, weight sweep, paper vs reproduced)
- `summary`   `settings_summary(cfg, sections)`: the short settings block every notebook prints
- `intervals` THE paired bootstrap over items, the verdict ("above Random (95%)", "no evidence", "below ...")
- `versus`    every row against Random and the untouched student; the paper's headline claims against them
- `costs`     the cost ledger: select / train / judge costs beside the gain over Random; paper-scale plan
"""
from . import figures, plots
from .figures import (figure3_bars, figure4_sizes, figures_dir, paper_vs_ours, save, show_figures, table_figure,
                      weight_heatmap)
from .grid import OFFLINE_MODELS, cell_configs, cell_labels, cell_overrides, offline_problems, paper_groups
from .manifest import manifest, write_manifest
from .registry import (BENCHMARK_LABELS, DEMO_CAPTION, RESULT_TABLES, SUBSET_LABELS, TABLES, TRAIN_METHOD_LABELS,
                       TableSpec, caption, demo_caption, params_file, subset_label, table_caption, table_spec)
from .render import (claim_check, comparison, marks, notes_text, render, save_table, show_table, show_tables, table_options,
                     write_tables)
from .results import (RESULT_COLUMNS, SCORE_COLUMNS, build_table, check_scores, collect_scores, gains,
                      grid_summary, paper_anchors, paper_notes, paper_numbers, paper_summary, scores_summary,
                      table_results, tables_to_render)
from .summary import Summary, settings_summary
from .intervals import Gain, arena_gain, bootstrap_counts, is_random, paired_gain, percentile_interval, verdict
from .costs import (LEDGER_COLUMNS, PAID_ONCE, PAPER_LEDGER_COLUMNS, crowd_cost, ledger, measured_costs,
                     paper_costs, plot_ledger)
from .versus import (VERSUS_COLUMNS, add_verdicts, collect_items, comparisons, headline_claims, verdict_counts,
                     versus_table, write_comparisons)

__all__ = [n for n in dir() if not n.startswith("_")]
