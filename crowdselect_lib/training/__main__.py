"""``python -m crowdselect_lib.training`` (also ``accelerate launch -m crowdselect_lib.training``): train the
subsets of a params file's run, every configured (subset, student, method, seed) unless narrowed.

    accelerate launch --config_file params/accelerate/ddp.yaml -m crowdselect_lib.training \\
        --params params/table02.yaml --subset crowdselect --method sft_full
"""
from __future__ import annotations

import argparse

from ..config import ConfigError, load_config, parse_sets
from ..runs import Run
from .run import train_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m crowdselect_lib.training",
                                 description="Fine-tune the student on selected subsets (appendix B.2, Table 6).")
    ap.add_argument("--params", required=True, help="params YAML (e.g. params/table02.yaml)")
    ap.add_argument("--demo", action="store_true", help="merge the params file's demo: block (offline scale)")
    ap.add_argument("--subset", action="append", help="subset name (repeatable; default training.subsets)")
    ap.add_argument("--method", action="append", choices=["sft_full", "sft_lora", "dpo", "simpo", "orpo"])
    ap.add_argument("--student", action="append", help="student (repeatable; must be one of the config's students)")
    ap.add_argument("--seed", action="append", type=int, help="training seed (repeatable; one of training.seeds)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted override, value parsed as YAML (e.g. --set training.max_steps=10)")
    args = ap.parse_args(argv)
    try:
        overrides = parse_sets(args.set)
    except ConfigError as e:
        ap.error(str(e))
    cfg = load_config(args.params, overrides, demo=args.demo)
    for flag, given, known in (("--subset", args.subset, cfg.training.subsets),
                               ("--student", args.student, cfg.training.students or [cfg.training.student]),
                               ("--seed", args.seed, cfg.training.seeds), ("--method", args.method,
                                                                          cfg.training.methods)):
        unknown = sorted(set(given or []) - set(known)) if known is not None else []
        if unknown:
            ap.error(f"{flag} {unknown} is not in the params (have {list(known)}); add it with --set")
    table = train_all(Run.from_config(cfg), cfg, subsets=args.subset, methods=args.method,
                      student_names=args.student, seeds=args.seed)
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
