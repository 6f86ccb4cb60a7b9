"""Headless execution of the chapters with papermill (the `make demo` chain and the paper tables).

    python -m crowdselect_lib.pipeline demo [--params params/demo.yaml] [--only zoo,metrics]
    python -m crowdselect_lib.pipeline table --table 2 [--demo] [--root DIR]   # one paper table (`make table T=2`)
    python -m crowdselect_lib.pipeline table --params my_table02.yaml --set zoo.data_dir=... [--set ...]
    python -m crowdselect_lib.pipeline tables [--demo] [--root DIR]            # the 16 paper tables (`make tables`)

The library knows chapters by name: `stages()` maps a stage name to its notebook, built from the notebook files
present (``notebooks/NN_<name>.ipynb`` -> ``<name>``). Executed notebooks are kept under ``runs/<run>/notebooks/``
(a table's cells under ``runs/<run>/notebooks/<table>/<cell>/``) as the record of what produced the run.

A table (issue 10.4) runs every cell of its grid in the table's ONE run directory, each cell's params being the
table's plus the cell's overrides; identical steps have identical keys and are computed once for the batch. A
cell whose judged scores are all done (their keys computed from the cell's config) is not executed again; the
report chapter then renders the table from the keys of every cell.

Before the first chapter, the cost gates (judge, LLM baselines; `preflight.closed_gates`) are checked from the
plan: a closed gate stops the run there (`GateClosed`, naming the ``--set`` that opens it), not after training.
Every failure prints one line (``error: ...``) and exits 1.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import re
import sys
import time
from pathlib import Path

from .config import ConfigError, load_config, parse_sets
from .runs import Run, repo_root, write_text

log = logging.getLogger("crowdselect")
REPORT_STAGE = "tables_figures"    # the chapter that renders tables and figures
BASELINES_STAGE = "baselines"      # the chapter of the LLM-rated and rule-based baselines
# The kernel's own start-up warnings (e.g. "Kernel is running over TCP without encryption" for papermill's local
# kernel on 127.0.0.1) would print once per chapter on the terminal; its errors still show.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


def quiet_kernel_manager():
    """The kernel manager papermill runs each chapter with: jupyter_client interrupts a kernel (SIGINT) before every
    shutdown, and an idle ipykernel then logs "KeyboardInterrupt caught in kernel" on the terminal; this one shuts
    the finished chapter's kernel down with the shutdown request alone (a kernel that hangs is still killed)."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietShutdown(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return QuietShutdown


def stages() -> dict[str, Path]:
    """Stage name -> notebook, in chapter order, from the notebooks present (``01_download.ipynb`` -> download)."""
    found = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    return {re.sub(r"^\d+_", "", p.stem): p for p in found}


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The chapter notebooks in order, optionally only the named stages (unknown names are an error)."""
    st = stages()
    if only is None:
        return list(st.values())
    unknown = [s for s in only if s not in st]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages: {list(st)}")
    return [p for name, p in st.items() if name in only]


def run_chain(params_file: str | Path, overrides: dict | None = None, only: list[str] | None = None,
              out_dir: str | Path | None = None, kernel: str = "python3", say=print) -> Path:
    """Execute the chapters in order with papermill (executed copies under `out_dir`, default
    ``runs/<run>/notebooks/``); returns the run directory."""
    import papermill as pm

    params_file = Path(params_file).resolve()
    cfg = load_config(params_file, overrides)
    check_gates(cfg, only)
    run = Run.from_config(cfg)
    out = Path(out_dir) if out_dir else run.dir / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    _stream_cells_to_run_log()
    for nb in notebooks(only):
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out / nb.name), cwd=str(nb.parent), kernel_name=kernel,
                                parameters={"params_file": str(params_file), "overrides": overrides or {}},
                                progress_bar=False, log_output=True, extra_arguments=KERNEL_ARGS,
                                kernel_manager_class=quiet_kernel_manager())
        except pm.PapermillExecutionError as e:   # the error a user must see last, in one line
            raise ChapterFailed(f"{nb.name} failed: {e.ename}: {e.evalue} (executed copy: {out / nb.name})") from None
        say(f"{nb.name}: {time.perf_counter() - t0:.1f} s")
    return run.dir


def _stream_cells_to_run_log() -> None:
    """Papermill's cell output (``log_output``) goes to the run log only (``runs/<run>/run.log``), not the terminal."""
    pm_log = logging.getLogger("papermill")
    pm_log.propagate = False
    for h in log.handlers:
        if isinstance(h, logging.FileHandler) and h not in pm_log.handlers:
            pm_log.addHandler(h)
    pm_log.setLevel(logging.INFO)


class ChapterFailed(RuntimeError):
    """A chapter's notebook raised: its error type and message, and where the executed copy is."""


class GateClosed(RuntimeError):
    """A cost gate is closed for what the run plans (`preflight.closed_gates`): stopped before any chapter."""


JUDGE_STAGE = "judge"              # the chapter that sends the judge's paid requests


def check_gates(cfg, chapters: list[str] | None = None) -> None:
    """Raise `GateClosed` when the plan of `cfg` would hit a closed cost gate of a chapter that runs (`chapters`,
    None = all): the judge's (chapter 08) or the LLM baselines' (chapter 06)."""
    from .preflight import closed_gates

    run_all = chapters is None
    gates = tuple(g for g, stage in (("judge", JUDGE_STAGE), ("baselines", BASELINES_STAGE))
                  if run_all or stage in chapters)
    closed = closed_gates(cfg, gates)
    if closed:
        raise GateClosed("; ".join(f"{c.what}: {c.detail}" for c in closed))


def cell_stages(cfg, spec) -> list[str]:
    """Chapters a table's cell runs: `tables.notebooks`, else every chapter before the report one (the baselines
    chapter only where the table shows baselines)."""
    if cfg.tables.notebooks is not None:
        return list(cfg.tables.notebooks)
    names = list(stages())
    if REPORT_STAGE not in names:
        raise ValueError(f"no notebook for the report stage {REPORT_STAGE!r} in notebooks/")
    before = names[: names.index(REPORT_STAGE)]
    return [s for s in before if s != BASELINES_STAGE or spec.needs_baselines]


def cell_complete(run, cfg) -> bool:
    """True when `judge.judged_scores(run, cfg)` can be read: every system of the cell has judgments on every
    benchmark, the keys computed from the cell's config (the cell has nothing left to compute)."""
    from . import judge

    quiet, was = io.StringIO(), log.disabled
    log.disabled = True          # a check, not a step resolution: keep it out of run.log's reused/computing lines
    try:
        with contextlib.redirect_stdout(quiet):
            judge.judged_scores(run, cfg)
    except Exception:  # noqa: BLE001 - JudgeNotRun, or a missing upstream step: run the cell's chapters
        return False
    finally:
        log.disabled = was
    return True


def run_table(table: str | int | None, demo: bool = False, overrides: dict | None = None, kernel: str = "python3",
              say=print, params: str | Path | None = None) -> Path:
    """Regenerate one paper table: each grid cell's chapters (skipped when complete), then the report chapter.

    `params`: a params file instead of the table's own (``params/tableNN.yaml``); the table is then its
    ``tables.table`` unless `table` is given. `demo=True` loads the params file's `demo:` block (a delta over
    ``params/demo.yaml``). Resolved params of the table and of each cell go to ``runs/<run>/params/<table>/``;
    returns the run directory. A closed cost gate stops it before the first chapter (`check_gates`)."""
    from .reporting import cell_configs, params_file, table_spec

    if params is not None:
        cfg = load_config(Path(params).resolve(), overrides, demo=demo)
        table = table if table is not None else cfg.tables.table
        if table is None:
            raise ValueError(f"{params}: tables.table is not set; name the table with --table")
    spec = table_spec(table)
    if params is None:
        cfg = load_config(params_file(spec.id), overrides, demo=demo)
    todo = cell_stages(cfg, spec)
    check_gates(cfg, todo)
    run = Run.from_config(cfg)
    params_dir = run.dir / "params" / spec.params_name
    table_yaml = write_text(cfg.to_yaml(), params_dir / "table.yaml")
    for name, ccfg in cell_configs(cfg).items():
        if cell_complete(run, ccfg):
            say(f"table {spec.id} / {name}: every judged score reused")
            continue
        cell_yaml = write_text(ccfg.to_yaml(), params_dir / f"{name}.yaml")
        t0 = time.perf_counter()
        say(f"table {spec.id} / {name}: chapters {todo}")
        run_chain(cell_yaml, only=todo, out_dir=run.dir / "notebooks" / spec.params_name / name, kernel=kernel,
                  say=say)
        say(f"table {spec.id} / {name}: {time.perf_counter() - t0:.0f} s")
    run_chain(table_yaml, only=[REPORT_STAGE], out_dir=run.dir / "notebooks" / spec.params_name, kernel=kernel,
              say=say)
    return run.dir


def main(argv: list[str] | None = None) -> int:
    from .reporting import RESULT_TABLES

    ap = argparse.ArgumentParser(prog="python -m crowdselect_lib.pipeline")
    sub = ap.add_subparsers(dest="cmd", required=True)
    demo = sub.add_parser("demo", help="run every chapter on one params file")
    demo.add_argument("--params", default=str(repo_root() / "params" / "demo.yaml"))
    demo.add_argument("--only", default="", help="comma-separated stage names, e.g. zoo,metrics")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="a dotted override, e.g. --set zoo.data_dir=../shared/data/alpacaeval_zoo (repeatable)")
    for name, text in (("table", "regenerate one paper table"), ("tables", "regenerate the 16 paper tables")):
        p = sub.add_parser(name, help=text)
        if name == "table":
            p.add_argument("--table", default=None, help="paper table (the paper text's numbering), e.g. 2, v1-17; "
                           "with --params: default its tables.table")
            p.add_argument("--params", default=None, help="a params file instead of the table's own, e.g. a copy "
                           "of params/table02.yaml pointing at local data")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a dotted override, e.g. --set zoo.data_dir=/data/magpie (repeatable)")
        p.add_argument("--demo", action="store_true", help="the params file's offline demo scale")
        p.add_argument("--root", default=None, help="runs root (default: the params' run.root, runs/)")
    args = ap.parse_args(argv)
    if args.cmd == "table" and args.table is None and args.params is None:
        ap.error("table: give --table N or --params FILE")
    try:
        return _run(args, RESULT_TABLES)
    except (ChapterFailed, GateClosed, ConfigError, ValueError, KeyError, OSError) as e:
        print(f"error: {str(e).strip(chr(34) + chr(39))}", file=sys.stderr)
        return 1


def _run(args, tables) -> int:
    sets = parse_sets(args.set)
    if args.cmd == "demo":
        t0 = time.perf_counter()
        out = run_chain(args.params, overrides=sets or None, only=[s for s in args.only.split(",") if s] or None)
        print(f"done in {time.perf_counter() - t0:.0f} s; executed notebooks in {out / 'notebooks'}")
        return 0
    over = {**sets, **({"run.root": args.root} if args.root else {})} or None
    t_all = time.perf_counter()
    for t in [args.table] if args.cmd == "table" else tables:
        t0 = time.perf_counter()
        out = run_table(t, demo=args.demo, overrides=over, params=getattr(args, "params", None))
        print(f"table {t or out.name}: done in {time.perf_counter() - t0:.0f} s; rendered under {out / 'tables'}")
    print(f"all done in {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
