"""Reading the prepared splits: one `.npz` per split and the class names beside them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError


def load_split(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise PipelineError(f"{path} not found: run `dvc repro prepare` first")
    with np.load(path) as data:
        return dict(data)


def load_classes(prepared: Path) -> list[str]:
    return json.loads((prepared / "classes.json").read_text())


def model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 48, 48) → float32 (N, 48, 48, 1): what every model takes."""
    return images[..., None].astype(np.float32)
