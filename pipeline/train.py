"""Stage `train@<model>`: fit one registered model on the balanced train split, keep its best epoch.

Every epoch leaves a checkpoint in `data/checkpoints/<model>/` (model, optimizer state, best weights and
history), so a stopped run resumes from its last completed epoch when the stage runs again with the
same params and data; the folder goes away once the model is saved.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

from pipeline import quiet  # noqa: E402  (before keras: silences TensorFlow, picks the CPU kernels)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from dvclive import Live  # noqa: E402
from dvclive.utils import standardize_metric_name  # noqa: E402

from pipeline import atomic, plots  # noqa: E402
from pipeline.errors import PipelineError, run_cli  # noqa: E402
from pipeline import modelfiles  # noqa: E402
from pipeline.device import auto_precision, device_name  # noqa: E402
from pipeline.batches import TrainingBatches  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.params import Params, TrainParams, load_params  # noqa: E402
from pipeline.splits import load_classes, load_split, model_input  # noqa: E402

OPTIMIZERS = {  # each builder takes the learning rate, the params and the options every optimizer shares
    "adam": lambda lr, p, **shared: keras.optimizers.Adam(lr, **shared),
    "adamw": lambda lr, p, **shared: keras.optimizers.AdamW(lr, weight_decay=p.weight_decay, **shared),
    "rmsprop": lambda lr, p, **shared: keras.optimizers.RMSprop(lr, **shared),
    "sgd": lambda lr, p, **shared: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, **shared),
}


def sample_weights(y: np.ndarray, class_weights: dict[str, float]) -> np.ndarray:
    weights = np.array([class_weights[str(c)] for c in range(len(class_weights))], np.float32)
    return weights[y]


class DVCLiveLogger(keras.callbacks.Callback):
    """Per-epoch metrics to dvclive; `dvclive.keras.DVCLiveCallback` needs TensorFlow, this runs on any backend."""

    def __init__(self, live: Live):
        super().__init__()
        self.live = live

    def log(self, logs: dict) -> None:
        for name, value in logs.items():
            if name not in ("epoch", "minutes"):  # bookkeeping, kept in the model's .json history
                self.live.log_metric(standardize_metric_name(name, "dvclive.keras"), float(value))
        self.live.next_step()


class Progress(keras.callbacks.Callback):
    """A live line during each epoch (images/s, epoch and run ETA, the run's capped by a time budget's
    `deadline` on the perf_counter clock) and one summary line per epoch."""

    def __init__(self, images: int, batch_size: int, epochs: int, deadline: float, every: float = 10.0, stream=sys.stderr):
        super().__init__()
        self.images, self.batch_size, self.epochs, self.every, self.stream = images, batch_size, epochs, every, stream
        self.deadline = deadline
        self.tty = stream.isatty()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.start, self.done = epoch, time.perf_counter(), 0
        self.last = self.start

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self.done = done = min((batch + 1) * self.batch_size, self.images)
        if now - self.last < self.every:
            return
        self.last = now
        rate = done / (now - self.start)
        left = (self.images - done) / rate
        run_left = min(left + (self.epochs - self.epoch - 1) * self.images / rate, self.deadline - now)
        line = (
            f"epoch {self.epoch + 1}/{self.epochs} {done}/{self.images} images, {rate:.0f} images/s, "
            f"epoch ETA {left:.0f} s, run ETA {run_left / 60:.1f} min"
        )
        print(f"\r{line}" if self.tty else line, end="" if self.tty else "\n", file=self.stream, flush=True)

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        shown = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if k != "learning_rate")
        end = "\n" if self.tty else ""
        print(f"{end}epoch {epoch + 1}/{self.epochs}: {shown}, {seconds:.0f} s ({self.done / seconds:.0f} images/s)",
              file=self.stream, flush=True)


def minutes_spent(state: dict) -> float:
    """Training minutes of the epochs a checkpoint holds (0 for a fresh run)."""
    return state["history"][-1]["minutes"] if state["history"] else 0.0


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: the model with its optimizer state, the best epoch's weights and the history,
    each written atomically into `folder`, under the `fingerprint` of the run they belong to."""

    def __init__(self, folder: Path, fingerprint: str, state: dict, logger: DVCLiveLogger | None):
        super().__init__()
        self.folder, self.fingerprint, self.state, self.logger = folder, fingerprint, state, logger
        self.started = time.perf_counter()
        self.minutes_before = minutes_spent(state)

    def on_epoch_end(self, epoch, logs=None):
        minutes = self.minutes_before + (time.perf_counter() - self.started) / 60
        logs = {k: float(v) for k, v in (logs or {}).items()} | {"epoch": epoch + 1, "minutes": minutes}
        self.state["history"].append(logs)
        if logs["val_accuracy"] > self.state["best_val_accuracy"]:
            self.state |= {"best_val_accuracy": logs["val_accuracy"], "best_epoch": epoch + 1}
            with atomic.atomic_path(self.folder / "best.weights.h5") as tmp:
                self.model.save_weights(tmp)
        with atomic.atomic_path(self.folder / "last.keras") as tmp:
            self.model.save(tmp)
        atomic.write_json(self.folder / "state.json", self.state | {"fingerprint": self.fingerprint})
        if self.logger is not None:
            self.logger.log(logs)


class WallBudget(keras.callbacks.Callback):
    """Stop training once `minutes` of wall time (inf: no budget; a resumed run's earlier minutes count) are
    spent, mid-epoch if need be: Keras still validates and checkpoints the partial epoch, and
    `state["epochs_run"]` (saved with that checkpoint) counts it as the share of its batches that ran."""

    def __init__(self, minutes: float, state: dict, steps_per_epoch: int):
        super().__init__()
        self.minutes = minutes
        self.deadline = time.perf_counter() + 60 * (minutes - minutes_spent(state))
        self.state, self.steps_per_epoch = state, steps_per_epoch

    def share_spent(self) -> float:
        """The share of the budget spent so far, resumed runs' earlier minutes included (0 with no budget)."""
        return 0.0 if math.isinf(self.minutes) else 1 - (self.deadline - time.perf_counter()) / (60 * self.minutes)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() >= self.deadline:
            self.model.stop_training = True
            self.state["epochs_run"] = self.epoch + (batch + 1) / self.steps_per_epoch


def cosine_lr(lr: float, step: int, warmup_steps: int, total_steps: int, time_spent: float = 0.0) -> float:
    """Linear warm-up from 0 over `warmup_steps`, then cosine decay to 0 at `total_steps` or when the share
    `time_spent` of a time budget reaches 1, whichever comes first (with no budget: Keras' CosineDecay)."""
    if step < warmup_steps:
        return lr * step / warmup_steps
    progress = max((step - warmup_steps) / max(total_steps - warmup_steps, 1), time_spent)
    return 0.5 * lr * (1 + math.cos(math.pi * min(progress, 1.0)))


class CosineToEnd(keras.callbacks.Callback):
    """Sets the learning rate before each batch from `cosine_lr`, so a run cut short by its time budget still
    anneals fully by its deadline. The JAX backend reads the optimizer's variables once an epoch, so there
    the rate changes per epoch."""

    def __init__(self, params: TrainParams, steps_per_epoch: int, budget: WallBudget):
        super().__init__()
        self.train_params, self.steps_per_epoch, self.budget = params, steps_per_epoch, budget  # Keras owns self.params

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        p, steps = self.train_params, self.steps_per_epoch
        step = self.epoch * steps + batch
        self.model.optimizer.learning_rate = cosine_lr(p.lr, step, p.warmup_epochs * steps, p.epochs * steps, self.budget.share_spent())


class Schedule(NamedTuple):
    """A `train.schedule`: the optimizer's learning rate (a float or a Keras schedule, from the params and the
    steps per epoch), and the callbacks that steer it during the run (given the time budget too)."""

    learning_rate: Callable[[TrainParams, int], float | keras.optimizers.schedules.LearningRateSchedule]
    callbacks: Callable[[TrainParams, int, WallBudget], list[keras.callbacks.Callback]] = lambda p, steps, budget: []


SCHEDULES = {
    "none": Schedule(lambda p, steps: p.lr),
    "plateau": Schedule(
        lambda p, steps: p.lr,
        lambda p, steps, budget: [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2)],
    ),
    "exponential": Schedule(lambda p, steps: keras.optimizers.schedules.ExponentialDecay(p.lr, steps, decay_rate=0.9)),
    "cosine": Schedule(lambda p, steps: p.lr, lambda p, steps, budget: [CosineToEnd(p, steps, budget)]),
}


def make_optimizer(params: TrainParams, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    ema = {"use_ema": True, "ema_momentum": params.ema} if params.ema else {}
    return OPTIMIZERS[params.optimizer](SCHEDULES[params.schedule].learning_rate(params, steps_per_epoch), params, **ema)


class EMAWeights(keras.callbacks.SwapEMAWeights):
    """`train.ema`: from each epoch's end to the next one's start the model holds the optimizer's moving
    average of its weights (Polyak averaging), so validation, the best epoch's weights and the checkpoint are
    the average's, and the raw weights wait in the optimizer. BatchNorm's moving statistics are not averaged:
    they fit the average only once the weights settle. A run resumed from such a checkpoint starts in that
    swapped state, which Keras' callback cannot know: `resumed` tells it."""

    def __init__(self, resumed: bool):
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = resumed


def run_fingerprint(name: str, params: TrainParams, options: dict, *arrays: np.ndarray) -> str:
    """What a checkpoint must match to be resumed: the model, its training params and the data."""
    digest = hashlib.sha256(json.dumps([name, dataclasses.asdict(params), options], sort_keys=True, default=str).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def start_from(model: keras.Model, source: keras.Model, source_name: str) -> None:
    """Copy `source`'s weights into the fresh `model`, layer by layer (those with weights, in order); the last,
    the classifier, starts fresh when the class counts differ. Any other difference is another architecture."""
    targets, sources = [[layer for layer in m.layers if layer.weights] for m in (model, source)]

    def shapes(layer: keras.layers.Layer) -> list[tuple]:
        return [tuple(w.shape) for w in layer.weights]

    if len(targets) != len(sources) or any(shapes(a) != shapes(b) for a, b in zip(targets[:-1], sources[:-1])):
        raise PipelineError(
            f"{source_name} is not the architecture of {model.name} (another layer count or shape): "
            "train only models of its architecture and options, or unset distill.init"
        )
    for target, layer in zip(targets, sources):
        if shapes(target) == shapes(layer):
            target.set_weights(layer.get_weights())


def load_checkpoint(folder: Path, fingerprint: str) -> dict | None:
    state_file = folder / "state.json"
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    if state.pop("fingerprint", None) != fingerprint or not (folder / "last.keras").exists():
        print(f"{folder}: checkpoint of other params or data, starting afresh", file=sys.stderr)
        return None
    return state


def train_model(
    name: str,
    params: TrainParams,
    options: dict,
    train: dict[str, np.ndarray],
    val: dict[str, np.ndarray],
    class_weights: dict[str, float],
    model_path: Path,
    checkpoints: Path,
    info: dict,
    live: Live | None = None,
    init: Path | None = None,
) -> dict:
    """Fit (resuming from `checkpoints` when it holds this run; a fresh run starts from the weights of the
    model file `init` when given), save the best-val-accuracy epoch with `info` and what the run measured in
    its .json, and return that .json's content."""
    start = [np.frombuffer(init.read_bytes(), np.uint8)] if init else []
    fingerprint = run_fingerprint(name, params, options, train["x"], train["targets"], val["x"], val["targets"], *start)
    state = load_checkpoint(checkpoints, fingerprint)
    done = len(state["history"]) if state else 0
    batches = TrainingBatches(model_input(train["x"]), train["targets"], sample_weights(train["y"], class_weights),
                              params.batch_size, params.seed, done, params.mix, params.mix_alpha)  # fmt: skip
    steps = batches.steps
    keras.utils.set_random_seed(params.seed + done)
    if state:
        model = modelfiles.load_model(checkpoints / "last.keras")  # with its optimizer state
        print(f"{name}: resuming after epoch {done}/{params.epochs} from {checkpoints}", file=sys.stderr)
    else:
        state = {"history": [], "best_val_accuracy": -1.0, "best_epoch": 0}
        shutil.rmtree(checkpoints, ignore_errors=True)
        checkpoints.mkdir(parents=True)
        keras.config.set_dtype_policy(params.precision)
        try:
            num_classes = train["targets"].shape[1]
            model = build_model(name, num_classes, augment=params.augment, dropout=params.dropout, l2=params.l2, **options)
        finally:
            keras.config.set_dtype_policy("float32")
        if init:
            start_from(model, modelfiles.load_model(init), f"distill.init ({init})")
        model.compile(
            optimizer=make_optimizer(params, steps),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
            metrics=["accuracy"],
            jit_compile=params.jit_compile,
        )
    logger = DVCLiveLogger(live) if live is not None else None
    if logger is not None:
        for logs in state["history"]:  # DVC removed the old curves before this run: log them again
            logger.log(logs)
    budget = WallBudget(params.max_minutes or math.inf, state, steps)
    callbacks = [
        Progress(len(train["y"]), params.batch_size, params.epochs, budget.deadline),
        budget,
        *([EMAWeights(resumed=done > 0)] if params.ema else []),  # before the checkpoint: it saves the average
        EpochCheckpoint(checkpoints, fingerprint, state, logger),
    ]
    if params.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=params.early_stopping))
    callbacks += SCHEDULES[params.schedule].callbacks(params, steps, budget)
    start = time.perf_counter()
    if "epochs_run" not in state:  # else a resumed run had spent its time budget before it stopped
        model.fit(
            batches,
            steps_per_epoch=steps,
            shuffle=False,  # the batches shuffle each epoch themselves; Keras warns of its default True here
            validation_data=(model_input(val["x"]), val["targets"]),
            epochs=params.epochs,
            initial_epoch=done,
            callbacks=callbacks,
            verbose=0,
        )
    seconds = time.perf_counter() - start
    model.load_weights(checkpoints / "best.weights.h5")
    history = state["history"]
    epochs_run = state.get("epochs_run", len(history))
    info = info | {
        "parameters": model.count_params(),
        "epochs_run": epochs_run,
        "best_epoch": state["best_epoch"],
        "best_val_accuracy": state["best_val_accuracy"],
        "train_minutes": history[-1]["minutes"],
        "seconds_per_epoch": 60 * history[-1]["minutes"] / epochs_run,
        "train_images_per_second": len(train["y"]) * epochs_run / (60 * history[-1]["minutes"]),
        "last_session_seconds": seconds,
        "device": device_name(),
        "backend": keras.backend.backend(),
        "precision": params.precision,
        "history": [{k: v for k, v in h.items() if k != "learning_rate"} for h in history],
    }
    modelfiles.save_model(model, model_path, info)
    shutil.rmtree(checkpoints)
    return info


def trained_on(params: Params, train_images: int, teacher: dict, init: dict) -> dict:
    """What a model was trained on, for its .json: the app and the model card name it beside the metrics;
    `teacher` is what the distill stage says made the targets (empty: the labels alone), `init` the model
    it handed on to start from (empty: random weights)."""
    data = params.data
    return {
        "source": data.source, "dataset": data.dataset, "classes": data.classes,
        "relabel": params.relabel.scheme, "balance": params.balance.method, "train_images": int(train_images),
    } | ({"distilled_from": teacher} if teacher else {}) | ({"initialised_from": init} if init else {})  # fmt: skip


def load_train(balanced: Path, distilled: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The balanced train split with the distill stage's targets, and the teacher that made them."""
    train = load_split(balanced / "train.npz")
    targets = load_split(distilled / "targets.npz")["targets"]
    if targets.shape != train["targets"].shape:
        raise PipelineError(f"{distilled}/targets.npz does not match {balanced}/train.npz: run `dvc repro distill`")
    return train | {"targets": targets}, json.loads((distilled / "teacher.json").read_text())


def load_init(distilled: Path) -> tuple[Path | None, dict]:
    """The model file the distill stage handed on to start from (`distill.init`), and what it is."""
    path = distilled / "init.keras"
    return (path, json.loads((distilled / "init.json").read_text())) if path.exists() else (None, {})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--balanced", type=Path, default=Path("data/balanced"))
    parser.add_argument("--distilled", type=Path, default=Path("data/distilled"))
    parser.add_argument("--out", type=Path, default=Path("data/models"))
    parser.add_argument("--checkpoints", type=Path, default=Path("data/checkpoints"))
    parser.add_argument("--live", type=Path, default=Path("plots"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    train_params, options = params.model_config(args.model)
    native = auto_precision()
    if train_params.precision == "auto":
        train_params = dataclasses.replace(train_params, precision=native)
    if train_params.precision == "mixed_bfloat16" and quiet.kernels() != "native":
        # TensorFlow fixed its kernels when it loaded: start again on the CPU's own (bf16) instruction set.
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], quiet.environ_for("native"))
    if train_params.precision == "mixed_bfloat16" and native == "float32":
        print(f"warning: train.precision=mixed_bfloat16 on a CPU without AVX-512 BF16 or AMX ({device_name()}) is emulated, "
              "~12x slower than float32: set train.precision=auto", file=sys.stderr)
    classes = load_classes(args.prepared)
    train, teacher = load_train(args.balanced, args.distilled)
    init, init_info = load_init(args.distilled)
    val = load_split(args.prepared / "val.npz")
    class_weights = json.loads((args.balanced / "class_weights.json").read_text())
    live_dir = args.live / args.model / "train"
    with Live(str(live_dir), save_dvc_exp=False, dvcyaml=False) as live:
        info = train_model(
            args.model, train_params, options, train, val, class_weights, args.out / f"{args.model}.keras",
            args.checkpoints / args.model, {"classes": classes, "input_shape": [48, 48, 1], "data": trained_on(params, len(train["y"]), teacher, init_info)},
            live, init,
        )
    atomic.save_figure(live_dir / "curves.png", plots.training_curves_figure(info["history"], args.model))
    print(
        f"{args.model}: best val accuracy {info['best_val_accuracy']:.4f} at epoch {info['best_epoch']}/{round(info['epochs_run'], 2):g}, "
        f"{info['seconds_per_epoch']:.1f} s/epoch ({info['train_images_per_second']:.0f} images/s, {info['backend']}, {info['precision']})"
    )


if __name__ == "__main__":
    run_cli(main, interrupted="the stage's next run (`dvc repro`, `dvc exp run`) resumes from the last completed epoch")
