"""The real pipeline under real DVC, in a temporary git repository, on the built-in sample.

Two small models keep it to a few minutes; every stage and the experiment loop run as a user runs them.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "sample": {"images_per_class": 24, "seed": 7},
    "train": {"epochs": 1, "batch_size": 32},
    "models": {"lenet_bn": {}, "sodhi_scratch": {"optimizer": "rmsprop"}},
    "ensemble": {"members": ["lenet_bn", "sodhi_scratch"], "head_epochs": 2},
}


def run(cwd: Path, *args: str) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def dvc(cwd: Path, *args: str) -> str:
    return run(cwd, sys.executable, "-m", "dvc", *args)


def stages_run(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project with small params, committed after a first `dvc repro`."""
    repo = tmp_path_factory.mktemp("project")
    for name in ("pipeline", "dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in SMALL.items():
        params[section] = values if section in ("models", "ensemble") else params[section] | values
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(repo, "git", "init", "-q")
    run(repo, "git", "config", "user.email", "ci@example.com")
    run(repo, "git", "config", "user.name", "CI")
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.analytics", "false")
    output = dvc(repo, "repro")
    assert stages_run(output) == [
        "download", "prepare", "balance",
        "train@lenet_bn", "train@sodhi_scratch", "evaluate@lenet_bn", "evaluate@sodhi_scratch",
        "ensemble", "compare",
    ] or set(stages_run(output)) >= {"download", "prepare", "balance", "ensemble", "compare"}
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "baseline")
    return repo


def test_repro_writes_every_output(project):
    data = json.loads((project / "metrics/data.json").read_text())
    assert data["train"] > 0 and data["val"] > 0 and data["test"] > 0
    assert data["dropped_duplicate"] > 0 and data["dropped_leak"] > 0 and data["dropped_blank"] > 0
    for name in ("lenet_bn", "sodhi_scratch", "ensemble", "ensemble_stacked"):
        metrics = json.loads((project / f"metrics/{name}.json").read_text())
        assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["macro_auroc"] <= 1
        assert (project / f"plots/{name}/confusion.png").stat().st_size > 0
    assert (project / "data/models/lenet_bn.keras").exists() and (project / "data/ensemble/ensemble.keras").exists()
    table = (project / "plots/compare/compare.md").read_text()
    assert all(name in table for name in ("lenet_bn", "sodhi_scratch", "ensemble"))
    assert (project / "plots/lenet_bn/train/plots/metrics/train/loss.tsv").exists()


def test_repro_with_nothing_changed_does_nothing(project):
    output = dvc(project, "repro")
    assert stages_run(output) == []
    assert "up to date" in output


def test_same_seed_gives_identical_metrics(project):
    before = (project / "metrics/lenet_bn.json").read_text()
    dvc(project, "repro", "--force", "--single-item", "train@lenet_bn")
    dvc(project, "repro", "--force", "--single-item", "evaluate@lenet_bn")
    assert (project / "metrics/lenet_bn.json").read_text() == before
    run(project, "git", "checkout", "--", ".")


def test_exp_run_with_a_train_param_reruns_only_training_and_after(project):
    output = dvc(project, "exp", "run", "-S", "train.lr=0.0001")
    ran = set(stages_run(output))
    assert {"train@lenet_bn", "train@sodhi_scratch", "evaluate@lenet_bn", "ensemble", "compare"} <= ran
    assert not ran & {"download", "prepare", "balance"}
    show = dvc(project, "exp", "show", "--md", "--no-pager")
    assert "train.lr" in show and "0.0001" in show and "lenet_bn.json" in show.replace("metrics/", "")
    diff = dvc(project, "metrics", "diff", "HEAD", "--md")
    assert "metrics/lenet_bn.json" in diff or "No changes" not in diff


def test_plots_show_renders_html(project, tmp_path):
    out = tmp_path / "plots_html"
    dvc(project, "plots", "show", "-o", str(out))
    html = (out / "index.html").read_text()
    assert "confusion" in html and "roc" in html


def test_a_wrong_param_stops_before_any_work(project):
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "run", "-S", "balance.method=magic"], cwd=project, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "balance.method='magic' is not one of: none, class_weight, oversample, undersample, smote" in result.stdout + result.stderr
