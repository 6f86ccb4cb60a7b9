"""CrowdSelect selection (paper §3.2-3.3, chapter 05): `responses` (eq. 2, THE best answer), `score` (eqs. 6-9),
`pick` (top-k and per-cluster quotas), `table` (the selection table and its exports), `run` (subsets as keyed
steps), `plots`."""
from .pick import cluster_quotas, rank_order, select, top_k
from .plots import plot_jaccard, plot_normalisation, plot_profiles, plot_quotas
from .responses import RESPONSE_STRATEGIES, best_responses, choose_responses, pair_responses
from .run import (SELECTION_VERSION, load_run_selection, official_sort_comparison, quota_table, run_selections,
                  select_subset, selection_reports, selection_step, subset_profiles, subset_settings, subset_spec)
from .score import check_weights, combine, normalize, percentile_ranks, score_parts
from .table import (SELECTION_COLUMNS, compare_selections, export_alpaca_json,
                    export_chat_jsonl, export_llamafactory, jaccard_matrix,
                    llamafactory_entry, planted_means, publish_selection, read_selection, register_llamafactory,
                    selection_table, to_chat_messages, to_dataset, write_selection)

__all__ = ["SELECTION_COLUMNS", "RESPONSE_STRATEGIES", "SELECTION_VERSION", "best_responses", "choose_responses",
           "pair_responses", "check_weights", "combine", "normalize", "percentile_ranks", "score_parts", "rank_order",
           "top_k", "cluster_quotas", "select", "selection_table", "to_chat_messages", "export_chat_jsonl", "export_alpaca_json",
           "export_llamafactory", "llamafactory_entry", "write_selection", "read_selection", "to_dataset",
           "publish_selection", "register_llamafactory",
           "compare_selections", "jaccard_matrix", "planted_means", "select_subset", "subset_spec", "subset_settings",
           "selection_step", "load_run_selection", "run_selections", "selection_reports", "quota_table",
           "official_sort_comparison", "subset_profiles", "plot_normalisation", "plot_quotas", "plot_profiles",
           "plot_jaccard"]
