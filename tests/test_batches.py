"""Training batches: every image once an epoch in an order of its own, resumable, and mixes that blend images
and targets alike."""

from typing import get_args, get_type_hints

import numpy as np
import pytest

from pipeline.batches import MIXES, TrainingBatches
from pipeline.params import TrainParams

CLASS_VALUE = np.array([20.0, 120.0, 220.0], np.float32)  # each class's images are one flat grey
# How far an image's mean grey may stray from its target's: none for MixUp; CutMix weighs the target by its box's
# real-valued area but pastes whole pixels, up to a row and a column more or less on each side of 48
STRAY = {"mixup": 0.01, "cutmix": (CLASS_VALUE[2] - CLASS_VALUE[0]) * 4 / 48}


def _batches(mix: str = "none", first_epoch: int = 0) -> TrainingBatches:
    """90 flat-grey images of 3 classes in batches of 32 (the last one 26); each sample weight is its image's row."""
    y = np.arange(90) % 3
    x = np.broadcast_to(CLASS_VALUE[y][:, None, None, None], (90, 48, 48, 1)).copy()
    return TrainingBatches(x, np.eye(3, dtype=np.float32)[y], np.arange(90, dtype=np.float32), 32, seed=5,
                           first_epoch=first_epoch, mix=mix, alpha=1.0)  # fmt: skip


def _epoch_rows(batches: TrainingBatches, epoch: int) -> list[int]:
    return [int(w) for step in range(batches.steps) for w in batches[epoch * batches.steps + step][2]]


def test_the_registry_is_every_allowed_mix_but_none():
    assert set(MIXES) | {"none"} == set(get_args(get_type_hints(TrainParams)["mix"]))


def test_each_epoch_visits_every_image_once_in_an_order_of_its_own_and_a_resumed_run_sees_the_same_epochs():
    batches = _batches()
    assert batches.num_batches is None and batches.steps == 3  # endless: Keras keeps one iterator for the run
    epochs = [_epoch_rows(batches, epoch) for epoch in range(3)]
    assert all(sorted(rows) == list(range(90)) for rows in epochs)
    assert len({tuple(rows) for rows in epochs}) == 3
    resumed = _batches(first_epoch=1)  # a run resumed after epoch 1 starts at epoch 2's order
    assert [_epoch_rows(resumed, epoch) for epoch in range(2)] == epochs[1:]
    images, targets, weights = batches[0]
    np.testing.assert_array_equal(targets.argmax(axis=1), weights.astype(int) % 3)  # unmixed: one-hot, in step


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_each_mixed_image_is_its_targets_blend(mix):
    batches = _batches(mix)
    blended = 0
    for index in range(batches.steps):
        images, targets, weights = batches[index]
        assert images.shape == (len(weights), 48, 48, 1)
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-5)
        # a pixel's grey is the class values weighted as the target weights the classes, so image and target agree
        np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), targets @ CLASS_VALUE, atol=STRAY[mix])
        blended += int((targets.max(axis=1) < 0.99).sum())
    assert sorted(_epoch_rows(batches, 0)) == list(range(90))  # the sample weight is the anchor image's
    assert blended > 30  # Beta(1, 1): most pairs blend
