"""The judge stage (paper §4.1): MT-Bench and Arena-Hard-Auto v0.1, one file per section of the chapter.

- `benchmarks` the benchmark files (download, local `judge.data_dir`, offline stand-ins)
- `answers`    which systems are judged, and their answers (keyed steps; in-process or vLLM students)
- `prompts`    judge requests from the benchmarks' own prompt files; `verdicts` reading the replies
- `proxy`      the offline proxy judge (what it measures, and where it is wrong)
- `scores`     MT-Bench score, Arena-Hard Bradley-Terry win rates with bootstrap intervals, AP
- `run`        judging as keyed steps, the cost gate, who judged; `results` the score table and figure
- `heldout`    no judge: the held-out loss on reference answers (`judge.judge: heldout_loss`, the AlpacaEval run)
"""
from .answers import (StudentError, answers_step, judging_pass, load_answers, run_answers, serving_plan, stop_report,
                      stop_shares, systems_table)
from .benchmarks import (HELDOUT, Benchmark, BenchmarkError, describe, heldout_benchmark, load_benchmark,
                         load_run_benchmarks)
from .heldout import answer_losses, heldout_mode, heldout_plan, heldout_step, run_all_heldout, run_heldout
from .prompts import arena_jobs, mt_bench_jobs
from .proxy import LABEL as PROXY_LABEL
from .proxy import ProxyJudge, failure_examples
from .results import (ITEM_COLUMNS, SCORE_COLUMNS, arena_anchor_readings, figure_title, heldout_losses,
                      item_scores, judged_scores, plot_scores, run_judging, score_summary, scores_step)
from .run import (CostNotConfirmed, JudgeNotRun, check_cost, judge_identity, judgments_step, make_judge,
                  plan_judging, run_all_answers, run_all_judgments, run_judgments, served_judges, served_mismatch)
from .scores import (MTBenchScore, aggregate_repetitions, arena_hard_scores, average_performance_rank, battles,
                     bradley_terry, format_interval, mt_bench_score, win_rate)
from .verdicts import parse_rating, parse_verdict

__all__ = ["arena_anchor_readings", "Benchmark", "BenchmarkError", "CostNotConfirmed", "JudgeNotRun", "MTBenchScore",
           "PROXY_LABEL",
           "ProxyJudge", "SCORE_COLUMNS", "StudentError", "aggregate_repetitions", "answers_step", "arena_hard_scores",
           "arena_jobs", "average_performance_rank", "battles", "bradley_terry", "check_cost", "describe",
           "failure_examples", "figure_title", "ITEM_COLUMNS", "item_scores", "format_interval", "judge_identity",
           "judged_scores", "judgments_step",
           "load_answers", "load_benchmark", "load_run_benchmarks", "make_judge", "mt_bench_jobs", "mt_bench_score",
           "parse_rating", "parse_verdict", "plan_judging", "plot_scores", "run_all_answers", "run_all_judgments",
           "run_answers", "run_judging", "run_judgments", "score_summary", "scores_step", "serving_plan",
           "systems_table", "win_rate", "served_judges", "served_mismatch", "HELDOUT", "heldout_benchmark",
           "answer_losses", "heldout_mode", "heldout_plan", "heldout_step", "run_all_heldout", "run_heldout",
           "heldout_losses", "judging_pass", "stop_report", "stop_shares"]
