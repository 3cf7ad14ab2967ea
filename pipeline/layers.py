"""Custom Keras layers, registered so that `.keras` files load with `safe_mode=True` on any backend."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="fer")
class SaltAndPepper(keras.layers.Layer):
    """Impulse noise: in training, set a fraction `rate` of the pixels to black or white (half each).

    Identity at inference. `value_range` gives the black and white values of the incoming images.
    """

    def __init__(self, rate: float, value_range: tuple[float, float] = (0.0, 255.0), seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"SaltAndPepper: rate must be in [0, 1], got {rate}")
        self.rate = rate
        self.value_range = tuple(value_range)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        low, high = self.value_range
        draw = keras.random.uniform(ops.shape(inputs), seed=self.seed_generator)
        outputs = ops.where(draw < self.rate / 2, ops.cast(low, inputs.dtype), inputs)
        return ops.where(draw > 1 - self.rate / 2, ops.cast(high, inputs.dtype), outputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "value_range": self.value_range, "seed": self.seed}
