"""Where the evaluate stage leaves each model's results: the one owner of the paths that compare, studies and
ship read back. Keras-free, so those readers stay light."""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path("metrics")


def metrics_file(metrics_dir: Path, name: str) -> Path:
    """`name`'s test metrics: what `dvc metrics` and the compare stage show."""
    return metrics_dir / f"{name}.json"


def record_file(metrics_dir: Path, name: str) -> Path:
    """How `name` was scored: the TTA views it used, timings, and its training epochs and minutes."""
    return metrics_dir / "speed" / f"{name}.json"
