"""The train stage: a run killed mid-way resumes from its last completed epoch and ends like an uninterrupted one."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import distill, modelfiles
from pipeline.device import auto_precision, device_name
from pipeline.params import TrainParams, parse_params
from pipeline.errors import PipelineError
from pipeline.models import build_model
from pipeline.batches import MIXES
from pipeline.splits import model_input
from pipeline.train import OPTIMIZERS, SCHEDULES, EMAWeights, Progress, WallBudget, cosine_lr, make_optimizer, run_fingerprint, start_from

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 5
PARAMS = {
    "train": {
        "epochs": EPOCHS, "batch_size": 32, "lr": 0.003, "optimizer": "adamw", "schedule": "cosine",
        "warmup_epochs": 1, "precision": "auto", "seed": 3,
        "augment": {"flip": False, "rotation": 0.0, "shift": 0.0, "zoom": 0.0, "contrast": 0.0},
    },
    "models": {"lenet_bn": {}},
}  # fmt: skip


def _split(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Three learnable classes: the bright band is on the left, on the right, or at the top."""
    y = rng.integers(0, 3, n)
    x = rng.normal(90, 25, (n, 48, 48))
    x[y == 0, :, :16] += 90
    x[y == 1, :, 32:] += 90
    x[y == 2, :16, :] += 90
    return {"x": np.clip(x, 0, 255).astype(np.uint8), "y": y, "targets": np.eye(3, dtype=np.float32)[y]}


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    (root / "prepared").mkdir()
    (root / "balanced").mkdir()
    np.savez(root / "balanced" / "train.npz", **_split(1500, rng))
    np.savez(root / "prepared" / "val.npz", **_split(200, rng))
    (root / "prepared" / "classes.json").write_text(json.dumps(["left", "right", "top"]))
    (root / "balanced" / "class_weights.json").write_text(json.dumps({"0": 1.0, "1": 1.0, "2": 1.0}))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    distill.main(["--params", str(root / "params.yaml"), "--prepared", str(root / "prepared"),
                  "--balanced", str(root / "balanced"), "--out", str(root / "distilled")])  # no teacher: the labels
    return root


def _train_command(root: Path, run: str, params: Path | None = None) -> list[str]:
    return [
        sys.executable, "-m", "pipeline.train", "lenet_bn", "--params", str(params or root / "params.yaml"),
        "--prepared", str(root / "prepared"), "--balanced", str(root / "balanced"),
        "--distilled", str(root / "distilled"), "--out", str(root / run / "models"), "--checkpoints", str(root / run / "checkpoints"),
        "--live", str(root / run / "plots"),
    ]  # fmt: skip


def _run(root: Path, run: str) -> subprocess.CompletedProcess:
    result = subprocess.run(_train_command(root, run), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


def _stop_after_first_epoch(root: Path, run: str, how: signal.Signals) -> tuple[int, subprocess.CompletedProcess]:
    """Send `how` once the first epoch's checkpoint exists; the epochs it holds, and the stopped process.
    The stage starts with SIGINT at its default, as from a terminal: pytest started in the background by a
    script (`nohup pytest &`, no job control) hands its children SIGINT ignored, and Python then never raises
    KeyboardInterrupt."""
    state = root / run / "checkpoints" / "lenet_bn" / "state.json"
    process = subprocess.Popen(_train_command(root, run), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 240
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, how)
    _, stderr = process.communicate(timeout=120)
    assert state.exists(), f"the stage left no checkpoint (exit code {process.returncode}):\n{stderr}"
    return len(json.loads(state.read_text())["history"]), subprocess.CompletedProcess(process.args, process.returncode, "", stderr)


@pytest.fixture(scope="module")
def whole(stage_inputs) -> subprocess.CompletedProcess:
    """An uninterrupted run of lenet_bn, under stage_inputs/whole."""
    return _run(stage_inputs, "whole")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_stopped_run_resumes_from_its_last_epoch_and_matches_an_uninterrupted_run(stage_inputs, whole, how):
    done_before_kill, stopped = _stop_after_first_epoch(stage_inputs, how.name, how)
    assert 1 <= done_before_kill < EPOCHS
    if how == signal.SIGINT:  # Ctrl-C: one line that says what the next run does, no traceback
        assert stopped.returncode == 130
        assert stopped.stderr.strip().splitlines()[-1] == (
            "interrupted: the stage's next run (`dvc repro`, `dvc exp run`) resumes from the last completed epoch"
        )
        assert "Traceback" not in stopped.stderr

    resumed = _run(stage_inputs, how.name)
    assert f"resuming after epoch {done_before_kill}/{EPOCHS}" in resumed.stderr
    assert "resuming" not in whole.stderr

    info_whole = json.loads((stage_inputs / "whole" / "models" / "lenet_bn.json").read_text())
    info_resumed = json.loads((stage_inputs / how.name / "models" / "lenet_bn.json").read_text())
    assert [h["epoch"] for h in info_resumed["history"]] == list(range(1, EPOCHS + 1))
    # Same seed, deterministic ops: the epochs before the kill are the uninterrupted run's, to the bit.
    assert info_resumed["history"][:done_before_kill] == [
        {**h, "minutes": r["minutes"]} for h, r in zip(info_whole["history"][:done_before_kill], info_resumed["history"])
    ]
    # After it the augmentation draws differ (each epoch's batches do not), so the end agrees within noise.
    assert info_whole["best_val_accuracy"] > 0.9
    assert abs(info_resumed["best_val_accuracy"] - info_whole["best_val_accuracy"]) < 0.05
    assert info_resumed["train_minutes"] >= info_resumed["history"][done_before_kill - 1]["minutes"]
    # The dvclive curve has every epoch once, and nothing of the checkpoint is left behind.
    curve = (stage_inputs / how.name / "plots" / "lenet_bn" / "train" / "plots" / "metrics" / "eval" / "accuracy.tsv")
    assert len(curve.read_text().splitlines()) == 1 + EPOCHS
    assert not (stage_inputs / how.name / "checkpoints" / "lenet_bn").exists()
    assert "images/s" in resumed.stderr


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_the_train_stage_learns_with_each_mix(stage_inputs, whole, mix):
    params = stage_inputs / f"{mix}.yaml"
    params.write_text(yaml.safe_dump(PARAMS | {"train": PARAMS["train"] | {"mix": mix, "mix_alpha": 0.4}}))
    result = subprocess.run(_train_command(stage_inputs, mix, params), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr  # e.g. Keras on fit's default shuffle=True with endless batches
    info = json.loads((stage_inputs / mix / "models" / "lenet_bn.json").read_text())
    assert len(info["history"]) == PARAMS["train"]["epochs"]
    assert info["best_val_accuracy"] > 0.9
    # Blended targets keep an entropy no net fits away: the training loss stays far above the plain run's
    plain = json.loads((stage_inputs / "whole" / "models" / "lenet_bn.json").read_text())
    assert info["history"][-1]["loss"] > 10 * plain["history"][-1]["loss"]


def test_with_ema_the_saved_model_is_the_averaged_weights_that_validation_scored(stage_inputs, whole):
    """EMAWeights must swap the average in before EpochCheckpoint saves the best epoch: the saved model then
    has the validation loss that the history holds for the best epoch, which the raw weights do not."""
    import keras

    params = stage_inputs / "ema.yaml"
    params.write_text(yaml.safe_dump(PARAMS | {"train": PARAMS["train"] | {"ema": 0.9}}))
    result = subprocess.run(_train_command(stage_inputs, "ema", params), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    info = json.loads((stage_inputs / "ema" / "models" / "lenet_bn.json").read_text())
    plain = json.loads((stage_inputs / "whole" / "models" / "lenet_bn.json").read_text())
    best = info["history"][info["best_epoch"] - 1]
    assert best["val_loss"] != plain["history"][info["best_epoch"] - 1]["val_loss"]
    val = np.load(stage_inputs / "prepared" / "val.npz")
    model = modelfiles.load_model(stage_inputs / "ema" / "models" / "lenet_bn.keras")
    predicted = model.predict(model_input(val["x"]), batch_size=PARAMS["train"]["batch_size"], verbose=0)
    loss = float(keras.losses.CategoricalCrossentropy()(val["targets"], predicted))
    assert loss == pytest.approx(best["val_loss"], rel=0.01)  # bfloat16 sums; the raw weights miss by 20 %


def _first_epoch_from(stage_inputs: Path, tmp: Path, init: str) -> dict:
    """The train json of one epoch at a learning rate too small to learn anything, after `distill.init=init`
    ("" = random weights) with the uninterrupted run's model shipped as `learnt`."""
    shipped = tmp / "models"
    shipped.mkdir(exist_ok=True)
    for suffix in (".keras", ".json"):
        shutil.copyfile(stage_inputs / "whole" / "models" / f"lenet_bn{suffix}", shipped / f"learnt{suffix}")
    params = tmp / f"params_{init}.yaml"
    params.write_text(yaml.safe_dump(PARAMS | {"train": PARAMS["train"] | {"epochs": 1, "lr": 1e-9, "warmup_epochs": 0}, "distill": {"init": init}}))
    distilled = tmp / f"distilled_{init}"
    distill.main(["--params", str(params), "--prepared", str(stage_inputs / "prepared"), "--balanced",
                  str(stage_inputs / "balanced"), "--shipped", str(shipped), "--out", str(distilled)])  # fmt: skip
    command = _train_command(stage_inputs, f"from_{init}", params)
    command[command.index("--distilled") + 1] = str(distilled)
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads((stage_inputs / f"from_{init}" / "models" / "lenet_bn.json").read_text())


def test_a_run_started_from_a_shipped_model_begins_where_that_model_ended(stage_inputs, whole, tmp_path):
    learnt = json.loads((stage_inputs / "whole" / "models" / "lenet_bn.json").read_text())["best_val_accuracy"]
    started = _first_epoch_from(stage_inputs, tmp_path, "learnt")
    fresh = _first_epoch_from(stage_inputs, tmp_path, "")
    assert started["history"][0]["val_accuracy"] == pytest.approx(learnt, abs=0.02)
    assert fresh["history"][0]["val_accuracy"] < 0.6  # three classes: chance is 0.33
    assert started["data"]["initialised_from"] == {"init": "learnt", "init_sha256": distill.sha256(tmp_path / "models" / "learnt.keras")}
    assert "initialised_from" not in fresh["data"]


def test_start_from_copies_all_but_a_classifier_of_another_class_count_and_refuses_another_architecture():
    source, target = build_model("lenet_bn", 7), build_model("lenet_bn", 3)
    before = target.layers[-1].get_weights()
    start_from(target, source, "src")
    weighted = [(a, b) for a, b in zip(target.layers, source.layers) if a.weights]
    for a, b in weighted[:-1]:
        for wa, wb in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(wa, wb)
    for kept, now in zip(before, target.layers[-1].get_weights()):
        np.testing.assert_array_equal(kept, now)
    with pytest.raises(PipelineError, match=r"^src is not the architecture of mondal_shallow \(another layer count or shape\): "):
        start_from(build_model("mondal_shallow", 3), source, "src")


def test_auto_precision_trains_in_what_this_machine_computes_natively(stage_inputs):
    """`auto` is resolved once, by the train stage, and the model's .json records the precision it trained in."""
    result = _run(stage_inputs, "auto")
    info = json.loads((stage_inputs / "auto" / "models" / "lenet_bn.json").read_text())
    assert info["precision"] == auto_precision()
    assert info["device"] == device_name()
    assert result.stdout.strip().endswith(f"images/s, tensorflow, {auto_precision()})")
    assert "train.precision=mixed_bfloat16" not in result.stderr  # the slow-bfloat16 warning


def test_time_budget_stops_mid_run_and_counts_the_partial_epoch(stage_inputs):
    params = stage_inputs / "budget.yaml"
    params.write_text(yaml.safe_dump(dict(PARAMS, train={**PARAMS["train"], "epochs": 500, "max_minutes": 0.1})))
    result = subprocess.run(_train_command(stage_inputs, "budget", params), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    info = json.loads((stage_inputs / "budget" / "models" / "lenet_bn.json").read_text())
    assert 0 < info["epochs_run"] < 500
    assert re.search(r"at epoch \d+/\d+(\.\d{1,2})?, ", result.stdout), result.stdout  # not /9.004739336492891
    assert len(info["history"]) == math.ceil(info["epochs_run"])
    assert 0.1 <= info["train_minutes"] < 0.1 + 2 * info["seconds_per_epoch"] / 60 + 0.1  # the last batch and validation
    assert (stage_inputs / "budget" / "models" / "lenet_bn.keras").exists()
    assert not (stage_inputs / "budget" / "checkpoints" / "lenet_bn").exists()


def test_checkpoint_of_other_params_is_not_resumed(stage_inputs, tmp_path):
    _stop_after_first_epoch(stage_inputs, "changed", signal.SIGKILL)
    changed = dict(PARAMS, train={**PARAMS["train"], "lr": 0.001})
    (stage_inputs / "params.yaml").write_text(yaml.safe_dump(changed))
    try:
        result = _run(stage_inputs, "changed")
    finally:
        (stage_inputs / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    assert "checkpoint of other params or data, starting afresh" in result.stderr
    assert "resuming" not in result.stderr


def test_fingerprint_follows_params_options_and_data():
    params = parse_params(PARAMS).train
    x = np.zeros((4, 48, 48), np.uint8)
    base = run_fingerprint("lenet_bn", params, {}, x)
    assert run_fingerprint("lenet_bn", params, {}, x) == base
    assert run_fingerprint("riv_base", params, {}, x) != base
    assert run_fingerprint("lenet_bn", parse_params({"train": {"lr": 0.5}}).train, {}, x) != base
    assert run_fingerprint("lenet_bn", params, {"blocks": [1, 1, 1]}, x) != base
    assert run_fingerprint("lenet_bn", params, {}, x + 1) != base


def test_every_allowed_optimizer_and_schedule_has_a_builder():
    from typing import get_args, get_type_hints

    hints = get_type_hints(TrainParams)
    assert set(OPTIMIZERS) == set(get_args(hints["optimizer"]))
    assert set(SCHEDULES) == set(get_args(hints["schedule"]))
    for optimizer in OPTIMIZERS:
        for schedule in SCHEDULES:
            train = parse_params({"train": {"optimizer": optimizer, "schedule": schedule, "epochs": 4, "warmup_epochs": 1}}).train
            assert make_optimizer(train, steps_per_epoch=10).__class__.__name__.lower().startswith(optimizer[:4])


def test_progress_counts_the_images_of_a_partial_epoch_and_caps_the_eta_at_the_budget():
    stream = io.StringIO()
    progress = Progress(images=1000, batch_size=100, epochs=50, deadline=time.perf_counter() + 60, every=0.0, stream=stream)
    progress.on_epoch_begin(0)
    for batch in range(3):
        time.sleep(0.4)
        progress.on_train_batch_end(batch)
    progress.on_epoch_end(0, {"accuracy": 0.5})
    live, summary = stream.getvalue().splitlines()[-2:]
    assert live.startswith("epoch 1/50 300/1000 images")
    assert float(live.split("run ETA ")[1].split(" min")[0]) <= 1.0  # 50 epochs would take far longer
    rate = float(summary.split("(")[1].split(" images/s")[0])
    assert 0 < rate <= 300 / 1.2  # the 300 images that ran in >= 1.2 s, not the epoch's 1000


def test_cosine_is_keras_cosine_decay_without_a_budget_and_reaches_zero_when_the_budget_is_spent():
    import keras

    keras_cosine = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=90, warmup_target=0.01, warmup_steps=10)
    for step in (0, 5, 10, 37, 99, 100, 120):
        assert cosine_lr(0.01, step, warmup_steps=10, total_steps=100) == pytest.approx(float(keras_cosine(step)), abs=1e-7)
    assert cosine_lr(0.01, 20, warmup_steps=10, total_steps=100, time_spent=0.5) == pytest.approx(0.005)
    assert cosine_lr(0.01, 20, warmup_steps=10, total_steps=100, time_spent=1.2) == 0.0


def test_a_budgeted_cosine_planned_over_many_epochs_anneals_by_the_deadline():
    import keras

    keras.utils.set_random_seed(0)
    params = parse_params({"train": {"schedule": "cosine", "epochs": 1000, "warmup_epochs": 1, "lr": 0.01}}).train
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(make_optimizer(params, steps_per_epoch=10), "categorical_crossentropy")
    x, y = np.ones((320, 4), np.float32), np.eye(2, dtype=np.float32)[np.arange(320) % 2]
    # Trace the train step before the budget starts: on a busy machine the first epoch alone outlasted it.
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    state = {"history": []}
    budget = WallBudget(0.05, state, steps_per_epoch=10)
    schedule = SCHEDULES["cosine"].callbacks(params, 10, budget)
    model.fit(x, y, batch_size=32, epochs=params.epochs, callbacks=[budget, *schedule], verbose=0)
    assert 1 < state["epochs_run"] < params.epochs
    assert float(model.optimizer.learning_rate) < 0.01 * params.lr


def test_a_budget_spent_in_the_first_batch_counts_that_batch():
    """A budget that ends within an epoch's first 0.5 % still counts a share of it (it once rounded to 0
    epochs, and the stage failed dividing by it)."""
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy")
    state = {"history": []}
    budget = WallBudget(0.0, state, steps_per_epoch=1000)
    x, y = np.ones((32, 4), np.float32), np.eye(2, dtype=np.float32)[np.arange(32) % 2]
    model.fit(x, y, batch_size=32, epochs=5, callbacks=[budget], verbose=0)
    assert state["epochs_run"] == 0.001


def test_an_ema_run_resumed_from_its_checkpoint_matches_an_uninterrupted_one(tmp_path):
    """The checkpoint holds the averaged weights in the model and the raw ones in the optimizer: a resumed
    run must swap them back before training on, or it trains the average and averages the raw weights."""
    import keras

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype(np.float32), rng.normal(size=(64, 1)).astype(np.float32)
    train = parse_params({"train": {"optimizer": "adam", "lr": 0.05, "ema": 0.9}}).train

    def fresh(train: TrainParams) -> keras.Model:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
        model.compile(optimizer=make_optimizer(train, steps_per_epoch=4), loss="mse")
        return model

    class SaveFirstEpoch(keras.callbacks.Callback):  # as EpochCheckpoint does, mid-run
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.model.save(tmp_path / "last.keras")

    whole = fresh(train)
    whole.fit(x, y, batch_size=16, shuffle=False, epochs=3, verbose=0, callbacks=[EMAWeights(resumed=False), SaveFirstEpoch()])
    resumed = keras.saving.load_model(tmp_path / "last.keras")
    resumed.fit(x, y, batch_size=16, shuffle=False, epochs=3, initial_epoch=1, verbose=0, callbacks=[EMAWeights(resumed=True)])
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # and what the model holds between epochs is the average, not the raw weights
    raw = fresh(dataclasses.replace(train, ema=0.0))
    raw.fit(x, y, batch_size=16, shuffle=False, epochs=3, verbose=0)
    assert np.abs(raw.get_weights()[0] - whole.get_weights()[0]).max() > 1e-3
