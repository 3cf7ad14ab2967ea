"""The PR report against a real git + dvc repository: two commits that differ in one param."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

STAGE_SCRIPT = """\
import json
import os

import yaml
from PIL import Image

lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
os.makedirs("metrics", exist_ok=True)
os.makedirs("plots", exist_ok=True)
with open("metrics/m.json", "w") as f:
    json.dump({"accuracy": round(0.5 + lr * 100, 4)}, f)
Image.new("RGB", (4, 4), (int(lr * 100_000) % 256, 0, 0)).save("plots/confusion.png")
"""

DVC_YAML = """\
stages:
  train:
    cmd: python write_metrics.py
    deps: [write_metrics.py]
    params: [train.lr]
    metrics:
      - metrics/m.json:
          cache: false
    plots:
      - plots/confusion.png:
          cache: false
"""


def _env() -> dict[str, str]:
    """The venv's python and dvc first on PATH, `pipeline` importable, no analytics pings, a fixed git identity."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(ROOT)
    env["DVC_NO_ANALYTICS"] = "1"
    for role in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{role}_NAME"] = "test"
        env[f"GIT_{role}_EMAIL"] = "test@example.com"
    return env


def _sh(cwd: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, check=True)


def _report(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.report", *args], cwd=cwd, env=_env(), capture_output=True, text=True
    )


def _commit_run(repo: Path, lr: str, message: str) -> None:
    (repo / "params.yaml").write_text(f"train:\n  lr: {lr}\n")
    _sh(repo, "dvc", "repro", "--quiet")
    _sh(repo, "git", "add", "-A")
    _sh(repo, "git", "commit", "--quiet", "-m", message)


def _row(markdown: str, key: str) -> list[str]:
    """The cells of the one table row that mentions `key`."""
    (line,) = [line for line in markdown.splitlines() if line.startswith("|") and f" {key} " in line]
    return [cell.strip() for cell in line.strip("|").split("|")]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repo whose last commit lowered lr from 0.001 to 0.0001, changing one metric and one PNG."""
    repo = tmp_path_factory.mktemp("repo")
    _sh(repo, "git", "init", "--quiet", "-b", "main")
    _sh(repo, "dvc", "init", "--quiet")
    _sh(repo, "dvc", "config", "core.analytics", "false")
    (repo / "write_metrics.py").write_text(STAGE_SCRIPT)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / ".gitignore").write_text("report.md\nreport-plots/\n")
    _commit_run(repo, "0.001", "baseline")
    _commit_run(repo, "0.0001", "lower lr")
    return repo


def test_report_shows_param_metric_and_image_changes(repo: Path) -> None:
    proc = _report(repo, "--base", "HEAD~1", "--head", "HEAD")
    assert proc.returncode == 0, proc.stderr
    text = (repo / "report.md").read_text()

    assert _row(text, "train.lr") == ["params.yaml", "train.lr", "0.001", "0.0001"]
    assert _row(text, "accuracy") == ["metrics/m.json", "accuracy", "0.6", "0.51", "-0.09"]

    images = [line.split("](")[1].rstrip(")") for line in text.splitlines() if "![plots/confusion.png" in line]
    assert len(images) == 2, text
    for image in images:
        assert not Path(image).is_absolute() and (repo / image).is_file()


def test_unchanged_workspace_says_so_in_words(repo: Path) -> None:
    proc = _report(repo, "--base", "HEAD", "--out", "out/pr.md", "--title", "Nothing to see")
    assert proc.returncode == 0, proc.stderr
    text = (repo / "out" / "pr.md").read_text()
    assert text.startswith("## Nothing to see\n")
    assert "`HEAD` → `workspace`" in text
    for phrase in ("no parameter changed", "no metric changed", "no image plot changed"):
        assert phrase in text
    assert "|" not in text


@pytest.mark.parametrize(
    ("where", "args", "expected"),
    [
        ("repo", ["--base", "no-such-rev"], "unknown git revision 'no-such-rev'"),
        ("repo", ["--base", "HEAD", "--head", "no-such-rev"], "unknown git revision 'no-such-rev'"),
        ("plain", [], "not inside a git repository"),
    ],
)
def test_user_errors_are_one_line(
    repo: Path, tmp_path: Path, where: str, args: list[str], expected: str
) -> None:
    proc = _report(repo if where == "repo" else tmp_path, *args, "--out", str(tmp_path / "r.md"))
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and expected in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "r.md").exists()
