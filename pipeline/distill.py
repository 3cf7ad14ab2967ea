"""Stage `distill`: the targets every model trains on, the labels blended with a shipped teacher's predictions.

Knowledge distillation, offline: the teacher (`distill.teacher`, a model committed under `models/`, so DVC
tracks its file) predicts each balanced train image once, with flip TTA, and each target becomes
`(1 - weight) * label + weight * teacher`. Without a teacher the targets are the labels, unchanged, so
the train stages see the same data as before and do not re-run.

Transfer, the other way a shipped model teaches: `distill.init` names one whose weights each trained model
starts from (e.g. the FER+ net for a FER2013 run: its classifier starts fresh, as the class counts differ);
the stage hands its file to the train stages as `init.keras`.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

import numpy as np

from pipeline import atomic, modelfiles
from pipeline.clean import image_hashes
from pipeline.errors import PipelineError, run_cli
from pipeline.params import DistillParams, load_params
from pipeline.relabel import blend_targets
from pipeline.splits import load_classes, load_split
from pipeline.tta import predict_probs


def class_order(model_classes: list[str], classes: list[str], source: str) -> list[int]:
    """Where each of the data's classes sits in a model's outputs; checked before any prediction is paid for.
    `source` names the model in the one-line error (`distill.teacher=X`, a file)."""
    missing = [c for c in classes if c not in model_classes]
    if missing:
        raise PipelineError(
            f"{source} has no output for {', '.join(missing)} (its classes: {', '.join(model_classes)}): "
            "use a model trained on the classes of data.classes"
        )
    return [model_classes.index(c) for c in classes]


def align_classes(probs: np.ndarray, order: list[int]) -> np.ndarray:
    """A model's probabilities in the data's class order (`class_order`); classes the data lacks (e.g. a
    FER+ model's contempt for fer7 data) are dropped and the rest renormalised."""
    aligned = probs[:, order]
    return aligned / np.maximum(aligned.sum(axis=1, keepdims=True), 1e-12)


def predict_each_image_once(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Flip-averaged probabilities for every row, predicting each distinct image once: oversampling repeats
    rows, and a repeated image gets the same prediction."""
    _, first, inverse = np.unique(image_hashes(x), return_index=True, return_inverse=True)
    return predict_probs(model, x[first], "flip", batch_size)[inverse]


def shipped_file(key: str, name: str, shipped_dir: Path) -> Path:
    """The file of the shipped model that `distill.<key>` names."""
    shipped = modelfiles.available_models(shipped_dir)
    if name not in shipped:
        raise PipelineError(
            f"distill.{key}={name} is not a shipped model in {shipped_dir}/ (have: {', '.join(shipped) or 'none'}): "
            "it must be committed there, so DVC re-runs distillation when it changes"
        )
    return shipped[name]


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def distill(train: dict[str, np.ndarray], classes: list[str], params: DistillParams, shipped_dir: Path) -> tuple[np.ndarray, dict]:
    """The training targets, and what made them (for the student's .json)."""
    if not params.teacher:
        return train["targets"], {}
    path = shipped_file("teacher", params.teacher, shipped_dir)
    order = class_order(modelfiles.read_info(path)["classes"], classes, f"distill.teacher={params.teacher}")
    teacher_probs = align_classes(predict_each_image_once(modelfiles.load_model(path), train["x"]), order)
    agreement = float((teacher_probs.argmax(axis=1) == train["y"]).mean())
    info = {"teacher": params.teacher, "weight": params.weight, "teacher_sha256": sha256(path),
            "teacher_train_agreement": round(agreement, 4)}  # fmt: skip
    return blend_targets(train["targets"], teacher_probs, params.weight), info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--balanced", type=Path, default=Path("data/balanced"))
    parser.add_argument("--shipped", type=Path, default=modelfiles.SHIPPED_DIR)
    parser.add_argument("--out", type=Path, default=Path("data/distilled"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    train = load_split(args.balanced / "train.npz")
    init = shipped_file("init", params.distill.init, args.shipped) if params.distill.init else None
    targets, info = distill(train, load_classes(args.prepared), params.distill, args.shipped)
    with atomic.atomic_dir(args.out) as tmp:
        atomic.save_npz(tmp / "targets.npz", targets=targets)
        atomic.write_json(tmp / "teacher.json", info)
        if init:
            shutil.copyfile(init, tmp / "init.keras")
            atomic.write_json(tmp / "init.json", {"init": params.distill.init, "init_sha256": sha256(init)})
    if info:
        print(f"distill: {len(targets)} targets, {1 - params.distill.weight:g} label + {params.distill.weight:g} "
              f"{params.distill.teacher} (agrees with {info['teacher_train_agreement']:.1%} of the train labels)")
    else:
        print(f"distill: no teacher, {len(targets)} targets are the labels")
    if init:
        print(f"distill: every model starts from {params.distill.init}'s weights")


if __name__ == "__main__":
    run_cli(main)
