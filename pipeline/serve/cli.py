"""Classify the facial expression of every face in photos and videos.

    python -m pipeline.predict [--model NAME|PATH | --ensemble] [--detector mtcnn|lbp] [--json] [--whole-image]
                               [--annotate OUT] [--every N] [--frames DIR] INPUT...

INPUT is an image file, a video file (.mp4, .avi, .mov, ...), a folder (its images and videos, sorted by name)
or `-` (image bytes on stdin). Without --model: models/fer2013.keras, else the pipeline's ensemble or first model.
A picture without a face is reported as such ("face_found": false, no faces); --whole-image classifies the
centre square instead. Boxes and landmarks are in the pixels of the upright (EXIF-rotated) original.
Videos: every --every-th frame, faces tracked across frames (the `face` column is the person's id); the per-frame
table goes to stdout, and with --frames DIR also to DIR/<name>.csv and DIR/<name>.json.
--annotate OUT writes copies with boxes and labels: OUT is a file for a single input (.png/.jpg, .mp4 for a
video), else a folder.

Exit status: 0 every input processed, a face in each; 3 every input processed, some without a face;
2 some inputs failed (each reported on its own line, the others still printed); 1 nothing processed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from PIL import Image

from pipeline import modelfiles
from pipeline.atomic import atomic_path
from pipeline.errors import PipelineError, run_cli
from pipeline.serve import api, detect, draw, images, video

# Exit statuses, one owner: the docstring above and the epilog say the same.
OK, NOTHING, SOME_FAILED, SOME_WITHOUT_FACE = 0, 1, 2, 3


def expand_inputs(items: list[str]) -> list[str]:
    """Folders become their image and video files, sorted; a folder without any stays as is, to be reported."""
    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN} | video.VIDEO_EXTENSIONS
    expanded = []
    for item in items:
        path = Path(item)
        inside = path.iterdir() if path.is_dir() else []
        found = sorted(p for p in inside if p.is_file() and p.suffix.lower() in readable)
        expanded.extend([str(p) for p in found] or [item])
    return expanded


def read_input(item: str, stdin: BinaryIO) -> bytes:
    if item == "-":
        return stdin.read()
    if Path(item).is_dir():
        raise PipelineError("folder holds no image or video files")
    try:
        return Path(item).read_bytes()
    except OSError as err:
        raise PipelineError(f"cannot read it: {err.strerror}") from err


def annotate(photo: images.Photo, result: api.Result) -> np.ndarray:
    """The photo's working copy with each face boxed and labelled, or a 'no face found' notice."""
    if not result.face_found and not result.faces:
        return draw.draw_notice(photo.rgb, "no face found")
    boxes = [tuple(round(v * photo.scale) for v in f.box) for f in result.faces]
    prefix = "" if result.face_found else "whole image: "
    return draw.draw_labels(photo.rgb, boxes, [prefix + f.label for f in result.faces])


def format_table(results: list[tuple[str, api.Result]], classes: tuple[str, ...]) -> str:
    """One row per face, all class probabilities as columns; a picture without a face gets a 'no face' row."""
    header = ["image", "face", "box (x y w h)", "emotion", "prob", *classes]
    rows = []
    for name, r in results:
        rows += [[name, "-", "no face found", "", "", *[""] * len(classes)]] if not r.faces else []
        for i, face in enumerate(r.faces, 1):
            rows.append([name, str(i) if r.face_found else "whole*", " ".join(map(str, face.box)), face.emotion,
                         f"{face.probability:.2f}", *(f"{face.probabilities[c]:.2f}" for c in classes)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    if any(not r.face_found and r.faces for _, r in results):
        lines.append("* no face found: the whole image (centre square) was classified, as --whole-image asked")
    return "\n".join(lines)


def video_table(name: str, rows: list[dict[str, Any]], classes: tuple[str, ...]) -> str:
    header = ["video", "time_s", "frame", "face", "box (x y w h)", "emotion", "prob", *classes]
    body = [[name, f"{r['time_s']:.2f}", str(r["frame"]), str(r["face"]), f"{r['x']} {r['y']} {r['w']} {r['h']}",
             r["emotion"], f"{r['probability']:.2f}", *(f"{r[c]:.2f}" for c in classes)] for r in rows]
    body = body or [[name, "", "", "-", "no face in any sampled frame", "", "", *[""] * len(classes)]]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *body])


def save_image(path: Path, rgb: np.ndarray) -> None:
    try:
        with atomic_path(path) as tmp:
            Image.fromarray(rgb).save(tmp, format=image_format(path))
    except OSError as err:
        raise PipelineError(f"cannot write {path}: {err.strerror or err}") from err


def image_format(path: Path) -> str:
    """PIL's writer for the file's extension, checked before any work is done."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt not in Image.SAVE:
        raise PipelineError(f"--annotate {path}: use an image extension such as .png or .jpg")
    return fmt


def annotation_path(out: Path, name: str, single: bool, used: set[str], suffix: str) -> Path:
    """OUT itself for a single input, else OUT/<stem><suffix>, numbered when two inputs share a stem."""
    if single:
        return out
    stem = "stdin" if name == "<stdin>" else Path(name).stem
    candidate, n = f"{stem}{suffix}", 1
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}{suffix}"
    used.add(candidate)
    return out / candidate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.predict",
        description="Classify the facial expression of each face in photos and videos.",
        epilog="Exit status: 0 all processed with faces, 3 some without a face, 2 some failed, 1 none processed.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", help="model name in --models-dir, or a .keras path (default: models/fer2013.keras)")
    which.add_argument("--ensemble", action="store_true", help="use the ensemble model (same as --model ensemble)")
    parser.add_argument("--models-dir", type=Path, action="append",
                        help="folder of models (repeatable; default: the shipped models/, then data/models and data/ensemble)")
    parser.add_argument("--detector", choices=list(detect.DETECTORS), default=detect.DEFAULT_DETECTOR,
                        help=f"face detector (default {detect.DEFAULT_DETECTOR})")
    parser.add_argument("--whole-image", action="store_true", help="classify the centre square of pictures without a face")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--annotate", type=Path, metavar="OUT", help="write copies with boxes and labels")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="videos: analyse every N-th frame (default 1)")
    parser.add_argument("--frames", type=Path, metavar="DIR", help="videos: also write DIR/<name>.csv and .json")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video file, folder, or - for stdin")
    return parser


def process(item: str, args: argparse.Namespace, recognizer: api.Recognizer, single: bool, used: set[str]) -> dict[str, Any]:
    """One input, start to end; every failure is a PipelineError naming it."""
    name = "<stdin>" if item == "-" else item
    classifier = recognizer.classifier
    if item != "-" and video.is_video(item):
        target = annotation_path(args.annotate, name, single, used, ".mp4") if args.annotate else None
        rows = video.analyse_video(item, classifier, recognizer.detector, args.every, target)
        if args.frames:
            video.write_table(rows, classifier.classes, args.frames / f"{Path(item).stem}.csv")
        return {"video": name, "face_found": bool(rows), "frames": rows}
    photo = images.read_photo(read_input(item, sys.stdin.buffer))
    located, face_found = api.locate(photo, recognizer.detector, args.whole_image)
    result = api.Result(photo.width, photo.height, face_found, api.classify(classifier, located))
    if args.annotate:
        save_image(annotation_path(args.annotate, name, single, used, ".png"), annotate(photo, result))
    return {"image": name, "result": result}


def isolated(item: str, args: argparse.Namespace, recognizer: api.Recognizer, single: bool, used: set[str]) -> dict[str, Any]:
    """process(), with a library's own failure on a hostile input (an OpenCV assertion, a numpy shape error)
    turned into this input's error line instead of the whole batch's end."""
    try:
        return process(item, args, recognizer, single, used)
    except (cv2.error, ValueError, OSError, MemoryError) as err:
        raise PipelineError(f"cannot process it: {modelfiles.first_line(err)}") from err


def to_json(classifier: api.Classifier, done: list[dict[str, Any]], errors: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "model": classifier.name,
        "classes": list(classifier.classes),
        "images": [{"image": d["image"], **d["result"].to_dict()} for d in done if "image" in d],
        "videos": [d for d in done if "video" in d],
        "errors": [{"image": name, "error": error} for name, error in errors],
    }


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    single = len(args.inputs) == 1 and not Path(args.inputs[0]).is_dir()
    if args.annotate and single and not video.is_video(args.inputs[0]):
        image_format(args.annotate)
    model = "ensemble" if args.ensemble else args.model
    recognizer = api.Recognizer(model, args.detector, args.models_dir or list(modelfiles.MODELS_DIRS))
    done, errors, used = [], [], set()
    for item in expand_inputs(args.inputs):
        name = "<stdin>" if item == "-" else item
        try:
            done.append(isolated(item, args, recognizer, single, used))
        except PipelineError as err:
            print(f"error: {name}: {err}", file=sys.stderr)
            errors.append((name, str(err)))
    classes = recognizer.classifier.classes
    if args.json:
        print(json.dumps(to_json(recognizer.classifier, done, errors), indent=2))
    else:
        pictures = [(d["image"], d["result"]) for d in done if "image" in d]
        tables = [format_table(pictures, classes)] if pictures else []
        tables += [video_table(d["video"], d["frames"], classes) for d in done if "video" in d]
        if tables:
            print("\n\n".join(tables))
    if not done:
        raise PipelineError(f"no input could be processed ({len(errors)} failed)")
    if errors:
        sys.exit(SOME_FAILED)
    if not all(d["face_found"] if "video" in d else d["result"].face_found or args.whole_image for d in done):
        sys.exit(SOME_WITHOUT_FACE)


def cli() -> None:
    """The `fer-predict` console script."""
    run_cli(main)
