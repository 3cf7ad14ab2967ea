"""Builders shared by the serving tests: a tiny real Keras model, saved the way the pipeline saves models, and
pictures with scikit-image's astronaut (NASA, public domain, shipped in its wheel) pasted where we know."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from pipeline import modelfiles  # noqa: E402
from pipeline.classes import FER2013_LABELS  # noqa: E402

# The astronaut's head, hair to chin, 240x180.
HEAD = skdata.astronaut()[20:260, 140:320]
# The astronaut's face (x, y, w, h), brows to chin, checked by eye.
ASTRONAUT_FACE = (175, 60, 95, 115)


def tiny_model(seed: int = 0) -> keras.Model:
    """A real, untrained FER-shaped model: float pixels 0..255 in, 7 softmax probabilities out."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((48, 48, 1)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(FER2013_LABELS), activation="softmax"),
    ])


def save_model(models_dir: Path, name: str, model: keras.Model, classes=FER2013_LABELS) -> Path:
    path = models_dir / f"{name}.keras"
    modelfiles.save_model(model, path, {"classes": list(classes), "input_shape": [48, 48, 1], "data": {"source": "sample"}})
    return path


def scene(width: int, height: int, heads: list[tuple[int, int, float]], seed: int = 0) -> tuple[np.ndarray, list]:
    """An RGB picture with astronaut heads pasted at (x, y, scale) on a noisy grey wall, and where each went."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(rng.normal(140, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    placed = []
    for x, y, scale in heads:
        head = np.asarray(Image.fromarray(HEAD).resize((round(180 * scale), round(240 * scale)), Image.LANCZOS))
        rgb[y : y + head.shape[0], x : x + head.shape[1]] = head
        placed.append((x, y, head.shape[1], head.shape[0]))
    return rgb, placed
