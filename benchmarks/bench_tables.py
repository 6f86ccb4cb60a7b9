"""Time `make tables DEMO=1` (issue 10.4): every paper table's offline demo in one fresh runs root, one after the
other as the Makefile runs them; prints per-table and total wall time and the share of steps reused.

    python benchmarks/bench_tables.py [--root /tmp/bench_tables] [--tables 2,11,12] [--keep] [--library]

`--library` does each cell's work through the library calls the training and judging chapters make
(`training.train_all`, `judge.run_judging`) and renders in-process, without papermill: the difference to the
default is the notebooks' own cost (kernel start, imports, figures).

Steps are counted from the run's ``run.log`` (every step logs ``reused <stage>/<name> (<key>)`` or ``computing
...`` once per resolution, in the notebooks' kernels too): "reused" / all. A table whose cells are all complete
is not executed again (``every judged score reused``) and counts its skipped cells.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import crowdselect_lib as cs  # noqa: E402
from crowdselect_lib.pipeline import cell_complete, run_table  # noqa: E402
from crowdselect_lib.reporting import RESULT_TABLES  # noqa: E402

STATUS = re.compile(r" INFO (reused|computing) (\S+) \(")


def step_counts(log: Path, start: int = 0) -> tuple[dict[str, int], int]:
    """(counts of reused/computing lines after byte `start`, new end offset) of a run.log."""
    if not log.exists():
        return {"reused": 0, "computing": 0}, start
    with open(log, "rb") as fh:
        fh.seek(start)
        text = fh.read().decode("utf-8", "replace")
        end = fh.tell()
    counts = {"reused": 0, "computing": 0}
    for m in STATUS.finditer(text):
        counts[m.group(1)] += 1
    return counts, end


def library_table(table: str, overrides: dict, say) -> Path:
    """One demo table through the library only (what chapters 07, 08 and 09 call), same sharing rules."""
    R = cs.reporting
    cfg = cs.load_config(R.params_file(table), overrides, demo=True)
    run = cs.Run.from_config(cfg)
    for name, ccfg in R.cell_configs(cfg).items():
        if cell_complete(run, ccfg):
            say(f"table {table} / {name}: every judged score reused")
            continue
        cs.training.train_all(run, ccfg)
        cs.judge.run_judging(run, ccfg)
    scores = R.collect_scores(run, cfg)
    results = {t: R.build_table(cfg, t, scores) for t in R.tables_to_render(cfg)}
    R.write_tables(run, cfg, results, R.paper_numbers(), R.paper_numbers(version="v1"))
    for t, res in results.items():
        R.table_figure(cfg, t, res, R.paper_numbers())
    return run.dir


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/tmp/bench_tables", help="fresh runs root (deleted first unless --keep)")
    ap.add_argument("--tables", default=",".join(RESULT_TABLES))
    ap.add_argument("--keep", action="store_true", help="keep an existing root (measure a rerun)")
    ap.add_argument("--library", action="store_true", help="library calls instead of papermill notebooks")
    args = ap.parse_args(argv)
    root = Path(args.root) / "runs"
    if root.parent.exists() and not args.keep:
        shutil.rmtree(root.parent)
    over = {"run.root": str(root), "tables.figures_dir": str(root.parent / "figures")}
    todo = [x for x in args.tables.split(",") if x]
    run_name = cs.load_config(cs.reporting.params_file(todo[0]), over, demo=True).run.name
    log = root / run_name / "run.log"
    rows, offset, t_all = [], log.stat().st_size if log.exists() else 0, time.perf_counter()   # --keep: new lines
    for t in todo:
        lines: list[str] = []
        t0 = time.perf_counter()
        if args.library:
            with contextlib.redirect_stdout(io.StringIO()):
                out = library_table(t, over, lines.append)
        else:
            out = run_table(t, demo=True, overrides=over, say=lines.append)
        dt = time.perf_counter() - t0
        counts, offset = step_counts(out / "run.log", offset)
        skipped = sum("every judged score reused" in x for x in lines)
        rows.append((t, dt, counts["computing"], counts["reused"], skipped))
        print(f"table {t:>5}: {dt:7.1f} s  computing {counts['computing']:4d}  reused {counts['reused']:4d}  "
              f"cells skipped {skipped}", flush=True)
    total = time.perf_counter() - t_all
    comp, reused = sum(r[2] for r in rows), sum(r[3] for r in rows)
    share = reused / (comp + reused) if comp + reused else float("nan")
    print(f"total: {total:.0f} s ({total / 60:.1f} min) for {len(rows)} tables; steps computing {comp}, reused "
          f"{reused} ({100 * share:.0f}% reused); load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
