"""Stage `evaluate@<model>`: test-split metrics, confusion matrix and ROC curves for one trained model."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
    top_k_accuracy_score,
)

from pipeline import atomic, modelfiles, plots
from pipeline.errors import run_cli
from pipeline.params import EvaluateParams, load_params
from pipeline.records import metrics_file, record_file
from pipeline.splits import load_classes, load_split
from pipeline.tta import choose_views, predict_probs


def classification_metrics(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """Everything the report shows, from true labels and predicted probabilities."""
    labels = np.arange(len(classes))
    predicted = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=labels, zero_division=0)
    macro = precision_recall_fscore_support(y, predicted, labels=labels, average="macro", zero_division=0)
    weighted = precision_recall_fscore_support(y, predicted, labels=labels, average="weighted", zero_division=0)
    present = [c for c in labels if 0 < (y == c).sum() < len(y)]
    per_class_auc = {classes[c]: float(roc_auc_score(y == c, probs[:, c])) for c in present}
    eps = 1e-7
    return {
        "summary": {
            "accuracy": float(accuracy_score(y, predicted)),
            "loss": float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], eps, 1.0)))),
            "top2_accuracy": float(top_k_accuracy_score(y, probs, k=2, labels=labels)),
            "macro_precision": float(macro[0]),
            "macro_recall": float(macro[1]),
            "macro_f1": float(macro[2]),
            "weighted_f1": float(weighted[2]),
            "macro_auroc": float(np.mean(list(per_class_auc.values()))) if per_class_auc else float("nan"),
        },
        "per_class": pd.DataFrame(
            {
                "class": classes,
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "support": support,
                "auroc": [per_class_auc.get(c, np.nan) for c in classes],
            }
        ),
        "confusion": confusion_matrix(y, predicted, labels=labels),
        "roc": pd.concat(
            [
                pd.DataFrame(dict(zip(("fpr", "tpr"), roc_curve(y == c, probs[:, c])[:2])) | {"class": classes[c]})
                for c in present
            ]
        )
        if present
        else pd.DataFrame(columns=["fpr", "tpr", "class"]),
    }


def write_report(name: str, y: np.ndarray, probs: np.ndarray, classes: list[str], metrics_dir: Path, plots_dir: Path) -> dict:
    """metrics/<name>.json (short keys for `dvc exp show`) and plots/<name>/ (CSV for DVC templates + PNG)."""
    result = classification_metrics(y, probs, classes)
    out = plots_dir / name
    atomic.write_json(metrics_file(metrics_dir, name), {k: round(v, 6) for k, v in result["summary"].items()})
    plots.write_csv(out / "per_class.csv", result["per_class"].round(6))
    predicted = probs.argmax(axis=1)
    plots.write_csv(out / "confusion.csv", pd.DataFrame({"actual": np.array(classes)[y], "predicted": np.array(classes)[predicted]}))
    plots.write_csv(out / "roc.csv", result["roc"].round(6))
    atomic.save_figure(out / "confusion.png", plots.matrix_figure(result["confusion"], classes, classes, f"{name}: test confusion", "predicted", "actual"))
    atomic.save_figure(out / "roc.png", plots.roc_figure(result["roc"], f"{name}: one-vs-rest ROC"))
    atomic.save_figure(out / "per_class.png", plots.per_class_figure(result["per_class"], f"{name}: per-class test scores"))
    return result["summary"]


def evaluate_model(
    name: str, model: keras.Model, val: dict[str, np.ndarray], test: dict[str, np.ndarray], classes: list[str],
    params: EvaluateParams, metrics_dir: Path, plots_dir: Path, training: dict | None = None,
) -> dict:
    """Choose the TTA views (on `val` for `auto`), predict the test split and write its evaluation."""
    tta, val_scores = choose_views(model, val, params.tta, params.batch_size)
    start = time.perf_counter()
    probs = predict_probs(model, test["x"], tta, params.batch_size)
    seconds = time.perf_counter() - start
    return write_evaluation(name, test["y"], probs, seconds, tta, val_scores, classes, metrics_dir, plots_dir, training)


def write_evaluation(
    name: str, y: np.ndarray, probs: np.ndarray, seconds: float, tta: str, val_scores: dict[str, float],
    classes: list[str], metrics_dir: Path, plots_dir: Path, training: dict | None = None,
) -> dict:
    """The report and the record beside it (the views and their validation scores; inference time and
    `training`'s minutes and epochs: timings vary run to run, so they are an output beside the metrics, not a
    metric); returns the summary metrics."""
    summary = write_report(name, y, probs, classes, metrics_dir, plots_dir)
    chosen = {"tta_val_accuracy": {k: round(v, 6) for k, v in val_scores.items()}} if val_scores else {}
    atomic.write_json(
        record_file(metrics_dir, name),
        {"ms_per_image": round(1000 * seconds / len(y), 3), "tta": tta, **chosen, "backend": keras.backend.backend()}
        | (training or {}),
    )
    print(f"{name}: " + ", ".join(f"{k}={v:.4f}" for k, v in summary.items()))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--models", type=Path, default=Path("data/models"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--plots", type=Path, default=Path("plots"))
    args = parser.parse_args(argv)
    params = load_params(args.params).evaluate
    classes = load_classes(args.prepared)
    val, test = load_split(args.prepared / "val.npz"), load_split(args.prepared / "test.npz")
    path = args.models / f"{args.model}.keras"
    model, info = modelfiles.load_model(path), modelfiles.read_info(path)
    training = {"train_minutes": round(info["train_minutes"], 2), "epochs": info["epochs_run"]}
    evaluate_model(args.model, model, val, test, classes, params, args.metrics, args.plots, training)


if __name__ == "__main__":
    run_cli(main)
