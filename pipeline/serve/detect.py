"""Face detectors behind one registry: each backend takes an RGB array and returns Detections in its pixels.

`mtcnn` (the default) ships its weights inside the `mtcnn` wheel and gives five landmarks, so faces can be
aligned by the eyes; `lbp` is OpenCV's LBP cascade from scikit-image's wheel: no landmarks, weaker, but no
TensorFlow. Chosen by measurement: benchmarks/results/detectors.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.errors import PipelineError

Box = tuple[int, int, int, int]  # x, y, width, height in pixels

# Detection runs on a copy at most this long: cost grows with the pixel count. 320 px was as accurate as
# 640 on the pasted-faces set and twice as fast; faces under ~40 px in a 640 px photo are lost (too small
# for a useful 48x48 crop anyway).
DETECT_SIDE = 320
# Faces smaller than this (on the detection copy) are not looked for: a 48x48 crop from less is mostly blur.
MIN_FACE = 24


@dataclass(frozen=True)
class Detection:
    """One face: its box, its landmarks ((k, 2) x/y, the two eyes first, image-left eye first) and a score."""

    box: Box
    landmarks: np.ndarray | None
    score: float

    def scaled(self, factor: float) -> Detection:
        marks = None if self.landmarks is None else self.landmarks * factor
        return Detection(tuple(round(v * factor) for v in self.box), marks, self.score)


Detector = Callable[[np.ndarray], list[Detection]]


def _load_mtcnn() -> Detector:
    from mtcnn import MTCNN

    net = MTCNN(device="CPU:0")
    keys = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

    def detect(rgb: np.ndarray) -> list[Detection]:
        found = net.detect_faces(rgb)  # min_face_size is broken above 20 in mtcnn 1.0
        return [
            Detection(
                tuple(int(v) for v in f["box"]),
                _eyes_first(np.array([f["keypoints"][k] for k in keys], np.float32)),
                float(f["confidence"]),
            )
            for f in found
        ]

    return detect


def _load_lbp() -> Detector:
    from skimage import data as skdata
    from skimage.feature import Cascade

    cascade = Cascade(skdata.lbp_frontal_face_cascade_filename())

    def detect(rgb: np.ndarray) -> list[Detection]:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        found = cascade.detect_multi_scale(
            img=grey, scale_factor=1.2, step_ratio=1.0, min_size=(MIN_FACE, MIN_FACE), max_size=grey.shape,
            min_neighbor_number=6,  # tuned on skimage's sample photos: fewer finds false faces, more misses real ones
        )
        boxes = [tuple(int(d[k]) for k in ("c", "r", "width", "height")) for d in found]
        return [Detection(box, None, 1.0) for box in drop_overlapping(boxes)]

    return detect


# Backend name → loader. The CLI's and the app's choices are these keys.
DETECTORS: dict[str, Callable[[], Detector]] = {"mtcnn": _load_mtcnn, "lbp": _load_lbp}
DEFAULT_DETECTOR = "mtcnn"


def load_detector(name: str = DEFAULT_DETECTOR) -> Detector:
    """The named backend, wrapped to work on a bounded copy and to return boxes left to right."""
    if name not in DETECTORS:
        raise PipelineError(f"unknown face detector '{name}' (choose one of: {', '.join(DETECTORS)})")
    backend = DETECTORS[name]()

    def detect(rgb: np.ndarray) -> list[Detection]:
        shrink = min(1.0, DETECT_SIDE / max(rgb.shape[:2]))
        if min(rgb.shape[:2]) * shrink < MIN_FACE:  # a sliver or a thumbnail: no face fits, and backends assert
            return []
        small = rgb if shrink == 1 else cv2.resize(rgb, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        found = [d.scaled(1 / shrink) for d in backend(np.ascontiguousarray(small))]
        return sorted(found, key=lambda d: d.box)

    return detect


def _eyes_first(marks: np.ndarray) -> np.ndarray:
    """MTCNN names eyes from the subject's side in some versions and the viewer's in others: order them by x."""
    if marks[0, 0] > marks[1, 0]:
        marks[[0, 1]] = marks[[1, 0]]
    return marks


def drop_overlapping(boxes: list[Box]) -> list[Box]:
    """Keep the largest of boxes that mostly overlap: the cascade reports one face at several scales."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        if all(overlap(box, other) <= 0.5 for other in kept):
            kept.append(box)
    return kept


def overlap(a: Box, b: Box) -> float:
    """Intersection area over the smaller box's area."""
    return _intersection(a, b) / min(a[2] * a[3], b[2] * b[3])


def iou(a: Box, b: Box) -> float:
    inter = _intersection(a, b)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _intersection(a: Box, b: Box) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)
