"""Stage `ensemble`: combine trained members by averaging their probabilities and by a stacked head.

The stacked head is fitted on the validation split: the members never trained on it, so their outputs
there look like their outputs on unseen data. The test split stays untouched. Each member predicts each
split's TTA views once; both ensembles are scored from those probabilities, as their saved models compute.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np
from keras import layers

from pipeline import atomic, modelfiles
from pipeline.errors import PipelineError, run_cli
from pipeline.evaluate import write_evaluation
from pipeline.models import INPUT_SHAPE
from pipeline.params import load_params
from pipeline.splits import load_classes, load_split, model_input
from pipeline.tta import AUTO, VIEWS, best_views, view_count, views_to_predict


def as_member(model: keras.Model, name: str) -> keras.Model:
    """`model` under its member name: a functional ensemble needs distinct layer names, and two files of
    one architecture (the shipped `fer2013` and a rerun of it, say) carry the same one."""
    inputs = keras.Input(INPUT_SHAPE, name="pixels")
    return keras.Model(inputs, model(inputs, training=False), name=name)


def average_ensemble(members: list[keras.Model]) -> keras.Model:
    inputs = keras.Input(INPUT_SHAPE, name="pixels")
    outputs = layers.Average(name="average")([member(inputs, training=False) for member in members])
    return keras.Model(inputs, outputs, name="ensemble")


def stacked_ensemble(members: list[keras.Model], num_classes: int) -> keras.Model:
    """A softmax layer over the concatenated member probabilities; the members stay frozen."""
    inputs = keras.Input(INPUT_SHAPE, name="pixels")
    for member in members:
        member.trainable = False
    x = layers.Concatenate(name="member_probabilities")([member(inputs, training=False) for member in members])
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="ensemble_stacked")


def stacked_head(stacked: keras.Model, inputs: int) -> keras.Model:
    """The stacked model's head alone, on `inputs` concatenated member probabilities; it shares its weights."""
    return keras.Sequential([keras.Input((inputs,)), stacked.get_layer("predictions")])


def fit_head(head: keras.Model, probabilities: np.ndarray, targets: np.ndarray, epochs: int, seed: int) -> None:
    """Fit on the members' validation probabilities, computed once: fitting the whole stacked model would run
    every (frozen) member forward again in each of the head's epochs."""
    keras.utils.set_random_seed(seed)
    head.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
    head.fit(probabilities, targets, batch_size=64, epochs=epochs, verbose=0)


def all_members(members: list[keras.Model]) -> keras.Model:
    """The members as one model with an output each, so each view of a split is one `predict` pass."""
    inputs = keras.Input(INPUT_SHAPE, name="pixels")
    return keras.Model(inputs, [member(inputs, training=False) for member in members], name="members")


def member_views(together: keras.Model, x: np.ndarray, tta: str, batch_size: int) -> tuple[list[list[np.ndarray]], list[float]]:
    """Every member's class probabilities for each view of `VIEWS[tta]`, and the seconds each view took."""
    probs, seconds = [], []
    for view in VIEWS[tta](x):
        start = time.perf_counter()
        probs.append(list(together.predict(model_input(view), batch_size=batch_size, verbose=0)))
        seconds.append(time.perf_counter() - start)
    return probs, seconds


def combiners(head: keras.Model) -> dict[str, Callable[[list[np.ndarray]], np.ndarray]]:
    """Each ensemble's output from its members' probabilities: what `average_ensemble` and `stacked_ensemble` compute."""
    return {
        "ensemble": lambda probs: np.mean(probs, axis=0),
        "ensemble_stacked": lambda probs: head.predict(np.concatenate(probs, axis=1), batch_size=1024, verbose=0),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--models", type=Path, default=Path("data/models"))
    parser.add_argument("--out", type=Path, default=Path("data/ensemble"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--plots", type=Path, default=Path("plots"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    names = params.ensemble.members
    if len(names) < 2:
        raise PipelineError("params.yaml: ensemble.members needs at least two trained models")
    classes = load_classes(args.prepared)
    val, test = load_split(args.prepared / "val.npz"), load_split(args.prepared / "test.npz")
    members = [as_member(modelfiles.load_model(args.models / f"{name}.keras"), name) for name in names]
    keras.utils.set_random_seed(params.train.seed)  # before the stacked head's Dense layer draws its weights
    ensembles = {"ensemble": average_ensemble(members), "ensemble_stacked": stacked_ensemble(members, len(classes))}
    head = stacked_head(ensembles["ensemble_stacked"], len(members) * len(classes))
    tta, batch_size, together = params.evaluate.tta, params.evaluate.batch_size, all_members(members)
    val_views, _ = member_views(together, val["x"], views_to_predict(tta) if tta == AUTO else "none", batch_size)
    fit_head(head, np.concatenate(val_views[0], axis=1), val["targets"], params.ensemble.head_epochs, params.train.seed)
    with atomic.atomic_dir(args.out) as tmp:
        for name, model in ensembles.items():
            modelfiles.save_model(model, tmp / f"{name}.keras", {"members": list(names), "classes": classes, "input_shape": list(INPUT_SHAPE)})
    test_views, seconds = member_views(together, test["x"], views_to_predict(tta), batch_size)
    for name, combine in combiners(head).items():
        chosen, val_scores = best_views([combine(p) for p in val_views], val["y"]) if tta == AUTO else (tta, {})
        n = view_count(chosen)
        start = time.perf_counter()
        probs = np.mean([combine(p) for p in test_views[:n]], axis=0)
        elapsed = sum(seconds[:n]) + time.perf_counter() - start
        write_evaluation(name, test["y"], probs, elapsed, chosen, val_scores, classes, args.metrics, args.plots)


if __name__ == "__main__":
    run_cli(main)
