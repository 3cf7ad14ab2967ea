"""Batch mixing (MixUp, CutMix): training batches whose images and one-hot targets are blended pairwise.

Mixing needs the targets, so it cannot live in the model's augmentation block; it runs on each batch that
`MixedBatches` hands to `model.fit`, with Keras' own layers, on any backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np

# train.mix's values besides "none" (plain batches, no MixedBatches), each a Keras layer taking (alpha, seed)
MIXES: dict[str, Callable[[float, int], keras.layers.Layer]] = {
    "mixup": lambda alpha, seed: keras.layers.MixUp(alpha=alpha, seed=seed),
    "cutmix": lambda alpha, seed: keras.layers.CutMix(factor=alpha, seed=seed),
}


class MixedBatches(keras.utils.PyDataset):
    """Shuffled batches of (images, targets, sample weights), each blended by `mix` (a MIXES name) with the
    Beta(`alpha`, `alpha`) weights that layer draws; the sample weight stays that of the image mixed into."""

    def __init__(self, x: np.ndarray, targets: np.ndarray, weights: np.ndarray, batch_size: int, mix: str, alpha: float, seed: int):
        super().__init__()
        self.x, self.targets, self.weights, self.batch_size = x, targets.astype(np.float32), weights, batch_size
        self.layer = MIXES[mix](alpha, seed)
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(x))

    @property
    def num_batches(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        mixed = self.layer({"images": self.x[rows], "labels": self.targets[rows]}, training=True)
        return keras.ops.convert_to_numpy(mixed["images"]), keras.ops.convert_to_numpy(mixed["labels"]), self.weights[rows]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.x))
