"""PNG plots (readable offline) and the small CSV files that DVC's plot templates render."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline import atomic  # noqa: E402


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic.write_text(path, frame.to_csv(index=False))


def write_data_plots(splits: dict, classes: tuple[str, ...], report: dict, out: Path) -> None:
    counts = pd.DataFrame(
        [(split, name, int((arrays["y"] == i).sum())) for split, arrays in splits.items() for i, name in enumerate(classes)],
        columns=["split", "class", "count"],
    )
    write_csv(out / "class_counts.csv", counts)
    atomic.save_figure(out / "class_counts.png", class_count_figure(counts))
    atomic.save_figure(out / "relabel_confusion.png", relabel_figure(report["relabel_confusion"]))
    atomic.save_figure(out / "examples.png", example_grid(splits["train"]["x"], splits["train"]["y"], classes))


def class_count_figure(counts: pd.DataFrame):
    table = counts.pivot(index="class", columns="split", values="count").reindex(counts["class"].unique())
    fig, ax = plt.subplots(figsize=(7, 3.5))
    table.plot.bar(ax=ax)
    ax.set_ylabel("images")
    ax.set_title("Images per class and split")
    return fig


def relabel_figure(confusion: dict[str, dict[str, int]]):
    """Original label → new label, with the images relabelling dropped in the last column."""
    table = pd.DataFrame(confusion).T.fillna(0).astype(int)
    table = table[[c for c in table.columns if c != "dropped"] + [c for c in table.columns if c == "dropped"]]
    return matrix_figure(table.to_numpy(), list(table.index), list(table.columns), "FER2013 label → new label", "new", "original")


def row_percentages(matrix: np.ndarray) -> np.ndarray:
    """Each cell as a share of its row (0 for an empty row): a confusion row reads as recall per class."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(100.0 * matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)


def matrix_figure(matrix: np.ndarray, rows: list[str], cols: list[str], title: str, xlabel: str, ylabel: str):
    """Counts with their row percentage in each cell, shaded by the percentage so small classes stay readable."""
    percent = row_percentages(matrix)
    fig, ax = plt.subplots(figsize=(1.5 + 0.85 * len(cols), 1 + 0.7 * len(rows)))
    ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for (i, j), value in np.ndenumerate(matrix):
        color = "white" if percent[i, j] > 50 else "black"
        ax.text(j, i, f"{value}\n{percent[i, j]:.0f}%", ha="center", va="center", fontsize=7, color=color)
    ax.set(title=f"{title} (count, % of row)", xlabel=xlabel, ylabel=ylabel)
    return fig


def example_grid(images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], per_class: int = 8):
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class, len(classes)), squeeze=False)
    for i, name in enumerate(classes):
        picks = np.flatnonzero(labels == i)[:per_class]
        for j, ax in enumerate(axes[i]):
            ax.axis("off")
            if j < len(picks):
                ax.imshow(images[picks[j]], cmap="gray", vmin=0, vmax=255)
        axes[i][0].set_title(name, fontsize=8, loc="left")
    return fig


def roc_figure(roc: pd.DataFrame, title: str):
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, curve in roc.groupby("class", sort=False):
        ax.plot(curve["fpr"], curve["tpr"], label=f"{name} (AUC {np.trapezoid(curve['tpr'], curve['fpr']):.2f})")
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set(title=title, xlabel="false positive rate", ylabel="true positive rate")
    ax.legend(fontsize=7)
    return fig


def per_class_figure(per_class: pd.DataFrame, title: str):
    """Precision, recall and F1 per class, the classes in the model's output order from the top."""
    fig, ax = plt.subplots(figsize=(6, 0.8 + 0.45 * len(per_class)))
    rows = np.arange(len(per_class))[::-1]
    for offset, metric in zip((0.25, 0.0, -0.25), ("precision", "recall", "f1")):
        ax.barh(rows + offset, per_class[metric], height=0.25, label=metric)
    ax.set_yticks(rows, per_class["class"])
    ax.set(title=title, xlim=(0, 1))
    ax.legend(fontsize=7, loc="lower right")
    return fig


def training_curves_figure(history: list[dict], title: str):
    """Loss and accuracy per epoch, train beside validation, against epochs and wall-clock minutes."""
    frame = pd.DataFrame(history)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(frame["epoch"], frame[metric], marker="o", ms=3, label=f"train {metric}")
        ax.plot(frame["epoch"], frame[f"val_{metric}"], marker="o", ms=3, label=f"validation {metric}")
        ax.set(xlabel=f"epoch ({frame['minutes'].iloc[-1]:.1f} training minutes in all)", title=f"{title}: {metric}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def compare_figure(table: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.35 * len(table)))
    ordered = table.iloc[::-1]
    ax.barh(ordered["model"], ordered["accuracy"], label="accuracy")
    ax.barh(ordered["model"], ordered["macro_f1"], height=0.4, label="macro F1")
    ax.set(title="Test accuracy and macro F1 per model", xlim=(0, 1))
    ax.legend(fontsize=8, loc="lower right")
    return fig
