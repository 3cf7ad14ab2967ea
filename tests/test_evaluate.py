"""Evaluation metrics on predictions whose right answers are worked out by hand."""

import json
import typing

import numpy as np
import pytest

from pipeline.evaluate import classification_metrics, write_report
from pipeline.params import EvaluateParams
from pipeline.tta import AUTO, VIEWS, choose_views, predict_probs

CLASSES = ["a", "b", "c"]
Y = np.array([0, 0, 1, 1, 2, 2])
# Predicted classes: 0, 1, 1, 1, 2, 0 (second choice in the comment).
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # 0 ✓            (2nd: 1)
        [0.3, 0.6, 0.1],  # 1 ✗ true 0     (2nd: 0 → top-2 hit)
        [0.1, 0.8, 0.1],  # 1 ✓
        [0.2, 0.5, 0.3],  # 1 ✓
        [0.1, 0.2, 0.7],  # 2 ✓
        [0.5, 0.4, 0.1],  # 0 ✗ true 2     (2nd: 1 → top-2 miss)
    ]
)


def mann_whitney_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """AUROC as the share of (positive, negative) pairs ranked the right way, ties counting half."""
    pos, neg = scores[positive], scores[~positive]
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    return float(np.mean(pairs))


def test_summary_metrics_match_hand_computed_values():
    result = classification_metrics(Y, PROBS, CLASSES)
    summary = result["summary"]
    assert summary["accuracy"] == pytest.approx(4 / 6)
    assert summary["top2_accuracy"] == pytest.approx(5 / 6)
    f1 = [0.5, 2 * (2 / 3) / (2 / 3 + 1), 2 * 0.5 / 1.5]
    assert summary["macro_f1"] == pytest.approx(np.mean(f1))
    assert summary["weighted_f1"] == pytest.approx(np.mean(f1))  # equal supports
    assert summary["macro_precision"] == pytest.approx(np.mean([0.5, 2 / 3, 1.0]))
    assert summary["macro_recall"] == pytest.approx(np.mean([0.5, 1.0, 0.5]))
    assert summary["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.8, 0.5, 0.7, 0.1])))
    aucs = [mann_whitney_auc(Y == c, PROBS[:, c]) for c in range(3)]
    assert result["per_class"]["auroc"].tolist() == pytest.approx(aucs)
    assert summary["macro_auroc"] == pytest.approx(np.mean(aucs))
    assert result["confusion"].tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_a_class_absent_from_the_test_split_has_no_auroc():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1]])
    result = classification_metrics(y, probs, CLASSES)
    assert np.isnan(result["per_class"]["auroc"][2])
    assert result["summary"]["macro_auroc"] == pytest.approx(1.0)
    assert set(result["roc"]["class"]) == {"a", "b"}


def test_tta_registry_is_exactly_the_allowed_values():
    assert set(VIEWS) | {AUTO} == set(typing.get_args(typing.get_type_hints(EvaluateParams)["tta"]))


def test_auto_tta_takes_the_views_best_on_validation():
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 48, 48), dtype=np.uint8)
    val = {"x": x, "y": predict_probs(model, x, "flip", 64).argmax(axis=1)}  # labels that flip TTA gets all right
    chosen, scores = choose_views(model, val, AUTO, 64)
    assert chosen == "flip" and scores["flip"] == 1.0 and set(scores) == set(VIEWS)
    assert scores["none"] == float((predict_probs(model, x, "none", 64).argmax(axis=1) == val["y"]).mean()) < 1.0
    assert choose_views(model, val, "flip_shift", 64) == ("flip_shift", {})  # a named choice is kept, val unused
    constant = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Lambda(lambda t: keras.ops.ones_like(t[:, 0, 0, :]))])
    assert choose_views(constant, val, AUTO, 64)[0] == "none"  # a tie goes to the fewest views


def test_tta_views():
    x = np.arange(2 * 48 * 48, dtype=np.uint8).reshape(2, 48, 48)
    assert len(VIEWS["none"](x)) == 1
    flip = VIEWS["flip"](x)
    assert len(flip) == 2 and (flip[1] == x[:, :, ::-1]).all()
    shifted = VIEWS["flip_shift"](x)
    assert len(shifted) == 10 and all(v.shape == x.shape for v in shifted)
    assert (shifted[2][:, 2:, :] == x[:, :-2, :]).all()  # content moved 2 px down
    assert (shifted[4][:, :, 2:] == x[:, :, :-2]).all()  # content moved 2 px right


def test_each_tta_entry_begins_with_the_previous_ones_views():
    """choose_views scores every entry on a prefix of the last entry's views."""
    x = np.arange(2 * 48 * 48, dtype=np.uint8).reshape(2, 48, 48)
    views = [VIEWS[name](x) for name in VIEWS]
    for shorter, longer in zip(views, views[1:]):
        assert len(shorter) < len(longer)
        assert all((a == b).all() for a, b in zip(shorter, longer))


def test_write_report_files(tmp_path):
    summary = write_report("m", Y, PROBS, CLASSES, tmp_path / "metrics", tmp_path / "plots")
    saved = json.loads((tmp_path / "metrics/m.json").read_text())
    assert saved == {k: round(v, 6) for k, v in summary.items()}
    confusion = (tmp_path / "plots/m/confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and confusion[2] == "a,b" and len(confusion) == 7
    for name in ("roc.csv", "per_class.csv", "confusion.png", "roc.png"):
        assert (tmp_path / "plots/m" / name).stat().st_size > 0
