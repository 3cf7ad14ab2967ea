"""Face-detector recall, precision and speed on FER2013 PrivateTest faces pasted into scikit-image's photos.

The set is made here, at run time, from the read-only FER files (never written to the repository): each of
--images 640x480 pictures is one of scikit-image's face-free photos with 0-3 PrivateTest faces pasted at random
sizes (56-220 px) and places; the pasted square is the known box. Plus the real photos: the astronaut and the
cameraman (one face each), the rocket, the coffee and the cat (none). A detection counts when its IoU with a
known box is >= 0.3 (detector boxes are tighter than FER's forehead-to-chin square), each box matched once.

Each detector runs as pipeline.serve loads it (on a copy at most DETECT_SIDE long); `mtcnn-wheel-settings` is
MTCNN with the `mtcnn` wheel's own thresholds and pyramid, to show what the tuned defaults buy. The defaults were
tuned on seed 0 and checked on seed 1 (a different draw of faces, sizes and places). Milliseconds are medians
per picture, wall and process CPU (the CPU figure moves less when other work shares the machine).

It also measures where the eyes sit in FER's own 48x48 frames (MTCNN on upscaled PrivateTest faces): the
canonical eye positions pipeline.serve.align uses.

    python -m benchmarks.detectors [--mirror ../shared/datasets] [--images 100] [--seeds 0 1] [--detectors mtcnn lbp]
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import shlex
import statistics
import sys
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata
from skimage.util import img_as_ubyte

from pipeline import atomic
from pipeline.device import device_name
from pipeline.errors import PipelineError, run_cli
from pipeline.serve import detect

SIDE = (640, 480)
BACKGROUNDS = ("rocket", "coffee", "chelsea", "hubble_deep_field", "immunohistochemistry", "horse", "coins", "page",
               "brick", "grass", "gravel", "clock")
# Real faces in scikit-image's photos (x, y, w, h), checked by eye, brows to chin.
REAL = {"astronaut": [(175, 60, 95, 115)], "camera": [(195, 110, 60, 85)], "rocket": [], "coffee": [], "chelsea": []}
MATCH_IOU = 0.3
# Name → (backend, settings for its loader).
VARIANTS = {
    "mtcnn": ("mtcnn", {}),
    "mtcnn-wheel-settings": ("mtcnn", {"min_face": 20, "scale_factor": 0.709, "thresholds": (0.6, 0.7, 0.8)}),
    "lbp": ("lbp", {}),
}


def fer_private_test(mirror: Path, n: int, seed: int) -> np.ndarray:
    """n random PrivateTest faces (uint8, 48x48) from fer2013.tar.gz, read in memory."""
    import pandas as pd

    path = mirror / "fer2013.tar.gz"
    if not path.is_file():
        raise PipelineError(f"{path} not found: pass --mirror, the folder holding fer2013.tar.gz")
    with tarfile.open(path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("fer2013.csv"))
        frame = pd.read_csv(io.BytesIO(tar.extractfile(member).read()), usecols=["pixels", "Usage"])
    pixels = frame.pixels[frame.Usage == "PrivateTest"].sample(n, random_state=seed)
    return np.stack([np.array(p.split(), np.uint8).reshape(48, 48) for p in pixels])


def background(name: str) -> np.ndarray:
    return cv2.resize(photo(name), SIDE, interpolation=cv2.INTER_AREA)


def pasted_set(faces: np.ndarray, n_images: int, seed: int) -> list[tuple[np.ndarray, list[detect.Box]]]:
    """Pictures with known face boxes; a quarter of them have none (for precision)."""
    rng = np.random.default_rng(seed)
    pool = iter(faces)
    out = []
    for i in range(n_images):
        rgb = background(BACKGROUNDS[i % len(BACKGROUNDS)]).copy()
        boxes: list[detect.Box] = []
        for _ in range(int(rng.choice([0, 1, 2, 3], p=[0.25, 0.35, 0.25, 0.15]))):
            side = int(rng.integers(56, 221))
            for _try in range(20):
                x, y = int(rng.integers(0, SIDE[0] - side)), int(rng.integers(0, SIDE[1] - side))
                if all(detect.overlap((x, y, side, side), b) == 0 for b in boxes):
                    face = cv2.resize(next(pool), (side, side), interpolation=cv2.INTER_CUBIC)
                    rgb[y : y + side, x : x + side] = face[..., None]
                    boxes.append((x, y, side, side))
                    break
        out.append((rgb, boxes))
    return out


def real_set() -> list[tuple[np.ndarray, list[detect.Box]]]:
    return [(photo(name), boxes) for name, boxes in REAL.items()]


def photo(name: str) -> np.ndarray:
    """A scikit-image sample as uint8 RGB, whatever its stored type (the horse is boolean, the logo RGBA)."""
    img = img_as_ubyte(getattr(skdata, name)())
    return np.ascontiguousarray(img[..., :3] if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB))


def score(found: list[list[detect.Box]], truth: list[list[detect.Box]]) -> dict:
    """Recall and precision with greedy one-to-one matching at IoU >= MATCH_IOU."""
    hits = 0
    for dets, boxes in zip(found, truth, strict=True):
        free = list(boxes)
        for d in dets:
            best = max(free, key=lambda b: detect.iou(d, b), default=None)
            if best is not None and detect.iou(d, best) >= MATCH_IOU:
                free.remove(best)
                hits += 1
    n_true, n_found = sum(map(len, truth)), sum(map(len, found))
    return {"faces": n_true, "detections": n_found, "hits": hits,
            "recall": round(hits / n_true, 3), "precision": round(hits / n_found, 3) if n_found else 1.0}


def run_detector(detector: detect.Detector, pictures: list[tuple[np.ndarray, list]]) -> tuple[list[list[detect.Box]], float, float]:
    """Boxes per picture, and the median wall and process-CPU milliseconds per picture."""
    detector(pictures[0][0])  # warm-up: the first call traces graphs
    found, walls, cpus = [], [], []
    for rgb, _ in pictures:
        wall, cpu = time.perf_counter(), time.process_time()
        found.append([d.box for d in detector(rgb)])
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return found, 1000 * statistics.median(walls), 1000 * statistics.median(cpus)


def evaluate(name: str, pasted: list, real: list) -> dict:
    backend, settings = VARIANTS[name]
    detector = detect.load_detector(backend, **settings)
    found, ms, cpu_ms = run_detector(detector, pasted)
    real_found, _, _ = run_detector(detector, real)
    return {"detector": name, "settings": settings, "ms_per_image": round(ms, 1), "cpu_ms_per_image": round(cpu_ms, 1),
            "pasted": score(found, [b for _, b in pasted]), "real": score(real_found, [b for _, b in real])}


def fer_eye_positions(faces: np.ndarray) -> dict:
    """Median eye centres in FER's 48x48 frame, found by MTCNN on each face upscaled 4x with a grey border."""
    detector = detect.load_detector("mtcnn")
    eyes = []
    for face in faces:
        big = cv2.resize(face, (192, 192), interpolation=cv2.INTER_CUBIC)
        canvas = cv2.copyMakeBorder(big, 96, 96, 96, 96, cv2.BORDER_CONSTANT, value=128)
        found = detector(cv2.cvtColor(canvas, cv2.COLOR_GRAY2RGB))
        if len(found) == 1:
            eyes.append((found[0].landmarks[:2] - 96) / 4)
    eyes = np.array(eyes)
    med = np.median(eyes, axis=0)
    return {"faces": len(faces), "found": len(eyes), "left_eye": [round(float(v), 2) for v in med[0]],
            "right_eye": [round(float(v), 2) for v in med[1]]}


def markdown(report: dict) -> str:
    first = report["results"][0]
    lines = [
        "# Face detectors",
        "",
        f"{report['machine']}, {report['date']}. Load average {report['load_average'][0]} at the start, "
        f"{report['load_average'][1]} at the end: {report['note']}",
        "",
        f"`{report['command']}`",
        "",
        f"Pasted set: {report['pasted_images']} pictures of 640x480 per seed, with FER2013 PrivateTest faces "
        f"(56-220 px) on scikit-image photos ({first['pasted']['faces']} faces for seed {first['seed']}); real set: "
        f"astronaut, cameraman (a face each), rocket, coffee, cat (none). A hit is IoU >= {MATCH_IOU} with a known "
        "box. Milliseconds: median per 640x480 picture, wall and process CPU.",
        "",
        "| detector | seed | pasted recall | pasted precision | real recall | real precision | ms per picture | CPU ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {r['detector']} | {r['seed']} | {r['pasted']['recall']} | {r['pasted']['precision']} | "
          f"{r['real']['recall']} | {r['real']['precision']} | {r['ms_per_image']:.1f} | {r['cpu_ms_per_image']:.1f} |"
          for r in report["results"]),
        "",
        "Settings: " + "; ".join(f"{name}: {settings or 'defaults of pipeline.serve.detect'}"
                                 for name, (_, settings) in VARIANTS.items()) + ".",
    ]
    if "fer_eyes" in report:
        e = report["fer_eyes"]
        lines += ["", f"Eyes in FER's 48x48 frame (median of {e['found']} of {e['faces']} faces): "
                  f"left {e['left_eye']}, right {e['right_eye']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detectors", description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--detectors", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/detectors.json"))
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    parser.add_argument("--machine", default=device_name())
    parser.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    real, results = real_set(), []
    for seed in args.seeds:
        faces = fer_private_test(args.mirror, 3 * args.images, seed)
        pasted = pasted_set(faces, args.images, seed)
        for name in args.detectors:
            results.append({"seed": seed, **evaluate(name, pasted, real)})
            print(results[-1], flush=True)
    report = {"date": args.date, "machine": args.machine, "note": args.note,
              "command": shlex.join(["python", "-m", "benchmarks.detectors", *(argv if argv is not None else sys.argv[1:])]),
              "pasted_images": args.images, "results": results,
              "fer_eyes": fer_eye_positions(fer_private_test(args.mirror, 200, args.seeds[0] + 1000))}
    report["load_average"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    atomic.write_json(args.out, report)
    atomic.write_text(args.out.with_suffix(".md"), markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    run_cli(main)
