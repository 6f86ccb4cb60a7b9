"""Shared fixtures. Reference data for tests lives in ../shared/data (never copied into the project)."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_zoo_small():
    from crowdselect_lib.zoo import load_zoo

    return load_zoo("demo", n_instructions=600, seed=0)


@pytest.fixture(autouse=True)
def _runs_stay_out_of_the_checkout(monkeypatch):
    """No test writes into the checkout's runs/: a user's own demo run lives there (its config.yaml, run.log and
    steps). A test that opens a run there fails here, naming the run; give it a tmp ``run.root``."""
    from crowdselect_lib.runs import run as run_module

    real = run_module.Run.from_config.__func__
    checkout_runs = (REPO / "runs").resolve()

    def guarded(cls, cfg):
        root = Path(cfg.run.root).expanduser()
        root = root if root.is_absolute() else REPO / root
        if root.resolve() == checkout_runs:
            raise AssertionError(f"this test opens run {cfg.run.name!r} in the checkout's runs/ ({checkout_runs}); "
                                 "give it a tmp run.root")
        return real(cls, cfg)

    monkeypatch.setattr(run_module.Run, "from_config", classmethod(guarded))
