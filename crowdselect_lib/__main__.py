"""``python -m crowdselect_lib preflight --params params/table02.yaml``: checks before any GPU hour
(`preflight`); ``python -m crowdselect_lib demo|table|tables ...``: the papermill chain (`pipeline`);
``python -m crowdselect_lib select --zoo DIR --k N --out FILE``: your crowd to a training file (`selection.command`)."""
from __future__ import annotations

import sys

USAGE = ("usage: python -m crowdselect_lib preflight (--params FILE | --table N) [--set KEY=VALUE ...]\n"
         "       python -m crowdselect_lib demo|table|tables ...   (see python -m crowdselect_lib.pipeline -h)\n"
         "       python -m crowdselect_lib select --zoo DIR --k N --out FILE [...]   (see select -h)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "preflight":
        from .preflight import main as preflight_main

        return preflight_main(argv[1:])
    if argv and argv[0] == "select":
        from .selection.command import main as select_main

        return select_main(argv[1:])
    if argv and argv[0] in ("demo", "table", "tables"):
        from .pipeline import main as pipeline_main

        return pipeline_main(argv)
    print(USAGE, file=sys.stderr)
    return 0 if argv[:1] in (["-h"], ["--help"]) else 2


if __name__ == "__main__":
    sys.exit(main())
