"""`run_preflight(cfg)`: every check of `checks` over every grid cell of a params file, then the plan; and the
command line ``python -m crowdselect_lib preflight --params params/table02.yaml`` (`make preflight T=2`)."""
from __future__ import annotations

import argparse
import json
import sys

from ..config import ConfigError, RunConfig, load_config
from .checks import (LLM_BASELINES, Check, cells, check_chat, check_gpus, check_hub, check_load,
                     base_models, check_served_models, cuda_gpus, endpoint_config, memory_needs, model_refs)
from .budget import budget, budget_lines
from .data import check_bench_dir, check_prices, check_zoo_dir, cost_gates
from .plan import plan, plan_lines


def run_preflight(cfg: RunConfig, *, gpus: list[tuple[str, float]] | None = None, world_size: int | None = None,
                  log=print) -> int:
    """Every check over every grid cell, then the plan; prints one line each; 1 if any check failed."""
    checks: list[Check] = []
    configs = cells(cfg)
    sizes, looked = {}, set()   # the data folders of every cell, each checked once
    for c in configs.values():
        if ("zoo", c.zoo.source, c.zoo.data_dir, c.zoo.limit) not in looked:
            looked.add(("zoo", c.zoo.source, c.zoo.data_dir, c.zoo.limit))
            check, size = check_zoo_dir(c)
            checks += [check] if check else []
            if size:
                sizes[c.zoo.data_dir] = size
        if ("bench", c.judge.data_dir, tuple(c.judge.benchmarks)) not in looked:
            looked.add(("bench", c.judge.data_dir, tuple(c.judge.benchmarks)))
            checks += check_bench_dir(c)
        checks += [ch for ch in check_prices(c) if ch not in checks]
    refs = list({(r.name, r.auto): r for c in configs.values() for r in model_refs(c)}.values())
    n_params: dict[str, int] = {}
    hubs: dict[str, Check] = {}
    for ref in refs:
        if ref.name not in hubs:
            hubs[ref.name] = check_hub(ref)
            checks.append(hubs[ref.name])
        if not hubs[ref.name].failed:
            load, n = check_load(ref)
            checks.append(load)
            if n:
                n_params[ref.name] = n
    unknown = [r.name for r in refs if r.auto and r.name not in n_params]
    seen: set = set()
    for c in configs.values():
        b = c.baselines
        for which, needed in (("judge", c.judge.judge == "llm"),
                              ("llm", c.llm.backend == "openai" and bool(set(b.methods) & set(LLM_BASELINES)))):
            ec = endpoint_config(c, which)
            key = (which, ec.base_url, ec.model, json.dumps(getattr(ec, "extra_body", {}), sort_keys=True))
            if needed and key not in seen:
                seen.add(key)
                checks.append(check_chat(f"{which} endpoint {ec.model}", ec))
        if c.judge.student_backend == "openai":   # untouched students; trained ones are served after training
            j = c.judge
            by_url: dict = {}
            for name in base_models(c):
                by_url.setdefault(j.student_endpoints.get(name, j.student_base_url), []).append(
                    j.student_served_names.get(name, name))
            for url, served in by_url.items():
                if ("students", url, tuple(served)) not in seen:
                    seen.add(("students", url, tuple(served)))
                    checks.append(check_served_models("student server", url, served, j.student_api_key_env))
    needs = list({n.what: n for c in configs.values() for n in memory_needs(c, n_params)}.values())
    gpus = cuda_gpus() if gpus is None else gpus
    checks += check_gpus(needs, gpus, unknown)
    world = max(1, len(gpus)) if world_size is None else world_size
    if world < 1 or (gpus and world > len(gpus)):
        checks.append(Check("FAIL", "world size", f"--world-size {world}: must be >= 1" if world < 1 else
                            f"--world-size {world} but {len(gpus)} GPU(s) visible"))
        world = max(1, min(world, len(gpus) or 1))
    p = plan(configs, world_size=world, zoo_sizes=sizes)
    checks += cost_gates(configs, p)
    for ch in checks:
        log(ch.line())
    for line in plan_lines(p):
        log(line)
    for line in budget_lines(budget(p, configs, n_params, world_size=world), p, configs, world_size=world):
        log(line)
    failed = [ch for ch in checks if ch.failed]
    log(f"preflight: {len(failed)} problem(s)" + (" (FAIL lines above)" if failed else "; ready"))
    return 1 if failed else 0


def closed_gates(cfg: RunConfig, gates: tuple[str, ...] = ("judge", "baselines")) -> list[Check]:
    """The FAIL lines of the cost gates named in `gates` ("judge", "baselines") over every grid cell, from the plan
    alone: what `pipeline` checks before the first chapter (for the chapters it runs), so a closed gate stops a run
    before any GPU work."""
    if not gates:
        return []
    configs = cells(cfg)
    sizes = {}
    for c in configs.values():
        _, size = check_zoo_dir(c)
        if size:
            sizes[c.zoo.data_dir] = size
    names = {"judge": "judge cost gate", "baselines": "LLM baselines cost gate"}
    return [ch for ch in cost_gates(configs, plan(configs, zoo_sizes=sizes))
            if ch.failed and ch.what in {names[g] for g in gates}]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crowdselect_lib preflight", description="checks before any GPU hour, and the plan")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--params", help="params file, e.g. params/table02.yaml")
    src.add_argument("--table", help="paper table number (params/tableNN.yaml of the checkout)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted override, YAML value, e.g. --set judge.n_questions=10")
    ap.add_argument("--world-size", type=int, default=None, help="GPUs the training will use (default: visible)")
    args = ap.parse_args(argv)
    from ..config import parse_sets
    from ..runs.run import params_dir

    path = args.params or f"params/table{int(args.table):02d}.yaml"
    try:
        path = args.params or params_dir() / f"table{int(args.table):02d}.yaml"
        overrides = parse_sets(args.set)
        cfg = load_config(path, overrides)
    except (ConfigError, OSError) as e:
        print(f"FAIL params {e}" if str(e).startswith(str(path)) else f"FAIL params {path}: {e}")
        return 1
    print(f"preflight of {path}" + (f" ({len(cfg.tables.grid)} grid cells)" if cfg.tables.grid else ""))
    return run_preflight(cfg, world_size=args.world_size)


if __name__ == "__main__":
    sys.exit(main())
