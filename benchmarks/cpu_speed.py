"""Where the CPU training time goes: fer_resnet training throughput by backend, kernels, precision, XLA,
batch size, augmentation and weight averaging (`train.ema`), on real FER2013 images, one fresh process per setting.

    python -m benchmarks.cpu_speed --out benchmarks/results/cpu_speed.json
    python -m benchmarks.cpu_speed --out benchmarks/results/cpu_speed.json --only stride   # re-measure some rows

JAX needs `pip install "jax[cpu]"`, PyTorch `pip install torch` (a CPU build); a backend that is not
installed is recorded as such. Each setting trains one warm-up epoch slice and then times `--images` images
through `model.fit`. Each row carries the date it was measured, since `--only` keeps the others.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

FULL_AUGMENT = {"flip": True, "rotation": 0.05, "shift": 0.1, "zoom": 0.1, "contrast": 0.0}  # every row's, unless it names changes

SETTINGS = [  # (label, environment, options)
    ("tensorflow, portable kernels, float32", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "portable"}, {}),
    ("tensorflow, native kernels, float32", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {}),
    ("tensorflow, native kernels, mixed_bfloat16", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"precision": "mixed_bfloat16"}),
    ("tensorflow, native, bf16, XLA (jit_compile)", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"precision": "mixed_bfloat16", "jit": True}),
    ("tensorflow, native, bf16, no augmentation", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"precision": "mixed_bfloat16", "augment": False}),
    ("tensorflow, native, bf16, flip and shift only", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"precision": "mixed_bfloat16", "augment": {"rotation": 0.0, "zoom": 0.0}}),
    ("tensorflow, native, bf16, flip and shift, erasing 0.25", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"precision": "mixed_bfloat16", "augment": {"rotation": 0.0, "zoom": 0.0, "erasing": 0.25}}),
    ("tensorflow, native, bf16, flip and shift, EMA 0.999", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"precision": "mixed_bfloat16", "augment": {"rotation": 0.0, "zoom": 0.0}, "ema": 0.999}),
    ("tensorflow, native, bf16, batch 64", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"precision": "mixed_bfloat16", "batch_size": 64}),
    ("tensorflow, native, bf16, batch 256", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"precision": "mixed_bfloat16", "batch_size": 256}),
    ("tensorflow, native, bf16, blocks 1-1-1", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"precision": "mixed_bfloat16", "blocks": [1, 1, 1]}),
    ("tensorflow, native, bf16, stride-2 stem", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"precision": "mixed_bfloat16", "stem": "stride"}),
    ("tensorflow, native, bf16, stride-2 stem, blocks 1-1-1 (the CPU preset)", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"precision": "mixed_bfloat16", "stem": "stride", "blocks": [1, 1, 1]}),
    ("tensorflow, portable kernels, float32, stride-2 stem, blocks 1-1-1", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "portable"}, {"stem": "stride", "blocks": [1, 1, 1]}),
    ("tensorflow, native kernels, float32, stride-2 stem, blocks 1-1-1", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"stem": "stride", "blocks": [1, 1, 1]}),
    ("tensorflow, native kernels, float32, stride-2 stem, blocks 1-1-1, batch 256", {"KERAS_BACKEND": "tensorflow", "FER_CPU_KERNELS": "native"}, {"stem": "stride", "blocks": [1, 1, 1], "batch_size": 256}),
    ("jax (XLA), float32, stride-2 stem, blocks 1-1-1", {"KERAS_BACKEND": "jax"}, {"stem": "stride", "blocks": [1, 1, 1]}),
    ("torch, float32, stride-2 stem, blocks 1-1-1", {"KERAS_BACKEND": "torch"}, {"stem": "stride", "blocks": [1, 1, 1]}),
    ("jax (XLA), float32", {"KERAS_BACKEND": "jax"}, {}),
    ("jax (XLA), mixed_bfloat16", {"KERAS_BACKEND": "jax"}, {"precision": "mixed_bfloat16"}),
    ("torch, float32", {"KERAS_BACKEND": "torch"}, {}),
    ("torch, mixed_bfloat16", {"KERAS_BACKEND": "torch"}, {"precision": "mixed_bfloat16"}),
]


def measure(options: dict, images: int, mirror: Path) -> dict:
    """One setting, in this process: build, warm up on one batch slice, time `images` images of training."""

    import keras
    import numpy as np

    from pipeline import archives
    from pipeline.decode import decode_fer2013_csv
    from pipeline.models import build_model
    from pipeline.params import AugmentParams, TrainParams
    from pipeline.train import make_optimizer

    batch = options.get("batch_size", 128)
    text = archives.read_member(mirror / "fer2013.tar.gz", "fer2013/fer2013.csv").decode()
    x = decode_fer2013_csv(text).images[: images + 4 * batch, ..., None].astype("float32")
    y = keras.utils.to_categorical(np.arange(len(x)) % 7, 7)
    keras.utils.set_random_seed(0)
    augment = options.get("augment", {})  # changes to FULL_AUGMENT's AugmentParams; False: no augmentation layers
    augment = None if augment is False else AugmentParams(**FULL_AUGMENT | augment)
    keras.config.set_dtype_policy(options.get("precision", "float32"))
    architecture = {key: options[key] for key in ("blocks", "widths", "stem") if key in options}
    model = build_model("fer_resnet", 7, augment=augment, **architecture)
    keras.config.set_dtype_policy("float32")
    optimizer = make_optimizer(TrainParams(lr=1e-3, optimizer="adamw", weight_decay=0.004, ema=options.get("ema", 0.0)), len(x) // batch)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", jit_compile=options.get("jit", False) if keras.backend.backend() == "tensorflow" else "auto")
    model.fit(x[: 4 * batch], y[: 4 * batch], batch_size=batch, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(x[4 * batch :], y[4 * batch :], batch_size=batch, epochs=1, verbose=0)
    return {"images_per_second": round(images / (time.perf_counter() - start), 1), "parameters": model.count_params()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--images", type=int, default=1536)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", help="measure only the settings whose label contains this; keep --out's other rows")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a JSON options dict: measure in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(json.loads(args.one), args.images, args.mirror)))
        return
    from pipeline import atomic, quiet
    from pipeline.device import device_name

    kept = {}
    if args.only and args.out.exists():
        old = json.loads(args.out.read_text())
        kept = {row["setting"]: {"date": f"by {old['date']}"} | row for row in old["results"]}  # rows from before per-row dates
    today = datetime.date.today().isoformat()
    rows = []
    for label, env, options in SETTINGS:
        if args.only and args.only not in label:
            rows += [kept[label]] if label in kept else []
            continue
        command = [sys.executable, "-m", "benchmarks.cpu_speed", "--one", json.dumps(options), "--images", str(args.images), "--mirror", str(args.mirror)]
        result = subprocess.run(command, capture_output=True, text=True, env=quiet.environ_for(env.get("FER_CPU_KERNELS", "portable")) | env)
        lines = result.stdout.strip().splitlines()
        row = {"setting": label, "date": today} | (json.loads(lines[-1]) if result.returncode == 0 and lines else {"error": (result.stderr.strip().splitlines() or ["failed"])[-1][:200]})
        print(json.dumps(row), flush=True)
        rows.append(row)
    record = {
        "what": "fer_resnet training images/s (model.fit, batch 128 unless named, flip/rotate/shift/zoom augmentation and AdamW without weight averaging unless named)",
        "device": device_name(),
        "date": today,
        "command": f"python -m benchmarks.cpu_speed --out {args.out}",
        "results": rows,
    }
    atomic.write_json(args.out, record)
    lines = ["| setting | images/s | measured |", "|---|---|---|"]
    lines += [f"| {r['setting']} | {r.get('images_per_second', r.get('error'))} | {r['date']} |" for r in rows]
    atomic.write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
