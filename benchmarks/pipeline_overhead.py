"""The train stage's overhead over a plain `model.fit` of the same model, data and backend.

The stage adds sample weights, a best-epoch checkpoint, dvclive logging and validation each epoch;
this times both on the same real FER2013 images and reports the throughput ratio.

    python -m benchmarks.pipeline_overhead --mirror ../shared/datasets --out benchmarks/results/pipeline_overhead_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
from dvclive import Live

from pipeline.device import device_name
from pipeline import archives, atomic
from pipeline.classes import FER2013_LABELS
from pipeline.decode import decode_fer2013_csv
from pipeline.models import build_model
from pipeline.params import TrainParams
from pipeline.splits import model_input
from pipeline.train import train_model


def split(decoded, name: str, n: int) -> dict[str, np.ndarray]:
    rows = np.flatnonzero(decoded.meta["split"] == name)[:n]
    y = np.array([FER2013_LABELS.index(label) for label in decoded.meta["label"].iloc[rows]])
    return {"x": decoded.images[rows], "y": y, "targets": np.eye(len(FER2013_LABELS), dtype=np.float32)[y]}


def plain_fit(name: str, params: TrainParams, train: dict, val: dict) -> float:
    """Images per second of a bare compile + fit, with validation like the stage."""
    keras.utils.set_random_seed(params.seed)
    model = build_model(name, len(FER2013_LABELS), augment=params.augment)
    model.compile(optimizer=keras.optimizers.Adam(params.lr), loss="categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(
        model_input(train["x"]), train["targets"], batch_size=params.batch_size, epochs=params.epochs,
        validation_data=(model_input(val["x"]), val["targets"]), verbose=0,
    )
    return len(train["y"]) * params.epochs / (time.perf_counter() - start)


def stage_fit(name: str, params: TrainParams, train: dict, val: dict) -> float:
    weights = {str(c): 1.0 for c in range(len(FER2013_LABELS))}
    with tempfile.TemporaryDirectory() as tmp, Live(str(Path(tmp) / "live"), save_dvc_exp=False, dvcyaml=False) as live:
        info = train_model(
            name, params, {}, train, val, weights, Path(tmp) / f"{name}.keras", Path(tmp) / "checkpoints",
            {"classes": list(FER2013_LABELS), "input_shape": [48, 48, 1]}, live,
        )
    return info["train_images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--model", default="riv_base")
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    decoded = decode_fer2013_csv(archives.read_member(args.mirror / "fer2013.tar.gz", "fer2013/fer2013.csv").decode())
    train, val = split(decoded, "train", args.images), split(decoded, "val", args.images // 8)
    params = TrainParams(epochs=args.epochs, batch_size=args.batch_size)
    plain = plain_fit(args.model, params, train, val)
    stage = stage_fit(args.model, params, train, val)
    record = {
        "what": f"{args.model}: train stage (pipeline.train.train_model) vs plain model.fit, same data, {args.epochs} epochs",
        "device": device_name(),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "date": datetime.date.today().isoformat(),
        "train_images": len(train["y"]),
        "plain_images_per_second": round(plain, 1),
        "stage_images_per_second": round(stage, 1),
        "stage_over_plain_time_ratio": round(plain / stage, 3),
    }
    print(record)
    atomic.write_json(args.out, record)


if __name__ == "__main__":
    main()
