"""Baselines of the paper's Tables 2, 10 and 12 (appendix B.3; chapter 06), one file per family and a registry.
Every baseline returns the SELECTION TABLE of `selection.selection_table`, as CrowdSelect does.

- `rule_based`  Random, Length (tokens), Reward score                 paper's baselines, cheap
- `llm_rated`   Direct score (Alpagasus prompt), Instag (InsTag)      paper's baselines, an LLM per item
- `ifd`         IFD without / with pre-experience (Cherry_LLM)        paper's baselines, a causal LM per item
- `selectllm`   SelectLLM (Figure 4 prompt, Algorithm 2)              extra, not in the paper
- `coreset`     k-center greedy on instruction embeddings             extra, not in the paper
- `asking`      asking an LLM for a validated answer (retries, counted failures)
- `registry`    the method registry and the keyed steps: `baseline_step`, `load_run_baseline`, `run_baseline`
"""
from .asking import LLMCostNotConfirmed, ParseError, Truncated, ask_with_retries, check_llm_cost, llm_report
from .common import Baseline, Context, Picked, candidates, subset_k, top_available, top_k
from .coreset import coreset_pick, k_center_greedy
from .ifd import (ALPACA_PROMPT, IFD_COLUMNS, encode_pairs, ifd_pick, ifd_scores, instruction_stats, load_run_ifd,
                  mean_token_losses, pre_experience_sample, score_pairs_resumable)
from .llm_rated import (ALPAGASUS_REQUEST, ALPAGASUS_SYSTEM, ALPAGASUS_TRIPLET, INSTAG_REQUEST, OFFICIAL_LABELS,
                        direct_score_conversations, direct_score_pick, direct_score_ratings, instag_conversations,
                        instag_official_order, instag_order, instag_pick, normalise_tag, parse_grade,
                        parse_official_labels, parse_tags)
from .registry import (METHODS, REGISTRY, baseline_reports, baseline_step, load_run_baseline, methods_of, methods_table,
                       reply_examples, resolve, run_baseline, run_baselines)
from .rule_based import answer_by_length, length_pick, random_pick, reward_pick, token_lengths
from .selectllm import (diverse_queries, figure4_prompt, parse_indices, picks_from_record, picks_per_query,
                        query_conversation, query_size, selectllm_pick, selectllm_record)

__all__ = ["METHODS", "REGISTRY", "Baseline", "Context", "Picked", "ParseError", "Truncated", "baseline_step",
           "load_run_baseline", "run_baseline", "run_baselines", "baseline_reports", "methods_table", "methods_of",
           "reply_examples", "resolve",
           "ask_with_retries", "check_llm_cost", "LLMCostNotConfirmed", "llm_report", "candidates", "subset_k",
           "top_k", "top_available", "random_pick",
           "length_pick", "reward_pick", "token_lengths", "answer_by_length", "parse_grade", "parse_tags",
           "parse_official_labels", "normalise_tag", "instag_order", "instag_official_order", "instag_pick",
           "direct_score_pick",
           "direct_score_ratings", "direct_score_conversations", "instag_conversations", "ALPAGASUS_SYSTEM",
           "ALPAGASUS_TRIPLET", "ALPAGASUS_REQUEST", "INSTAG_REQUEST", "OFFICIAL_LABELS", "ALPACA_PROMPT",
           "IFD_COLUMNS", "encode_pairs", "mean_token_losses", "ifd_scores", "ifd_pick", "score_pairs_resumable",
           "instruction_stats", "pre_experience_sample", "load_run_ifd", "k_center_greedy", "coreset_pick",
           "diverse_queries", "picks_per_query", "query_size", "figure4_prompt", "query_conversation",
           "parse_indices", "selectllm_record", "selectllm_pick", "picks_from_record"]
