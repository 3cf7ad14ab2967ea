"""The GitHub workflows: valid YAML, the agreed triggers and permissions, and no step calling a file that is not there.

GitHub only reports such mistakes when a pull request runs them; these checks catch them in the test suite.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"

# How a `run:` command names a repo file it needs, and which file that is.
REFERENCES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"\bpython3? -m ([\w.]+)"), lambda m: m.group(1).replace(".", "/") + ".py"),
    (re.compile(r"\bbash ([\w./-]+)"), lambda m: m.group(1)),
    (re.compile(r"\bpip install (?:\S+ )*-r ([\w./-]+)"), lambda m: m.group(1)),
    (re.compile(r"\bdvc (?:repro|exp run)\b"), lambda m: "dvc.yaml"),
]


def _load(name: str) -> dict[str, Any]:
    """Parse a workflow; PyYAML reads the key `on` as the boolean True (YAML 1.1), so give it its name back."""
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def _runs(workflow: dict[str, Any]) -> str:
    return "\n".join(step["run"] for step in _steps(workflow) if "run" in step)


def _referenced_paths() -> list[tuple[str, str]]:
    """(workflow, repo path) for every repo file a `run:` command needs."""
    needed = []
    for file in sorted(WORKFLOWS.glob("*.yml")):
        runs = _runs(_load(file.name))
        for pattern, path_of in REFERENCES:
            needed += [(file.name, path_of(match)) for match in pattern.finditer(runs)]
    return sorted(set(needed))


def _uses(workflow: dict[str, Any], action: str) -> dict[str, Any]:
    (step,) = [step for step in _steps(workflow) if step.get("uses", "").startswith(f"{action}@")]
    return step


def _option(command: str, name: str) -> str:
    words = shlex.split(command)
    return words[words.index(name) + 1]


def test_expected_workflows_exist() -> None:
    assert {"pr-metrics.yml", "gpu-full.yml"} <= {path.name for path in WORKFLOWS.glob("*.yml")}


@pytest.mark.parametrize(("workflow", "path"), _referenced_paths())
def test_run_steps_refer_to_existing_files(workflow: str, path: str) -> None:
    assert (ROOT / path).is_file(), f"{workflow} runs something that needs {path}, which is not in the repo"


@pytest.mark.parametrize("name", ["pr-metrics.yml", "gpu-full.yml"])
def test_comment_workflow_shape(name: str) -> None:
    """Both post a comment: they need full history for the base branch, write access to PRs, CML, and one report."""
    workflow = _load(name)
    assert "pull_request" in workflow["on"]
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert _uses(workflow, "actions/checkout")["with"]["fetch-depth"] == 0
    assert str(_uses(workflow, "actions/setup-python")["with"]["python-version"]) == "3.11"
    assert _uses(workflow, "iterative/setup-cml")["uses"].endswith("@v2")

    runs = _runs(workflow)
    (report,) = [line for line in runs.splitlines() if "-m pipeline.report" in line]
    (comment,) = [line for line in runs.splitlines() if line.startswith("cml comment update")]
    assert _option(report, "--base") == "origin/$BASE_REF"
    assert comment.split()[-1] == _option(report, "--out")
    (post,) = [step for step in _steps(workflow) if step.get("run", "").startswith("cml comment")]
    assert post["env"]["REPO_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"


def test_pr_metrics_reproduces_sample_pipeline_on_every_pr() -> None:
    workflow = _load("pr-metrics.yml")
    assert workflow["on"] == {"pull_request": None}
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest" and "if" not in job
    assert _uses(workflow, "actions/setup-python")["with"]["cache"] == "pip"
    assert re.search(r"^dvc repro$", _runs(workflow), re.MULTILINE)


def test_gpu_full_runs_only_for_labelled_prs_on_the_gpu_runner() -> None:
    workflow = _load("gpu-full.yml")
    assert "labeled" in workflow["on"]["pull_request"]["types"]
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "gpu"]
    assert "contains(github.event.pull_request.labels.*.name, 'full-run')" in job["if"]
    assert job["env"]["KERAS_BACKEND"] == "jax"
    assert '"jax[cuda12]==' in _runs(workflow)
    assert job["env"]["KAGGLE_API_TOKEN"] == "${{ secrets.KAGGLE_API_TOKEN }}"
    assert "bash benchmarks/run_full.sh" in _runs(workflow)


def test_comments_do_not_overwrite_each_other() -> None:
    """`cml comment update` replaces the last comment with the same watermark, so each workflow needs its own."""
    titles = [
        _option(_runs(_load(name)).split("cml comment update", 1)[1], "--watermark-title")
        for name in ("pr-metrics.yml", "gpu-full.yml")
    ]
    assert len(set(titles)) == 2
