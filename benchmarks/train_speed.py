"""Training throughput of every model on real FER2013 images at full input size.

Times `train_on_batch` over a few steps after a warm-up and projects the time of one epoch over the
28,709 training images; a whole epoch of ResNet50 at 224 px would take hours on a 2-core CPU.

    python -m benchmarks.train_speed --mirror ../shared/datasets --out benchmarks/results/train_speed_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import keras
import numpy as np

from pipeline import archives, atomic
from pipeline.classes import FER2013_LABELS
from pipeline.decode import decode_fer2013_csv
from pipeline.device import device_name
from pipeline.models import MODELS, TRANSFER_MODELS, build_model
from pipeline.params import AugmentParams

FULL_SIZE = {"resnet50": 224, "mobilenet_v2": 224, "efficientnet_b0": 224, "inception_v3": 299}
TRAIN_IMAGES = 28_709


def time_model(name: str, x: np.ndarray, y: np.ndarray, batch_size: int, steps: int, warmup: int) -> dict:
    options = {"image_size": FULL_SIZE[name]} if name in TRANSFER_MODELS else {}
    keras.utils.set_random_seed(0)
    model = build_model(name, y.shape[1], augment=AugmentParams(), **options)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    batches = [(x[i * batch_size : (i + 1) * batch_size], y[i * batch_size : (i + 1) * batch_size]) for i in range(warmup + steps)]
    for xb, yb in batches[:warmup]:
        model.train_on_batch(xb, yb)
    start = time.perf_counter()
    for xb, yb in batches[warmup:]:
        model.train_on_batch(xb, yb)
    seconds = time.perf_counter() - start
    images_per_second = steps * batch_size / seconds
    return {
        "model": name,
        "input_size": options.get("image_size", 48),
        "parameters": model.count_params(),
        "images_per_second": round(images_per_second, 1),
        "projected_epoch_seconds": round(TRAIN_IMAGES / images_per_second, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    text = archives.read_member(args.mirror / "fer2013.tar.gz", "fer2013/fer2013.csv").decode()
    decoded = decode_fer2013_csv(text)
    n = args.batch_size * (args.steps + args.warmup)
    x = decoded.images[:n, ..., None].astype(np.float32)
    y = np.eye(len(FER2013_LABELS), dtype=np.float32)[[FER2013_LABELS.index(v) for v in decoded.meta["label"][:n]]]
    results = []
    for name in args.models:
        result = time_model(name, x, y, args.batch_size, args.steps, args.warmup)
        print(json.dumps(result), flush=True)
        results.append(result)
    record = {
        "what": "training throughput, train_on_batch on real FER2013 images, augmentation on",
        "device": device_name(),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "date": datetime.date.today().isoformat(),
        "batch_size": args.batch_size,
        "timed_steps": args.steps,
        "results": results,
    }
    atomic.write_json(args.out, record)


if __name__ == "__main__":
    main()
