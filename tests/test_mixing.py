"""Batch mixing: MixedBatches blends images and targets alike and covers every image once an epoch."""

from typing import get_args, get_type_hints

import numpy as np
import pytest

from pipeline.mixing import MIXES, MixedBatches
from pipeline.params import TrainParams

CLASS_VALUE = np.array([20.0, 120.0, 220.0], np.float32)  # each class's images are one flat grey
# How far an image's mean grey may stray from its target's: none for MixUp; CutMix weighs the target by its box's
# real-valued area but pastes whole pixels, up to a row and a column more or less on each side of 48
STRAY = {"mixup": 0.01, "cutmix": (CLASS_VALUE[2] - CLASS_VALUE[0]) * 4 / 48}


def test_the_registry_is_every_allowed_mix_but_none():
    assert set(MIXES) | {"none"} == set(get_args(get_type_hints(TrainParams)["mix"]))


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_each_mixed_image_is_its_targets_blend_and_an_epoch_anchors_every_image_once(mix):
    y = np.arange(90) % 3
    x = np.broadcast_to(CLASS_VALUE[y][:, None, None, None], (90, 48, 48, 1)).copy()
    batches = MixedBatches(x, np.eye(3, dtype=np.float32)[y], np.arange(90, dtype=np.float32), 32, mix, 1.0, seed=5)
    assert batches.num_batches == 3
    anchors, blended = [], 0
    for index in range(batches.num_batches):
        images, targets, weights = batches[index]
        assert images.shape == (len(weights), 48, 48, 1)
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-5)
        # a pixel's grey is the class values weighted as the target weights the classes, so image and target agree
        np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), targets @ CLASS_VALUE, atol=STRAY[mix])
        anchors += weights.astype(int).tolist()  # the sample weight is the anchor image's
        blended += int((targets.max(axis=1) < 0.99).sum())
    assert sorted(anchors) == list(range(90))
    assert blended > 30  # Beta(1, 1): most pairs blend
    first_order = batches.order.copy()
    batches.on_epoch_end()
    assert not np.array_equal(first_order, batches.order)
