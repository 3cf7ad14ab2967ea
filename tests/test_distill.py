"""The distill stage: training targets blended from the labels and a shipped teacher's predictions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import modelfiles
from pipeline.distill import align_classes, blend_targets, class_order
from pipeline.errors import PipelineError
from pipeline.tta import predict_probs
from pipeline.models import build_model

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["angry", "happy", "neutral"]


def test_align_classes_reorders_and_drops_what_the_data_lacks():
    teacher_classes = ["neutral", "happy", "contempt", "angry"]
    probs = np.array([[0.1, 0.2, 0.5, 0.2], [0.4, 0.4, 0.0, 0.2]])
    aligned = align_classes(probs, class_order(teacher_classes, CLASSES, "distill.teacher=ferplus"))
    np.testing.assert_allclose(aligned, [[0.4, 0.4, 0.2], [0.2, 0.4, 0.4]])


def test_class_order_refuses_a_model_without_a_data_class():
    with pytest.raises(PipelineError, match="^distill.teacher=t6 has no output for angry "):
        class_order(["happy", "neutral"], CLASSES, "distill.teacher=t6")


def test_blend_targets_mixes_by_weight():
    labels = np.eye(3, dtype=np.float32)[[0, 2]]
    teacher = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(blend_targets(labels, teacher, 0.25), [[0.875, 0.125, 0.0], [0.0, 0.0, 1.0]])
    assert blend_targets(labels, teacher, 0.25).dtype == np.float32


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A balanced train split of 3 classes, a third of it repeated rows, and a shipped (untrained, tiny) teacher
    whose classes are in another order."""
    root = tmp_path_factory.mktemp("distill")
    rng = np.random.default_rng(0)
    (root / "data/prepared").mkdir(parents=True)
    (root / "data/balanced").mkdir()
    y = np.arange(30) % 3
    x = rng.integers(0, 256, (30, 48, 48), dtype=np.uint8)
    x[20:], y[20:] = x[:10], y[:10]  # repeated rows, as oversampling makes them
    np.savez(root / "data/balanced/train.npz", x=x, y=y, targets=np.eye(3, dtype=np.float32)[y])
    (root / "data/prepared/classes.json").write_text(json.dumps(CLASSES))
    teacher = build_model("mondal_shallow", 3)
    modelfiles.save_model(teacher, root / "models/teach.keras", {"classes": ["neutral", "angry", "happy"], "input_shape": [48, 48, 1]})
    return root


def _distill(root: Path, **params) -> subprocess.CompletedProcess:
    (root / "params.yaml").write_text(yaml.safe_dump({"distill": params}))
    command = [sys.executable, "-m", "pipeline.distill", "--shipped", "models"]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_without_a_teacher_the_targets_are_the_labels(workspace):
    result = _distill(workspace)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "distill: no teacher, 30 targets are the labels\n"
    train = np.load(workspace / "data/balanced/train.npz")
    np.testing.assert_array_equal(np.load(workspace / "data/distilled/targets.npz")["targets"], train["targets"])
    assert json.loads((workspace / "data/distilled/teacher.json").read_text()) == {}


def test_a_teacher_blends_its_flip_averaged_predictions_in_the_data_class_order(workspace):
    result = _distill(workspace, teacher="teach", weight=0.4)
    assert result.returncode == 0, result.stderr
    train = np.load(workspace / "data/balanced/train.npz")
    teacher = modelfiles.load_model(workspace / "models/teach.keras")
    probs = predict_probs(teacher, train["x"], "flip", 256)[:, [1, 2, 0]]  # neutral, angry, happy -> CLASSES
    targets = np.load(workspace / "data/distilled/targets.npz")["targets"]
    np.testing.assert_allclose(targets, 0.6 * train["targets"] + 0.4 * probs, atol=1e-5)
    np.testing.assert_array_equal(targets[20:], targets[:10])  # a repeated image: one prediction
    info = json.loads((workspace / "data/distilled/teacher.json").read_text())
    assert info["teacher"] == "teach" and info["weight"] == 0.4 and len(info["teacher_sha256"]) == 64
    assert result.stdout.startswith("distill: 30 targets, 0.6 label + 0.4 teach (agrees with ")


def test_an_unknown_teacher_is_one_line_naming_the_shipped_models(workspace):
    before = (workspace / "data/distilled/targets.npz").read_bytes()
    result = _distill(workspace, teacher="fer2099")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: distill.teacher=fer2099 is not a shipped model in models/ (have: teach): it must be "
        "committed there, so DVC re-runs distillation when it changes"
    ]
    assert (workspace / "data/distilled/targets.npz").read_bytes() == before


def test_init_hands_the_shipped_file_on_and_an_unknown_one_is_one_line(workspace):
    result = _distill(workspace, init="teach")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "distill: every model starts from teach's weights"
    out = workspace / "data/distilled"
    assert (out / "init.keras").read_bytes() == (workspace / "models/teach.keras").read_bytes()
    assert json.loads((out / "init.json").read_text())["init"] == "teach"
    result = _distill(workspace, init="fer2099")
    assert result.returncode == 1
    assert result.stderr.startswith("error: distill.init=fer2099 is not a shipped model in models/ (have: teach): ")
    assert (out / "init.keras").exists()  # the failed run left the last good output whole
    assert _distill(workspace).returncode == 0
    assert not (out / "init.keras").exists()
