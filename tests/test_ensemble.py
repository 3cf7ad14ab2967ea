"""The ensemble stage: its stacked head, fitted on the members' validation probabilities, is the head the saved
stacked model applies, and the scores it reports from the members' probabilities are the saved models' scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from pipeline import ensemble, modelfiles
from pipeline.ensemble import as_member, average_ensemble, fit_head, stacked_ensemble, stacked_head
from pipeline.evaluate import evaluate_model
from pipeline.params import load_params
from pipeline.records import metrics_file, record_file
from pipeline.splits import load_classes, load_split, model_input
from tests.helpers import save_model, tiny_model


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

    probabilities = np.concatenate([m.predict(model_input(x), verbose=0) for m in members], axis=1)
    fit_head(stacked_head(stacked, 14), probabilities, val["targets"], epochs=30, seed=3)

    kernel, bias = stacked.get_layer("predictions").get_weights()
    assert not np.allclose(kernel, before[0])
    for member, weights in zip(members, member_weights):  # the members stay frozen
        assert all(np.array_equal(a, b) for a, b in zip(member.get_weights(), weights))
    x = model_input(x)
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


def test_the_stage_reports_what_its_saved_ensembles_score(tmp_path):
    """The stage scores both ensembles from each member's probabilities of each view, predicted once; evaluating
    the saved ensemble files the way evaluate@<model> does gives the same views, accuracy and loss."""
    rng = np.random.default_rng(0)
    prepared, models = tmp_path / "prepared", tmp_path / "models"
    prepared.mkdir()
    (prepared / "classes.json").write_text(json.dumps(modelfiles.read_info(save_model(models, "a", tiny_model(1)))["classes"]))
    save_model(models, "b", tiny_model(2))
    for split, n in (("val", 96), ("test", 80)):
        y = rng.integers(0, 7, n)
        x = np.clip(rng.uniform(0, 255, (n, 1, 1)) + rng.normal(0, 30, (n, 48, 48)), 0, 255).astype(np.uint8)
        np.savez(prepared / f"{split}.npz", x=x, y=y, targets=np.eye(7, dtype=np.float32)[y])
    params = {"models": {"a": {"architecture": "fer_resnet"}, "b": {"architecture": "fer_resnet"}},
              "ensemble": {"members": ["a", "b"], "head_epochs": 5}, "evaluate": {"tta": "auto", "batch_size": 32}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage = {"metrics": tmp_path / "metrics", "plots": tmp_path / "plots"}
    ensemble.main(["--params", str(tmp_path / "params.yaml"), "--prepared", str(prepared), "--models", str(models),
                   "--out", str(tmp_path / "out"), "--metrics", str(stage["metrics"]), "--plots", str(stage["plots"])])  # fmt: skip

    val, test = load_split(prepared / "val.npz"), load_split(prepared / "test.npz")
    classes = load_classes(prepared)
    evaluate_params = load_params(tmp_path / "params.yaml").evaluate
    for name in ("ensemble", "ensemble_stacked"):
        saved = modelfiles.load_model(tmp_path / "out" / f"{name}.keras")
        expected = evaluate_model(name, saved, val, test, classes, evaluate_params, tmp_path / "check", tmp_path / "check_plots")
        reported = json.loads(metrics_file(stage["metrics"], name).read_text())
        assert reported["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
        assert reported["loss"] == pytest.approx(expected["loss"], rel=1e-4)
        record, check = (json.loads(record_file(d, name).read_text()) for d in (stage["metrics"], tmp_path / "check"))
        assert record["tta"] == check["tta"]
        assert record["tta_val_accuracy"] == pytest.approx(check["tta_val_accuracy"], abs=1e-6)
