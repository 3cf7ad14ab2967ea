"""Inference speed on this machine: per-face latency, batch throughput, face detection and a whole photo.

For each model: `predict_on_batch` (what pipeline.predict calls) on one face (latency) and on 64 faces
(throughput), medians after a warm-up; the face detector on a 640x480 photo with one face and one without;
and one 640x480 JPEG end to end (decode, detect, align, classify: pipeline.serve's path). Untrained models time the same as trained ones.

    python -m benchmarks.predict_latency                        # every model in data/models, else every builder
    python -m benchmarks.predict_latency cnn path/to/other.keras
    python -m benchmarks.predict_latency --build riv_base mondal_deep

Writes --out (JSON) and the same figures as a Markdown table beside it (.md).
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data as skdata  # noqa: E402

from pipeline import atomic, modelfiles  # noqa: E402
from pipeline.serve import api, detect, images  # noqa: E402
from pipeline.errors import PipelineError, run_cli  # noqa: E402

WARMUP = 3
UNTRAINED_NOTE = (
    "(untrained): `pipeline.models.build_model(name, 7)` with default options (transfer models at their smallest "
    "input size, not the 224 px of the studies); a forward pass costs the same whatever the weights."
)


def cpu_name() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    names = (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    return next(names, platform.processor())


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn` after WARMUP untimed calls (the first call traces the graph)."""
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def sample_photo(with_face: bool) -> np.ndarray:
    """640x480 grey wall, with the astronaut's head (scikit-image's bundled NASA photo) at a webcam-like size."""
    rgb = np.clip(np.random.default_rng(0).normal(140, 12, (480, 640, 3)), 0, 255).astype(np.uint8)
    if with_face:
        rgb[100:340, 230:410] = skdata.astronaut()[20:260, 140:320]
    return rgb


def jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def load_models(refs: list[str], builders: list[str], models_dir: Path) -> list[tuple[str, keras.Model]]:
    """Trained models by name or path, untrained ones from pipeline.models; with neither, whatever is in models_dir,
    else every registered builder."""
    if not refs and not builders:
        refs = list(modelfiles.available_models(models_dir))
    if not refs and not builders:
        from pipeline.models import MODELS

        builders = list(MODELS)
    models = [(Path(r).stem, api.load_classifier(modelfiles.find_model(r, models_dir)).model) for r in refs]
    if builders:
        from pipeline.models import build_model

        models += [(f"{name} (untrained)", build_model(name, 7)) for name in builders]
    return models


def time_model(name: str, model: keras.Model, detector, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    one = rng.uniform(0, 255, (1, *model.input_shape[1:])).astype(np.float32)
    batch = rng.uniform(0, 255, (64, *model.input_shape[1:])).astype(np.float32)
    batch1 = median_ms(lambda: model.predict_on_batch(one), repeats)
    batch64 = median_ms(lambda: model.predict_on_batch(batch), max(3, repeats // 5))
    classifier = api.Classifier(name, model, tuple(map(str, range(model.output_shape[-1]))))
    photo_bytes = jpeg(sample_photo(with_face=True))
    whole = median_ms(
        lambda: api.classify(classifier, api.locate(images.read_photo(photo_bytes), detector)[0]), max(3, repeats // 5)
    )
    return {
        "model": name,
        "parameters": model.count_params(),
        "batch1_ms": round(batch1, 2),
        "batch64_ms": round(batch64, 2),
        "faces_per_s_batch64": round(64_000 / batch64, 1),
        "photo_640x480_end_to_end_ms": round(whole, 1),
    }


def time_detector(detector, repeats: int) -> dict:
    with_face, without = (sample_photo(f) for f in (True, False))
    found = len(detector(with_face))
    if found != 1:
        raise PipelineError(f"the detector found {found} faces in the one-face test photo: timings would mislead")
    return {
        "detector": detect.DEFAULT_DETECTOR,
        "image": "640x480",
        "with_face_ms": round(median_ms(lambda: detector(with_face), repeats), 1),
        "without_face_ms": round(median_ms(lambda: detector(without), repeats), 1),
    }


def markdown(report: dict) -> str:
    env, det = report["environment"], report["detector"]
    lines = [
        "# Inference speed",
        "",
        f"{env['cpu']}, {env['cores']} cores; Keras {env['keras']} on {env['backend']}; {env['date']}.",
        f"Medians of {report['repeats']} calls (a fifth of that at 64 faces and end to end), "
        f"after {WARMUP} warm-up calls.",
        "",
        "| model | parameters | 1 face (ms) | 64 faces (ms) | faces/s at 64 | 640x480 photo end to end (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {m['model']} | {m['parameters']:,} | {m['batch1_ms']} | {m['batch64_ms']} | "
            f"{m['faces_per_s_batch64']} | {m['photo_640x480_end_to_end_ms']} |"
            for m in report["models"]
        ),
        "",
        f"Face detection ({det['detector']}, {det['image']}): {det['with_face_ms']} ms with a face, "
        f"{det['without_face_ms']} ms without.",
    ]
    if any(m["model"].endswith("(untrained)") for m in report["models"]):
        lines += ["", UNTRAINED_NOTE]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.predict_latency", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="trained model names in --models-dir, or .keras paths")
    parser.add_argument("--models-dir", type=Path, default=Path("data/models"))
    parser.add_argument("--build", nargs="+", default=[], metavar="NAME", help="untrained pipeline.models builders")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per measurement (batch 64: a fifth)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/predict_latency.json"))
    args = parser.parse_args(argv)
    models = load_models(args.models, args.build, args.models_dir)
    detector = detect.load_detector()
    report = {
        "environment": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "backend": keras.backend.backend(),
            "keras": keras.__version__,
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
        "repeats": args.repeats,
        "detector": time_detector(detector, args.repeats),
        "models": [time_model(name, model, detector, args.repeats) for name, model in models],
    }
    atomic.write_json(args.out, report)
    atomic.write_text(args.out.with_suffix(".md"), markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    run_cli(main)
