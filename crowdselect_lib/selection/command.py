"""``python -m crowdselect_lib select``: from your crowd to a training file in one command (chapters 01-05).

    python -m crowdselect_lib select --zoo DIR --k N --out FILE [--weights 1,1,2] [--clusters C]
        [--reward-model NAME] [--format chat|llamafactory|alpaca] [--run DIR] [--params FILE] [--embedding MODEL]
        [--stream]

`DIR` is a local crowd (`zoo.local`: the answers and models.csv). The zoo, the metrics (eqs. 3-5), the clusters
(K-means over instruction embeddings, §3.3) and the CrowdSelect subset (eqs. 6-9 with equal per-cluster quotas)
are the keyed steps the notebooks use, in the run folder `--run` (default ``runs/select`` under the current
folder): an unchanged second call reuses every step. ``--clusters 1`` takes the plain top-k. Instructions that
some model did not answer (or whose score is NaN) are dropped and counted in the printout. Without ``--params``
the paper's settings apply, except the embedder: all-MiniLM-L6-v2 (offline; the paper's jina-embeddings-v3 is
``--embedding jinaai/jina-embeddings-v3`` with a params file that allows its remote code). ``--stream`` reads a crowd
larger than memory by batches (`selection.stream`): the same subset and the same file, without loading the answers.

Formats: ``chat`` JSONL, one ``{"messages": [user, assistant]}`` per row (TRL); ``alpaca`` one JSON list of
``{instruction, input, output}``; ``llamafactory`` the alpaca file plus its entry in ``dataset_info.json`` beside it.
Bad input is one line on stderr naming the problem (exit code 2).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ..config import ConfigError, load_config
from ..metrics import METRICS, family_table, load_run_metrics
from ..runs import Run
from ..runs.step import STEP_LOG
from ..zoo import ZooError, load_run_zoo, zoo_reward_models
from .run import load_run_selection, selection_reports
from .score import percentile_ranks
from .stream import streamed_selection
from .table import export_alpaca_json, export_chat_jsonl, export_llamafactory

FORMATS = ("chat", "llamafactory", "alpaca")
OFFLINE_EMBEDDER = {"model": "all-MiniLM-L6-v2", "task": None, "batch_size": 64, "max_seq_length": 256}
SUBSET = "crowdselect"


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m crowdselect_lib select",
                                 description="CrowdSelect on your own crowd: pick k instructions, write a training file")
    ap.add_argument("--zoo", required=True, help="crowd folder: answer file(s) and models.csv (README: your own crowd)")
    ap.add_argument("--k", type=int, required=True, help="instructions to select")
    ap.add_argument("--out", required=True, help="training file to write")
    ap.add_argument("--weights", default=None, help="w for (difficulty, separability, stability), e.g. 1,1,2 (eq. 9)")
    ap.add_argument("--clusters", type=int, default=None, help="K-means clusters with equal quotas (1 = none; paper 10)")
    ap.add_argument("--reward-model", default=None, help="score column for the metrics (default: the crowd's first)")
    ap.add_argument("--format", choices=FORMATS, default="chat")
    ap.add_argument("--run", default="runs/select", help="run folder for the keyed steps (default runs/select)")
    ap.add_argument("--params", default=None, help="a params file to start from (default: the paper's settings)")
    ap.add_argument("--embedding", default=None, help="sentence-transformers model for the clusters")
    ap.add_argument("--stream", action="store_true",
                    help="a crowd larger than memory: read its files by batches (same subset, same file)")
    return ap.parse_args(argv)


def select_config(args: argparse.Namespace):
    """The RunConfig the command runs: `--params` (or the defaults) with the command's settings on top."""
    run_dir = Path(args.run).resolve()
    over: dict = {"run.root": str(run_dir.parent), "run.name": run_dir.name, "run.offline_demo": False,
                  "zoo.source": "local", "zoo.data_dir": str(Path(args.zoo).resolve()), "zoo.drop_incomplete": True,
                  "selection.k": args.k}
    if args.params is None:
        over.update({f"embedding.{k}": v for k, v in OFFLINE_EMBEDDER.items()})
    if args.embedding:
        over["embedding.model"] = args.embedding
    if args.weights is not None:
        try:
            over["selection.weights"] = [float(x) for x in args.weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights {args.weights!r} is not a comma-separated list of numbers") from None
    if args.reward_model:
        over["metrics.reward_model"] = args.reward_model
    cfg = load_config(args.params, over)
    clusters = cfg.clustering.n_clusters if args.clusters is None else args.clusters
    if clusters < 1:
        raise ConfigError(f"--clusters must be >= 1 (1 = no clustering), got {clusters}")
    over["selection.subsets"] = [{"name": SUBSET, "metric": "crowdselect", "clustered": clusters > 1}]
    if clusters > 1:
        over["clustering.n_clusters"] = clusters
    if args.k < 1:
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    return load_config(args.params, over)


def write_out(table: pd.DataFrame, out: Path, fmt: str) -> Path:
    if fmt == "chat":
        return export_chat_jsonl(table, out)
    if fmt == "alpaca":
        return export_alpaca_json(table, out)
    return export_llamafactory(table, out.parent, out.stem)


def explain(zoo, metrics: pd.DataFrame, table: pd.DataFrame, report: dict, cfg) -> list[str]:
    """What was chosen and why: the crowd, who enters Stability, per-cluster counts, metric means vs the crowd."""
    n, dropped = metrics.shape[0], zoo.info.get("dropped_incomplete", 0)
    lines = [f"crowd: {n} instructions x {len(zoo.models)} models, reward model {metrics.attrs['reward_model']!r}"
             + (f"; {dropped} instruction(s) dropped for a missing answer or score"
                + (f" ({zoo.info['dropped_reasons']})" if zoo.info.get("dropped_reasons") else "") if dropped else "")]
    fam = family_table(zoo, cfg.metrics.stability_families)
    inside = fam.index[fam["in_stability"]].tolist()
    lines.append(f"Stability (eq. 5) averages over {len(inside)} famil{'y' if len(inside) == 1 else 'ies'}: {inside}")
    outside = fam[~fam["in_stability"]]
    for why, fams in outside.groupby("why", sort=True).groups.items():   # reported, not an error
        names = list(fams)
        lines.append(f"outside Stability ({why}): {len(names)} famil{'y' if len(names) == 1 else 'ies'}, "
                     + ", ".join(names[:6]) + (", ..." if len(names) > 6 else ""))
    w = report["settings"]["weights"]
    lines.append(f"chose {len(table)} of {n}: score = {w[0]:g} rho_difficulty + {w[1]:g} rho_separability + "
                 f"{w[2]:g} rho_stability (eqs. 6-9), " + ("equal quotas per cluster" if report["clustered"]
                                                           else "top-k, no clustering"))
    if report["clustered"]:
        lines.append("cluster  size  quota  taken")
        lines += [f"{c:>7}  {v['size']:>4}  {v['quota']:>5}  {v['taken']:>5}" for c, v in report["clusters"].items()]
        if report.get("filled"):
            lines.append(f"{report['filled']} row(s) filled from other clusters (a cluster was smaller than its quota)")
    pct = percentile_ranks(metrics[METRICS]).reindex(table["uuid"]).mean()
    lines.append(f"{'metric':<13} {'subset mean':>12} {'crowd mean':>11} {'subset pct rank':>16}")
    lines += [f"{m:<13} {table[m].mean():>12.4g} {metrics[m].mean():>11.4g} {pct[m]:>16.2f}" for m in METRICS]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.format not in FORMATS:
            raise ConfigError(f"--format {args.format!r}: choose one of {FORMATS}")
        cfg = select_config(args)
        have = zoo_reward_models(cfg)
        if args.reward_model and args.reward_model not in have:
            raise ZooError(f"--reward-model {args.reward_model!r} is not a score column of the crowd; it has {have}")
        run = Run.from_config(cfg)
        first = len(STEP_LOG)
        if args.stream:
            table, report, zoo, metrics = streamed_selection(run, cfg, SUBSET)
        else:
            zoo = load_run_zoo(run, cfg)
            metrics = load_run_metrics(run, cfg)
            table = load_run_selection(run, cfg, SUBSET)
            report = selection_reports(run, cfg)[SUBSET]
        path = write_out(table, Path(args.out), args.format)
    except (ZooError, ConfigError, ValueError, KeyError, OSError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2
    computed = {label for status, label, _ in STEP_LOG[first:] if status == "computing"}
    reused = sorted({label for _, label, _ in STEP_LOG[first:]} - computed)
    print(f"steps in {run.dir}: {len(computed)} computed, {len(reused)} reused ({', '.join(reused) or '-'})")
    for line in explain(zoo, metrics, table, report, cfg):
        print(line)
    print(f"wrote {len(table)} {args.format} rows to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
