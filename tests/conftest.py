"""Fixtures shared by the test modules."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]
# No per-example time limit in property tests: Hypothesis' default 200 ms failed a params test on a loaded
# machine (CI shares its cores); speed is measured by the benchmarks, never asserted by a test.
settings.register_profile("no_deadline", deadline=None)
settings.load_profile("no_deadline")
# The venv's `pytest` script, unlike `python -m pytest`, does not put the repository on sys.path: add it, so
# `pipeline`, `benchmarks` and `tests.helpers` import the same way under both.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The read-only real FER files beside the repository; without them the setup is broken, so fail, never skip."""
    path = REPO.parent / "shared" / "datasets"
    if not (path / "SHA256SUMS").is_file():
        pytest.fail(f"{path} (the real FER files with SHA256SUMS) is missing: tests on real data cannot run")
    return path


@pytest.fixture(autouse=True, scope="session")
def _venv_on_path():
    """Stage commands in dvc.yaml call `python`: make that the interpreter running the tests, venv or not."""
    import os
    import sys

    bin_dir = str(Path(sys.executable).parent)
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{old}"
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    yield
    os.environ["PATH"] = old
