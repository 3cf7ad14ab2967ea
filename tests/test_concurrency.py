"""Real DVC in a temporary git repository with the data stages: concurrent runs, failed experiments, killed stages."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# download + prepare as in dvc.yaml, and a stage that holds the workspace until the test lets it go.
DVC_YAML = {
    "stages": {
        "download": {
            "cmd": "python -m pipeline.download",
            "params": ["data.dataset", "data.source", "sample"],
            "outs": ["data/raw"],
        },
        "prepare": {
            "cmd": "python -m pipeline.prepare",
            "deps": ["data/raw"],
            "params": ["data", "clean", "relabel"],
            "outs": ["data/prepared", {"metrics/data_report.json": {"cache": False}}],
            "metrics": [{"metrics/data.json": {"cache": False}}],
        },
        "slow": {"cmd": "python slow.py", "params": ["train.lr"], "outs": [{"lr.json": {"cache": False}}]},
    }
}
SLOW = """from pathlib import Path
import json, time
from pipeline.params import load_params

params = load_params()
Path("started").touch()
while not Path("release").exists():
    time.sleep(0.1)
json.dump(params.train.lr, open("lr.json", "w"))
"""
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text()) | {"sample": {"images_per_class": 8, "seed": 7}}


def run(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert not check or result.returncode == 0, f"{args} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(cwd, sys.executable, "-m", "dvc", *args, check=check)


@pytest.fixture
def repo(tmp_path) -> Path:
    shutil.copytree(ROOT / "pipeline", tmp_path / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    (tmp_path / "slow.py").write_text(SLOW)
    (tmp_path / ".gitignore").write_text("started\nrelease\n__pycache__/\n")
    run(tmp_path, "git", "init", "-q")
    run(tmp_path, "git", "config", "user.email", "ci@example.com")
    run(tmp_path, "git", "config", "user.name", "CI")
    dvc(tmp_path, "init", "-q")
    (tmp_path / "release").touch()
    dvc(tmp_path, "repro")
    (tmp_path / "release").unlink()
    (tmp_path / "started").unlink()
    run(tmp_path, "git", "add", "-A")
    run(tmp_path, "git", "commit", "-qm", "baseline")
    return tmp_path


def wait_for(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path.name} did not appear"
        time.sleep(0.1)


def test_a_second_experiment_refuses_while_one_runs_and_changes_nothing(repo):
    first = subprocess.Popen(
        [sys.executable, "-m", "dvc", "exp", "run", "-S", "train.lr=0.01"], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(repo / "started", first)
    params_during = (repo / "params.yaml").read_text()
    second = dvc(repo, "exp", "run", "-S", "train.lr=0.5", check=False)
    assert second.returncode != 0
    assert "Unable to acquire lock" in second.stderr
    assert (repo / "params.yaml").read_text() == params_during  # the second wrote nothing
    (repo / "release").touch()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    assert json.loads((repo / "lr.json").read_text()) == 0.01  # the first ran with its own value
    assert experiment_lrs(repo) == [0.01]


def experiment_lrs(repo: Path) -> list[float]:
    """train.lr of every recorded experiment."""
    (baseline,) = json.loads(dvc(repo, "exp", "show", "--json").stdout)[1:]
    return [run["revs"][0]["data"]["params"]["params.yaml"]["data"]["train"]["lr"] for run in baseline["experiments"]]


def test_a_failed_experiment_leaves_params_and_committed_outputs_as_they_were(repo):
    params_before = (repo / "params.yaml").read_text()
    report_before = (repo / "metrics/data_report.json").read_bytes()
    with np.load(repo / "data/prepared/train.npz") as train:
        x_before = train["x"].copy()
    result = dvc(repo, "exp", "run", "-S", "data.val_fraction=nan", check=False)
    assert result.returncode != 0
    assert "error: params.yaml: data.val_fraction=nan is not a finite number" in result.stdout + result.stderr
    assert (repo / "params.yaml").read_text() == params_before
    assert (repo / "metrics/data_report.json").read_bytes() == report_before
    with np.load(repo / "data/prepared/train.npz") as train:
        assert np.array_equal(train["x"], x_before)
    assert run(repo, "git", "status", "--porcelain").stdout == ""
    assert "up to date" in dvc(repo, "status").stdout


def orphans(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if ".tmp" in p.name)


@pytest.mark.parametrize(("stage", "temporary"), [("download", ".raw."), ("prepare", ".prepared.")])
def test_a_stage_killed_mid_write_reruns_to_the_same_outputs_with_no_orphans(repo, stage, temporary):
    expected = {p.name: np.load(p)["x"] for p in (repo / "data/prepared").glob("*.npz")}
    report = (repo / "metrics/data_report.json").read_text()
    env = {**os.environ, "PYTHONPATH": str(repo)}
    for attempt in range(5):  # SIGKILL lands while the stage writes its hidden temporary output
        process = subprocess.Popen([sys.executable, "-m", f"pipeline.{stage}"], cwd=repo, env=env)
        while process.poll() is None and not any(p.name.startswith(temporary) for p in (repo / "data").iterdir()):
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        if process.wait() == -signal.SIGKILL:
            break
    assert process.returncode == -signal.SIGKILL
    for name in ("download", "prepare"):
        run(repo, sys.executable, "-m", f"pipeline.{name}")  # what `dvc repro` runs again
    assert orphans(repo) == []
    assert {p.name: np.load(p)["x"].tolist() for p in (repo / "data/prepared").glob("*.npz")} == {
        name: x.tolist() for name, x in expected.items()
    }
    assert (repo / "metrics/data_report.json").read_text() == report
