"""Stage `train@<model>`: fit one registered model on the balanced train split, keep its best epoch."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")  # same seed → same weights on the CPU (TensorFlow backend)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from dvclive import Live  # noqa: E402
from dvclive.utils import standardize_metric_name  # noqa: E402

from pipeline import atomic  # noqa: E402
from pipeline.errors import run_cli  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.params import TrainParams, load_params  # noqa: E402
from pipeline.splits import load_classes, load_split, model_input  # noqa: E402


class DVCLiveLogger(keras.callbacks.Callback):
    """Per-epoch metrics to dvclive; `dvclive.keras.DVCLiveCallback` needs TensorFlow, this runs on any backend."""

    def __init__(self, live: Live):
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            self.live.log_metric(standardize_metric_name(name, "dvclive.keras"), float(value))
        self.live.next_step()


def make_optimizer(params: TrainParams, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr = params.lr
    if params.schedule == "exponential":
        lr = keras.optimizers.schedules.ExponentialDecay(params.lr, decay_steps=steps_per_epoch, decay_rate=0.9)
    elif params.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(params.lr, decay_steps=params.epochs * steps_per_epoch)
    if params.optimizer == "adam":
        return keras.optimizers.Adam(lr)
    if params.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=params.weight_decay)
    if params.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr)
    return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)


def sample_weights(y: np.ndarray, class_weights: dict[str, float]) -> np.ndarray:
    weights = np.array([class_weights[str(c)] for c in range(len(class_weights))], np.float32)
    return weights[y]


def train_model(
    name: str,
    params: TrainParams,
    options: dict,
    train: dict[str, np.ndarray],
    val: dict[str, np.ndarray],
    class_weights: dict[str, float],
    model_path: Path,
    live: Live | None = None,
) -> dict:
    """Fit and save the epoch with the best validation accuracy to `model_path` (atomically)."""
    keras.utils.set_random_seed(params.seed)
    if params.mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    num_classes = train["targets"].shape[1]
    model = build_model(name, num_classes, augment=params.augment, dropout=params.dropout, l2=params.l2, **options)
    steps = int(np.ceil(len(train["y"]) / params.batch_size))
    model.compile(
        optimizer=make_optimizer(params, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
        metrics=["accuracy"],
    )
    with atomic.atomic_path(model_path) as tmp:
        callbacks = [keras.callbacks.ModelCheckpoint(tmp, monitor="val_accuracy", save_best_only=True)]
        if params.early_stopping:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=params.early_stopping))
        if params.schedule == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2))
        if live is not None:
            callbacks.append(DVCLiveLogger(live))
        start = time.perf_counter()
        history = model.fit(
            model_input(train["x"]),
            train["targets"],
            sample_weight=sample_weights(train["y"], class_weights),
            validation_data=(model_input(val["x"]), val["targets"]),
            batch_size=params.batch_size,
            epochs=params.epochs,
            shuffle=True,
            callbacks=callbacks,
            verbose=2,
        )
        seconds = time.perf_counter() - start
    val_accuracy = history.history["val_accuracy"]
    epochs_run = len(val_accuracy)
    return {
        "name": name,
        "parameters": model.count_params(),
        "epochs_run": epochs_run,
        "best_epoch": int(np.argmax(val_accuracy)) + 1,
        "best_val_accuracy": float(np.max(val_accuracy)),
        "seconds_per_epoch": seconds / epochs_run,
        "train_images_per_second": len(train["y"]) * epochs_run / seconds,
        "backend": keras.backend.backend(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--balanced", type=Path, default=Path("data/balanced"))
    parser.add_argument("--out", type=Path, default=Path("data/models"))
    parser.add_argument("--live", type=Path, default=Path("plots"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    train_params, options = params.model_config(args.model)
    classes = load_classes(args.prepared)
    train = load_split(args.balanced / "train.npz")
    val = load_split(args.prepared / "val.npz")
    class_weights = json.loads((args.balanced / "class_weights.json").read_text())
    with Live(str(args.live / args.model / "train"), save_dvc_exp=False, dvcyaml=False) as live:
        info = train_model(args.model, train_params, options, train, val, class_weights, args.out / f"{args.model}.keras", live)
    info |= {"classes": classes, "input_shape": [48, 48, 1]}
    atomic.write_json(args.out / f"{args.model}.json", info)
    print(
        f"{args.model}: best val accuracy {info['best_val_accuracy']:.4f} at epoch {info['best_epoch']}/{info['epochs_run']}, "
        f"{info['seconds_per_epoch']:.1f} s/epoch ({info['train_images_per_second']:.0f} images/s, {info['backend']})"
    )


if __name__ == "__main__":
    run_cli(main)
