"""The ensemble stage's stacked head: fitted on the members' validation probabilities, it is the head the
saved stacked model applies."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.ensemble import as_member, average_ensemble, fit_head, stacked_ensemble
from pipeline.splits import model_input
from tests.helpers import tiny_model


def test_the_head_fitted_on_member_probabilities_is_the_stacked_models_head():
    rng = np.random.default_rng(0)
    members = [tiny_model(seed) for seed in (1, 2)]
    for member in members:  # confident members, so their outputs carry the labels below
        kernel, bias = member.layers[-1].get_weights()
        member.layers[-1].set_weights([kernel * 100, bias])
    brightness = rng.uniform(0, 255, (512, 1, 1))  # images that differ, so the members' outputs do
    x = np.clip(brightness + rng.normal(0, 10, (512, 48, 48)), 0, 255).astype(np.uint8)
    first = members[0].predict(model_input(x), verbose=0)
    y = (first - first.mean(0)).argmax(1)  # labels a linear head over the members' outputs can learn
    val = {"x": x, "y": y, "targets": np.eye(7, dtype=np.float32)[y]}
    stacked = stacked_ensemble(members, 7)
    before = [w.copy() for w in stacked.get_layer("predictions").get_weights()]
    member_weights = [[w.copy() for w in m.get_weights()] for m in members]

    fit_head(stacked, members, val, epochs=30, seed=3)

    kernel, bias = stacked.get_layer("predictions").get_weights()
    assert not np.allclose(kernel, before[0])
    for member, weights in zip(members, member_weights):  # the members stay frozen
        assert all(np.array_equal(a, b) for a, b in zip(member.get_weights(), weights))
    x = model_input(x)
    probabilities = np.concatenate([m.predict(x, verbose=0) for m in members], axis=1)
    logits = probabilities @ kernel + bias
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(stacked.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
    head_accuracy = (expected.argmax(1) == y).mean()
    assert head_accuracy > (y == np.bincount(y).argmax()).mean()  # it learned from the labels: above the majority share


def test_two_files_of_one_architecture_ensemble_under_their_member_names():
    """Both copies are called like their architecture inside; the ensemble averages them all the same."""
    first = tiny_model(1)
    second = as_member(tiny_model(2), first.name)  # what two shipped files of one architecture look like
    with pytest.raises(ValueError, match="used 2 times"):
        average_ensemble([first, second])
    x = model_input(np.random.default_rng(0).integers(0, 256, (8, 48, 48)).astype(np.uint8))
    ensemble = average_ensemble([as_member(first, "a"), as_member(second, "b")])
    expected = (first.predict(x, verbose=0) + second.predict(x, verbose=0)) / 2
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
