"""Inference speed on this machine: per-face latency, batch throughput, face detection and a whole photo.

For each model: `predict_on_batch` (what pipeline.predict calls) on one face (latency) and on 64 faces
(throughput), medians after a warm-up; the face detector on a 640x480 photo with one face and one without;
one 640x480 JPEG end to end (decode, detect, align, classify: pipeline.serve's path); and the load: importing
Keras/TensorFlow in a fresh interpreter, then model + detector + their first (graph-tracing) call. Wall and
process-CPU milliseconds are both kept: on a shared machine the wall time grows with the load, the CPU time
much less; the load average is recorded with them. Untrained models time the same as trained ones.

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
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data as skdata  # noqa: E402

from pipeline import atomic, modelfiles  # noqa: E402
from pipeline.device import device_name  # noqa: E402
from pipeline.serve import api, detect, images  # noqa: E402
from pipeline.errors import PipelineError, run_cli  # noqa: E402

WARMUP = 3
UNTRAINED_NOTE = (
    "(untrained): `pipeline.models.build_model(name, 7)` with default options (transfer models at their smallest "
    "input size, not the 224 px of the studies); a forward pass costs the same whatever the weights."
)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn` after WARMUP untimed calls (the first call traces the graph)."""
    return wall_and_cpu_ms(fn, repeats)[0]


def wall_and_cpu_ms(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and median process-CPU milliseconds of `fn` after WARMUP untimed calls."""
    for _ in range(WARMUP):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return 1000 * statistics.median(walls), 1000 * statistics.median(cpus)


def import_seconds() -> float:
    """Seconds to import Keras (and with it TensorFlow) in a fresh interpreter: paid once per process."""
    probe = "import time; t = time.perf_counter(); import keras; print(time.perf_counter() - t)"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return float(run.stdout.split()[-1])


def load_seconds(model_path: Path) -> float:
    """Seconds from nothing loaded (Keras imported) to the first photo's answer: model, detector, first calls."""
    start = time.perf_counter()
    classifier = api.load_classifier(model_path)
    detector = detect.load_detector()
    api.classify(classifier, api.locate(images.to_photo(sample_photo(with_face=True)), detector)[0])
    return time.perf_counter() - start


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
    """Trained models by name or path and untrained ones from pipeline.models; with neither, every registered builder."""
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
    whole, whole_cpu = wall_and_cpu_ms(
        lambda: api.classify(classifier, api.locate(images.read_photo(photo_bytes), detector)[0]), repeats
    )
    return {
        "model": name,
        "parameters": model.count_params(),
        "batch1_ms": round(batch1, 2),
        "batch64_ms": round(batch64, 2),
        "faces_per_s_batch64": round(64_000 / batch64, 1),
        "photo_640x480_end_to_end_ms": round(whole, 1),
        "photo_640x480_end_to_end_cpu_ms": round(whole_cpu, 1),
    }


def time_detector(detector, repeats: int) -> dict:
    with_face, without = (sample_photo(f) for f in (True, False))
    found = len(detector(with_face))
    if found != 1:
        raise PipelineError(f"the detector found {found} faces in the one-face test photo: timings would mislead")
    face_ms, face_cpu = wall_and_cpu_ms(lambda: detector(with_face), repeats)
    none_ms, none_cpu = wall_and_cpu_ms(lambda: detector(without), repeats)
    return {
        "detector": detect.DEFAULT_DETECTOR,
        "image": "640x480",
        "with_face_ms": round(face_ms, 1),
        "with_face_cpu_ms": round(face_cpu, 1),
        "without_face_ms": round(none_ms, 1),
        "without_face_cpu_ms": round(none_cpu, 1),
    }


def markdown(report: dict) -> str:
    env, det, load = report["environment"], report["detector"], report["load"]
    lines = [
        "# Inference speed",
        "",
        f"{env['machine']} ({env['device']}); Keras {env['keras']} on {env['backend']}; "
        f"{env['date']}. Load average {env['load_average'][0]} at the start, {env['load_average'][1]} at the end: "
        f"{env['note']}",
        "",
        f"`{report['command']}`",
        "",
        f"Medians of {report['repeats']} calls (a fifth of that at 64 faces), after {WARMUP} warm-up calls. "
        "End to end: a 640x480 JPEG with one face decoded, faces detected and aligned, classified.",
        "",
        "| model | parameters | 1 face (ms) | 64 faces (ms) | faces/s at 64 | photo end to end (ms) | "
        "end to end, process CPU (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {m['model']} | {m['parameters']:,} | {m['batch1_ms']} | {m['batch64_ms']} | "
            f"{m['faces_per_s_batch64']} | {m['photo_640x480_end_to_end_ms']} | {m['photo_640x480_end_to_end_cpu_ms']} |"
            for m in report["models"]
        ),
        "",
        f"Face detection ({det['detector']}, {det['image']}): {det['with_face_ms']} ms with a face "
        f"({det['with_face_cpu_ms']} ms CPU), {det['without_face_ms']} ms without ({det['without_face_cpu_ms']} ms CPU).",
        "",
        f"Load: importing Keras/TensorFlow {load['import_s']} s (once per process); then {load['model']}, the "
        f"detector and their first calls {load['load_s']} s.",
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
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    parser.add_argument("--machine", default=device_name())
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    refs = args.models or ([] if args.build else list(modelfiles.available_models(args.models_dir)))
    first = modelfiles.find_model(refs[0], args.models_dir) if refs else None
    load = {"import_s": round(import_seconds(), 2), "model": first.stem if first else None,
            "load_s": round(load_seconds(first), 2) if first else None}  # before anything else is loaded or traced
    models = load_models(refs, args.build, args.models_dir)
    detector = detect.load_detector()
    report = {
        "environment": {
            "machine": args.machine,
            "device": device_name(),
            "backend": keras.backend.backend(),
            "keras": keras.__version__,
            "python": platform.python_version(),
            "date": args.date,
            "note": args.note,
        },
        "command": shlex.join(["python", "-m", "benchmarks.predict_latency", *(argv if argv is not None else sys.argv[1:])]),
        "repeats": args.repeats,
        "load": load,
        "detector": time_detector(detector, args.repeats),
        "models": [time_model(name, model, detector, args.repeats) for name, model in models],
    }
    report["environment"]["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    atomic.write_json(args.out, report)
    atomic.write_text(args.out.with_suffix(".md"), markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    run_cli(main)
