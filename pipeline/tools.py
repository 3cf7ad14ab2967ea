"""Running the `git` and `dvc` CLIs from the report and the studies table: one place that finds them and turns
a failure into one line naming the command."""

from __future__ import annotations

import subprocess
import sys

from pipeline.errors import PipelineError

DVC = [sys.executable, "-m", "dvc"]  # the dvc installed beside this interpreter, whatever PATH holds


def spawn(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a CLI, failure included (the caller reads the exit code)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise PipelineError(f"`{cmd[0]}` is not on PATH: install it (git comes with the system, not with pip)") from None


def output(cmd: list[str]) -> str:
    """Run a CLI and return its stdout; any failure becomes one PipelineError line naming the command."""
    proc = spawn(cmd)
    if proc.returncode != 0:
        shown = ["dvc", *cmd[3:5]] if cmd[:3] == DVC else cmd[:3]
        raise PipelineError(f"`{' '.join(shown)}` failed: {_reason(proc.stderr, proc.returncode)}")
    return proc.stdout


def _reason(stderr: str, code: int) -> str:
    """The line of a CLI's stderr that says what went wrong (dvc prefixes it with ERROR:, git with fatal:)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    flagged = [line for line in lines if line.startswith(("ERROR:", "fatal:"))]
    chosen = (flagged or lines or [f"exit code {code}"])[-1]
    return chosen.removeprefix("ERROR:").removeprefix("fatal:").strip()
