"""The Python API: a picture in (path, bytes or array), faces out, each with its box, landmarks and probabilities.

    from pipeline.serve import analyse
    result = analyse("photo.jpg")            # the shipped model and the MTCNN detector, loaded once and kept
    for face in result.faces:
        face.box, face.landmarks, face.emotion, face.probabilities

Detection and alignment (`locate`) are separate from classification (`classify`), so the app and videos find
the faces once and hand the same crops to every model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from pipeline import modelfiles
from pipeline.errors import PipelineError
from pipeline.serve import align, detect, images

if TYPE_CHECKING:
    import keras
    from PIL import Image

# Faces per forward pass: a crowd photo must not become one giant batch.
BATCH = 64


@dataclass(frozen=True)
class Classifier:
    name: str
    model: keras.Model
    classes: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)  # the model's .json: training data, epochs, members

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.model.input_shape[1:])


def load_classifier(path: str | Path) -> Classifier:
    """A model and the class names from the .json beside it, checked to fit together."""
    path = Path(path)
    model = modelfiles.load_model(path)
    info = modelfiles.read_info(path)
    classes = tuple(info["classes"])
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or shape[-1] not in (1, 3):
        raise PipelineError(f"{path}: expected one image input of shape (N, H, W, 1 or 3), got {shape}")
    if model.output_shape[-1] != len(classes):
        raise PipelineError(f"{path} outputs {model.output_shape[-1]} classes but {path.with_suffix('.json')} names {len(classes)}")
    return Classifier(name=path.stem, model=model, classes=classes, info=info)


@dataclass(frozen=True)
class Located:
    """A face found and cropped, before any model: box and landmarks in original-picture pixels."""

    box: detect.Box
    landmarks: np.ndarray | None
    score: float
    crop: np.ndarray  # 48x48 uint8 grey, what every model sees


@dataclass(frozen=True)
class Face:
    box: detect.Box
    landmarks: np.ndarray | None
    score: float
    crop: np.ndarray
    probabilities: dict[str, float]

    @property
    def emotion(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)

    @property
    def probability(self) -> float:
        return self.probabilities[self.emotion]

    @property
    def label(self) -> str:
        return f"{self.emotion} {self.probability:.0%}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": list(self.box),
            "landmarks": None if self.landmarks is None else np.round(self.landmarks, 1).tolist(),
            "detector_score": round(self.score, 4),
            "emotion": self.emotion,
            "probability": round(self.probability, 4),
            "probabilities": {c: round(p, 4) for c, p in self.probabilities.items()},
        }


@dataclass(frozen=True)
class Result:
    """One picture: its original size, whether a face was found, and the faces (left to right).

    With no face found, `faces` is empty unless whole_image was asked for: then it holds the centre square."""

    width: int
    height: int
    face_found: bool
    faces: list[Face]

    def to_dict(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "face_found": self.face_found,
                "faces": [f.to_dict() for f in self.faces]}


def locate(photo: images.Photo, detector: detect.Detector, whole_image: bool = False) -> tuple[list[Located], bool]:
    """The faces in a photo, aligned and cropped, and whether any was found; with none found and whole_image
    set, the centre square stands in."""
    grey = images.grey(photo)
    back = 1 / photo.scale
    found = [
        Located(d.scaled(back).box, d.scaled(back).landmarks, d.score, align.aligned_crop(grey, d))
        for d in detector(photo.rgb)
    ]
    if found or not whole_image:
        return found, bool(found)
    square = align.centre_square(grey.shape[1], grey.shape[0])
    crop = align.box_crop(grey, square, align.SIDE, margin=0.0)
    return [Located(tuple(round(v * back) for v in square), None, 0.0, crop)], False


def classify(classifier: Classifier, located: list[Located]) -> list[Face]:
    """Every located face through one model, in batches."""
    if not located:
        return []
    probabilities = predict_probabilities(classifier, model_input(classifier, [f.crop for f in located]))
    return [
        Face(f.box, f.landmarks, f.score, f.crop, {c: float(p) for c, p in zip(classifier.classes, probs, strict=True)})
        for f, probs in zip(located, probabilities, strict=True)
    ]


def model_input(classifier: Classifier, crops: list[np.ndarray]) -> np.ndarray:
    """float32 pixels 0..255 shaped for the model: resized when it is not 48x48, grey repeated for RGB models."""
    height, width, channels = classifier.input_shape
    sized = [c if c.shape == (height, width) else cv2.resize(c, (width, height), interpolation=cv2.INTER_AREA) for c in crops]
    return np.repeat(np.stack(sized)[..., None], channels, axis=-1).astype(np.float32)


def predict_probabilities(classifier: Classifier, x: np.ndarray) -> np.ndarray:
    """Softmax outputs in chunks of BATCH."""
    chunks = [np.asarray(classifier.model.predict_on_batch(x[i : i + BATCH])) for i in range(0, len(x), BATCH)]
    return np.concatenate(chunks).astype(np.float32)


class Recognizer:
    """A model and a detector loaded once; call it on pictures."""

    def __init__(self, model: str | Path | None = None, detector: str = detect.DEFAULT_DETECTOR,
                 models_dirs: list[Path] | tuple[Path, ...] = modelfiles.MODELS_DIRS):
        self.classifier = load_classifier(modelfiles.find_model(model, list(models_dirs)))
        self.detector = detect.load_detector(detector)

    def __call__(self, image: str | Path | bytes | np.ndarray | Image.Image, whole_image: bool = False) -> Result:
        photo = images.to_photo(image)
        located, face_found = locate(photo, self.detector, whole_image)
        return Result(photo.width, photo.height, face_found, classify(self.classifier, located))


@functools.lru_cache(maxsize=4)
def recognizer(model: str | None = None, detector: str = detect.DEFAULT_DETECTOR) -> Recognizer:
    return Recognizer(model, detector)


def analyse(image: str | Path | bytes | np.ndarray | Image.Image, model: str | None = None,
            detector: str = detect.DEFAULT_DETECTOR, whole_image: bool = False) -> Result:
    """Faces, boxes, landmarks and emotion probabilities in one picture; model and detector are loaded on the
    first call and kept. `model`: a name in data/models or a .keras path (default: models/fer2013.keras)."""
    return recognizer(None if model is None else str(model), detector)(image, whole_image)
