"""Training batches for `model.fit`: an endless stream, shuffled anew each epoch, optionally mixed (MixUp, CutMix).

Endless, with fit's `steps_per_epoch`, so that Keras keeps one input iterator for the whole run. Given arrays or
a finite dataset it starts one each epoch, and on the TensorFlow backend the old one's destructor, run at the next
epoch's first batch, waited 10-64 s on a quarter of the two-hour preset's epochs (README, "Epoch starts").
Mixing needs the targets, so it cannot live in the model's augmentation block; it uses Keras' own layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np

# train.mix's values besides "none" (plain batches), each a Keras layer taking (alpha, seed)
MIXES: dict[str, Callable[[float, int], keras.layers.Layer]] = {
    "mixup": lambda alpha, seed: keras.layers.MixUp(alpha=alpha, seed=seed),
    "cutmix": lambda alpha, seed: keras.layers.CutMix(factor=alpha, seed=seed),
}


class TrainingBatches(keras.utils.PyDataset):
    """(images, targets, sample weights) batches; batch `index` is step `index % steps` of epoch `first_epoch +
    index // steps`, whose order depends on `seed` and that epoch alone, so a resumed run sees the same epochs.
    With a `mix`, each batch is blended with the Beta(`alpha`, `alpha`) weights its layer draws; a sample
    weight stays that of the image mixed into."""

    def __init__(self, x: np.ndarray, targets: np.ndarray, weights: np.ndarray, batch_size: int, seed: int,
                 first_epoch: int = 0, mix: str = "none", alpha: float = 0.2):  # fmt: skip
        super().__init__()
        self.x, self.targets, self.weights, self.batch_size = x, targets.astype(np.float32), weights, batch_size
        self.seed, self.first_epoch = seed, first_epoch
        self.steps = math.ceil(len(x) / batch_size)
        self.layer = None if mix == "none" else MIXES[mix](alpha, seed + first_epoch)
        self.epoch, self.rows = -1, np.arange(0)

    @property
    def num_batches(self) -> None:
        return None  # endless: fit with steps_per_epoch=self.steps

    def order(self, epoch: int) -> np.ndarray:
        """The rows in the order `epoch` visits them (kept for the epoch's batches)."""
        if epoch != self.epoch:
            self.epoch, self.rows = epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.x))
        return self.rows

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        epoch, step = divmod(index, self.steps)
        rows = self.order(self.first_epoch + epoch)[step * self.batch_size : (step + 1) * self.batch_size]
        x, targets = self.x[rows], self.targets[rows]
        if self.layer is not None:
            mixed = self.layer({"images": x, "labels": targets}, training=True)
            x, targets = keras.ops.convert_to_numpy(mixed["images"]), keras.ops.convert_to_numpy(mixed["labels"])
        return x, targets, self.weights[rows]
