"""Classify the facial expression of every face in photos with a trained model.

    python -m pipeline.predict --model NAME|PATH [--models-dir data/models] [--json] [--annotate OUT] IMAGE...
    python -m pipeline.predict --ensemble IMAGE...

IMAGE is a file, a folder (its images, sorted by name) or `-` (image bytes on stdin). Faces are found with
OpenCV's LBP frontal-face cascade; a photo with no face is classified whole (centre square, "face_found": false).
Boxes are (x, y, width, height) in the pixels of the upright (EXIF-rotated) original.
--annotate OUT writes copies with boxes and labels: OUT is a file when a single file or `-` is given, else a folder.

Exit status: 0 every image processed; 2 some images failed (each reported on stderr, the others printed);
1 nothing processed (unknown or broken model, or every image failed).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from PIL import Image

from pipeline import faces
from pipeline.atomic import atomic_path
from pipeline.errors import PipelineError, run_cli

if TYPE_CHECKING:
    import keras
    from skimage.feature import Cascade

# Faces per forward pass: a crowd photo must not become one giant batch.
BATCH = 64


@dataclass(frozen=True)
class Classifier:
    name: str
    model: keras.Model
    classes: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.model.input_shape[1:])


@dataclass(frozen=True)
class Face:
    box: faces.Box  # in original-photo pixels
    probabilities: np.ndarray


@dataclass(frozen=True)
class Analysis:
    image: str
    width: int
    height: int
    face_found: bool
    faces: list[Face]


MODELS_DIRS = (Path("data/models"), Path("data/ensemble"))  # where `dvc repro` puts the members and the ensembles


def available_models(models_dirs: Path | list[Path]) -> dict[str, Path]:
    """Model name → file over the given folders, leaving out hidden files such as an interrupted atomic write's."""
    dirs = [models_dirs] if isinstance(models_dirs, (str, Path)) else models_dirs
    found = (p for d in dirs for p in sorted(Path(d).glob("*.keras")) if not p.name.startswith("."))
    return {p.stem: p for p in found}


def resolve_model(ref: str, models_dirs: Path | list[Path]) -> Path:
    """A model name in the models folders, or a path to a .keras file; the error lists the names there are."""
    path = Path(ref)
    if path.suffix == ".keras" or len(path.parts) > 1:
        if not path.is_file():
            raise PipelineError(f"model file {path} not found")
        return path
    models = available_models(models_dirs)
    if ref not in models:
        have = ", ".join(models) if models else "none: run `dvc repro` first"
        where = models_dirs if isinstance(models_dirs, (str, Path)) else ", ".join(map(str, models_dirs))
        raise PipelineError(f"no model '{ref}' in {where} (available: {have})")
    return models[ref]


def load_classifier(path: Path) -> Classifier:
    """Load a model with its class names from the JSON beside it, checking they fit together."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise PipelineError(f"{path} is not a Keras model: a .keras file is a zip archive, this is not")
    _register_custom_layers()
    import keras

    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as err:  # Keras raises ValueError, OSError, zipfile and JSON errors for a broken model
        raise PipelineError(f"{path} is not a loadable Keras model: {_first_line(err)}") from err
    classes = _read_classes(path.with_suffix(".json"))
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or shape[-1] not in (1, 3):
        raise PipelineError(f"{path}: expected one image input of shape (N, H, W, 1 or 3), got {shape}")
    if model.output_shape[-1] != len(classes):
        raise PipelineError(
            f"{path} outputs {model.output_shape[-1]} classes but {path.with_suffix('.json')} names {len(classes)}"
        )
    return Classifier(name=path.stem, model=model, classes=classes)


def _read_classes(meta_path: Path) -> tuple[str, ...]:
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as err:
        raise PipelineError(f"{meta_path} not found: the class names come from it (the train stage writes it)") from err
    except (OSError, ValueError) as err:
        raise PipelineError(f"{meta_path} is not readable JSON: {_first_line(err)}") from err
    classes = meta.get("classes") if isinstance(meta, dict) else None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise PipelineError(f"{meta_path}: `classes` must be a list of class names")
    return tuple(classes)


def _register_custom_layers() -> None:
    """safe_mode loading only finds the pipeline's custom layers once pipeline.layers has registered them."""
    if importlib.util.find_spec("pipeline.layers") is not None:
        importlib.import_module("pipeline.layers")


def _first_line(err: Exception) -> str:
    """Library errors run to paragraphs: their first sentence is the part that helps."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split(". ")[0][:200]


def analyse(photo: faces.Photo, image: str, classifier: Classifier, detector: Cascade) -> Analysis:
    """Find the faces (or fall back to the centre square) and classify them all in one batch."""
    grey = faces.grey(photo)
    boxes = faces.detect_faces(grey, detector)
    face_found = bool(boxes)
    if not face_found:
        boxes = [faces.centre_square(grey.shape[1], grey.shape[0])]
    height, width, channels = classifier.input_shape
    margin = faces.FACE_MARGIN if face_found else 0.0
    crops = np.stack([faces.crop(grey, box, (height, width), margin) for box in boxes]).astype(np.float32)
    probabilities = predict_probabilities(classifier, np.repeat(crops[..., None], channels, axis=-1))
    found = [Face(faces.scale_box(box, 1 / photo.scale), p) for box, p in zip(boxes, probabilities, strict=True)]
    return Analysis(image=image, width=photo.width, height=photo.height, face_found=face_found, faces=found)


def predict_probabilities(classifier: Classifier, x: np.ndarray) -> np.ndarray:
    """Softmax outputs for float32 pixels 0..255, in chunks of BATCH."""
    chunks = [np.asarray(classifier.model.predict_on_batch(x[i : i + BATCH])) for i in range(0, len(x), BATCH)]
    return np.concatenate(chunks).astype(np.float32)


def top(face: Face, classes: tuple[str, ...]) -> tuple[str, float]:
    best = int(np.argmax(face.probabilities))
    return classes[best], float(face.probabilities[best])


def label(face: Face, classes: tuple[str, ...]) -> str:
    emotion, probability = top(face, classes)
    return f"{emotion} {probability:.0%}"


def annotate(photo: faces.Photo, analysis: Analysis, classes: tuple[str, ...]) -> np.ndarray:
    """The photo's working copy with each face boxed and labelled; the fallback square is marked 'no face'."""
    boxes = [faces.scale_box(f.box, photo.scale) for f in analysis.faces]
    prefix = "" if analysis.face_found else "no face: "
    return faces.draw_labels(photo.rgb, boxes, [prefix + label(f, classes) for f in analysis.faces])


def to_json(classifier: Classifier, analyses: list[Analysis], errors: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "model": classifier.name,
        "classes": list(classifier.classes),
        "images": [
            {
                "image": a.image,
                "width": a.width,
                "height": a.height,
                "face_found": a.face_found,
                "faces": [_face_json(f, classifier.classes) for f in a.faces],
            }
            for a in analyses
        ],
        "errors": [{"image": image, "error": error} for image, error in errors],
    }


def _face_json(face: Face, classes: tuple[str, ...]) -> dict[str, Any]:
    emotion, probability = top(face, classes)
    return {
        "box": list(face.box),
        "emotion": emotion,
        "probability": round(probability, 4),
        "probabilities": {c: round(float(p), 4) for c, p in zip(classes, face.probabilities, strict=True)},
    }


def format_table(analyses: list[Analysis], classes: tuple[str, ...]) -> str:
    """One row per face, all class probabilities as columns; a footnote marks whole-image fallbacks."""
    header = ["image", "face", "box (x y w h)", "emotion", "prob", *classes]
    rows = []
    for a in analyses:
        for i, face in enumerate(a.faces, 1):
            emotion, probability = top(face, classes)
            rows.append([
                a.image,
                str(i) if a.face_found else "none*",
                " ".join(map(str, face.box)),
                emotion,
                f"{probability:.2f}",
                *(f"{p:.2f}" for p in face.probabilities),
            ])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    if not all(a.face_found for a in analyses):
        lines.append("* no face found: the whole image (centre square) was classified")
    return "\n".join(lines)


def expand_inputs(items: list[str]) -> list[str]:
    """Folders become their image files, sorted; a folder without any stays as is, to be reported."""
    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
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
        raise PipelineError("folder holds no image files")
    try:
        return Path(item).read_bytes()
    except OSError as err:
        raise PipelineError(f"cannot read it: {err.strerror}") from err


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


def _annotation_path(out: Path, image: str, single: bool, used: set[str]) -> Path:
    """OUT itself for a single input, else OUT/<stem>.png, numbered when two inputs share a stem."""
    if single:
        return out
    stem = "stdin" if image == "<stdin>" else Path(image).stem
    name, n = f"{stem}.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}.png"
    used.add(name)
    return out / name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.predict",
        description="Classify the facial expression of each face in photos.",
        epilog="Exit status: 0 all images processed, 2 some failed, 1 none processed.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="model name in --models-dir, or a path to a .keras file")
    which.add_argument("--ensemble", action="store_true", help="use the ensemble model (same as --model ensemble)")
    parser.add_argument(
        "--models-dir", type=Path, action="append", help="folder of trained models (repeatable; default: data/models and data/ensemble)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--annotate", type=Path, metavar="OUT", help="write copies with boxes and labels")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image file, folder, or - for stdin")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not the user's business
    single = len(args.images) == 1 and not Path(args.images[0]).is_dir()
    if args.annotate and single:
        image_format(args.annotate)
    classifier = load_classifier(resolve_model("ensemble" if args.ensemble else args.model, args.models_dir or list(MODELS_DIRS)))
    detector = faces.load_detector()
    analyses, errors, used = [], [], set()
    for item in expand_inputs(args.images):
        image = "<stdin>" if item == "-" else item
        try:
            photo = faces.read_photo(read_input(item, sys.stdin.buffer))
        except PipelineError as err:
            print(f"error: {image}: {err}", file=sys.stderr)
            errors.append((image, str(err)))
            continue
        analysis = analyse(photo, image, classifier, detector)
        analyses.append(analysis)
        if args.annotate:
            target = _annotation_path(args.annotate, image, single, used)
            save_image(target, annotate(photo, analysis, classifier.classes))
    if args.json:
        print(json.dumps(to_json(classifier, analyses, errors), indent=2))
    elif analyses:
        print(format_table(analyses, classifier.classes))
    if not analyses:
        raise PipelineError(f"no image could be processed ({len(errors)} failed)")
    if errors:
        sys.exit(2)


if __name__ == "__main__":
    run_cli(main)
