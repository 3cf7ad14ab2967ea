"""Stage `balance`: even out the class counts of the train split (val and test are never touched)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler
from sklearn.utils.class_weight import compute_class_weight

from pipeline import atomic
from pipeline.errors import PipelineError, run_cli
from pipeline.params import BalanceParams, load_params
from pipeline.splits import load_split


def balanced_class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """sklearn 'balanced' weights; classes absent from train get weight 1 (they never occur anyway)."""
    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {c: float(weights[list(present).index(c)]) if c in present else 1.0 for c in range(n_classes)}


def _sampled_rows(sampler_cls) -> Callable[[dict[str, np.ndarray], int], dict[str, np.ndarray]]:
    """Random over/under-sampling picks whole rows."""

    def resample(train: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        sampler = sampler_cls(random_state=seed)
        sampler.fit_resample(np.arange(len(train["y"])).reshape(-1, 1), train["y"])
        rows = np.sort(sampler.sample_indices_)
        return {key: value[rows] for key, value in train.items()}

    return resample


def smote(train: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """SMOTE interpolates new images on flattened pixels."""
    y = train["y"]
    smallest = np.bincount(y)[np.unique(y)].min()
    if smallest < 2:
        raise PipelineError("balance.method=smote needs at least 2 train images per class: use oversample")
    x = train["x"].reshape(len(y), -1).astype(np.float32)
    x_new, y_new = SMOTE(random_state=seed, k_neighbors=min(5, smallest - 1)).fit_resample(x, y)
    n_classes = train["targets"].shape[1]
    synthetic = len(y_new) - len(y)
    return {
        "x": np.clip(np.rint(x_new), 0, 255).astype(np.uint8).reshape(-1, *train["x"].shape[1:]),
        "y": y_new,
        "targets": np.concatenate([train["targets"], np.eye(n_classes, dtype=np.float32)[y_new[len(y):]]]),
        "source": np.concatenate([train["source"], np.full(synthetic, "smote")]),
    }


def _unchanged(train: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    return train


RESAMPLERS = {  # balance.method -> how it changes the train rows (class_weight weighs them in the loss instead)
    "none": _unchanged,
    "class_weight": _unchanged,
    "oversample": _sampled_rows(RandomOverSampler),
    "undersample": _sampled_rows(RandomUnderSampler),
    "smote": smote,
}


def balance(train: dict[str, np.ndarray], params: BalanceParams) -> tuple[dict[str, np.ndarray], dict[int, float]]:
    n_classes = train["targets"].shape[1]
    weights = {c: 1.0 for c in range(n_classes)}
    if params.method == "class_weight":
        weights = balanced_class_weights(train["y"], n_classes)
    return RESAMPLERS[params.method](train, params.seed), weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--out", type=Path, default=Path("data/balanced"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/balance.json"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    train = load_split(args.prepared / "train.npz")
    balanced, weights = balance(train, params.balance)
    counts = np.bincount(balanced["y"], minlength=balanced["targets"].shape[1])
    with atomic.atomic_dir(args.out) as tmp:
        atomic.save_npz(tmp / "train.npz", **balanced)
        atomic.write_json(tmp / "class_weights.json", {str(c): w for c, w in weights.items()})
    atomic.write_json(args.metrics, {"method": params.balance.method, "train_balanced": int(counts.sum()), "class_counts": counts.tolist()})
    print(f"balance.method={params.balance.method}: {len(train['y'])} → {len(balanced['y'])} train images, per class {counts.tolist()}")


if __name__ == "__main__":
    run_cli(main)
