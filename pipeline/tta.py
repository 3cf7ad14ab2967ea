"""Test-time augmentation: a model's class probabilities averaged over views of each image.

One owner for the evaluate, ensemble and distill stages, so a change to how one stage reports does not
re-run the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from pipeline.splits import model_input

if TYPE_CHECKING:
    import keras


def mirrored(x: np.ndarray) -> np.ndarray:
    return x[:, :, ::-1]


def shifted(x: np.ndarray, px: int = 2) -> list[np.ndarray]:
    """(N, H, W) images moved `px` pixels down, up, right and left, the edge pixels repeated into the gap."""
    padded = np.pad(x, ((0, 0), (px, px), (px, px)), mode="edge")
    h, w = x.shape[1:]
    return [padded[:, dy : dy + h, dx : dx + w] for dy, dx in ((0, px), (2 * px, px), (px, 0), (px, 2 * px))]


# evaluate.tta -> the views of (N, 48, 48) images; each entry's views begin with the previous entry's, so `auto`
# predicts the last entry's views once and scores every entry on a prefix of them
VIEWS: dict[str, Callable[[np.ndarray], list[np.ndarray]]] = {
    "none": lambda x: [x],
    "flip": lambda x: [x, mirrored(x)],
    "flip_shift": lambda x: [x, mirrored(x), *shifted(x), *shifted(mirrored(x))],
}


AUTO = "auto"  # evaluate.tta: the views that score best on the validation split


def view_probs(model: keras.Model, x: np.ndarray, tta: str, batch_size: int) -> list[np.ndarray]:
    """Class probabilities of each TTA view, in the order of `VIEWS[tta]`."""
    return [model.predict(model_input(v), batch_size=batch_size, verbose=0) for v in VIEWS[tta](x)]


def predict_probs(model: keras.Model, x: np.ndarray, tta: str, batch_size: int) -> np.ndarray:
    """Class probabilities averaged over the TTA views."""
    return np.mean(view_probs(model, x, tta, batch_size), axis=0)


def views_to_predict(tta: str) -> str:
    """The VIEWS entry to predict for `tta`; for `auto` the last, whose prefixes are all the others."""
    return list(VIEWS)[-1] if tta == AUTO else tta


def view_count(tta: str) -> int:
    return len(VIEWS[tta](np.zeros((1, 1, 1))))


def best_views(per_view: list[np.ndarray], y: np.ndarray) -> tuple[str, dict[str, float]]:
    """The VIEWS entry whose views (a prefix of `per_view`, the last entry's class probabilities) score best
    on labels `y` (a tie goes to fewer views), with every entry's accuracy."""
    scores = {name: float((np.mean(per_view[: view_count(name)], axis=0).argmax(axis=1) == y).mean()) for name in VIEWS}
    return max(scores, key=scores.get), scores


def choose_views(model: keras.Model, val: dict[str, np.ndarray], tta: str, batch_size: int) -> tuple[str, dict[str, float]]:
    """`tta`, or for `auto` the views with the best validation accuracy, with each candidate's validation
    accuracy: the test split never takes part in the choice."""
    if tta != AUTO:
        return tta, {}
    return best_views(view_probs(model, val["x"], views_to_predict(AUTO), batch_size), val["y"])
