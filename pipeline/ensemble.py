"""Stage `ensemble`: combine trained members by averaging their probabilities and by a stacked head.

The stacked head is fitted on the validation split: the members never trained on it, so their outputs
there look like their outputs on unseen data. The test split stays untouched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np
from keras import layers

from pipeline import atomic, modelfiles
from pipeline.errors import PipelineError, run_cli
from pipeline.evaluate import evaluate_model
from pipeline.models import INPUT_SHAPE
from pipeline.params import load_params
from pipeline.splits import load_classes, load_split, model_input


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


def fit_head(model: keras.Model, members: list[keras.Model], val: dict[str, np.ndarray], epochs: int, seed: int) -> None:
    """Fit the stacked model's head on the members' validation probabilities, computed once: fitting the whole
    model would run every (frozen) member forward again in each of the head's epochs."""
    probabilities = np.concatenate([member.predict(model_input(val["x"]), batch_size=256, verbose=0) for member in members], axis=1)
    head = keras.Sequential([keras.Input(probabilities.shape[1:]), model.get_layer("predictions")])  # shares its weights
    keras.utils.set_random_seed(seed)
    head.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
    head.fit(probabilities, val["targets"], batch_size=64, epochs=epochs, verbose=0)


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
    fit_head(ensembles["ensemble_stacked"], members, val, params.ensemble.head_epochs, params.train.seed)
    with atomic.atomic_dir(args.out) as tmp:
        for name, model in ensembles.items():
            modelfiles.save_model(model, tmp / f"{name}.keras", {"members": list(names), "classes": classes, "input_shape": list(INPUT_SHAPE)})
    for name, model in ensembles.items():
        evaluate_model(name, model, val, test, classes, params.evaluate, args.metrics, args.plots)


if __name__ == "__main__":
    run_cli(main)
