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

# Detection runs on a copy at most this long: cost grows with the pixel count. On the pasted-faces set 320 px
# found as many faces as 640 at under half the time, and fewer false ones (640: precision 0.85 at the wheel's
# settings); faces under MIN_FACE there (48 px in a 640 px photo) are not looked for.
DETECT_SIDE = 320
# Smallest face looked for, on the detection copy: a 48x48 crop from less is mostly blur, and starting the pyramid
# lower adds its largest (costliest) level and brought false faces (textures at 17-30 px).
MIN_FACE = 24
# Chosen on the pasted-faces set (benchmarks/detectors.py, seed 0) and confirmed on a second draw (seed 1):
# the wheel's settings (20 px, scale 0.709, thresholds 0.6/0.7/0.8) find 0.88 of the faces at precision 0.99;
# these find 0.95 at 0.985-0.993. The lower stage thresholds let tilted, hand-covered and grimacing faces through;
# the finer pyramid (0.8) recovers faces that fell between levels.
# Boxes under small_face[0] px need small_face[1] from ONet (the wheel's own threshold): small, blurry candidates
# are where textures and badges fool it (false faces at 17-27 px scored 0.53-0.74), while every real face under
# 32 px on both draws scored >= 0.91.
MTCNN = {"min_face": MIN_FACE, "scale_factor": 0.8, "thresholds": (0.3, 0.3, 0.5), "small_face": (32, 0.8)}


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


def _load_mtcnn(**settings) -> Detector:
    """MTCNN's three networks from the `mtcnn` wheel, driven here: the wheel's own driver calls each Keras model
    eagerly (a few ms of overhead per pyramid level) and cannot start its pyramid above 20 px faces.
    `settings` override MTCNN's keys (the benchmark compares them)."""
    import tensorflow as tf
    from mtcnn.stages import StageONet, StagePNet, StageRNet

    def compiled(stage, shape):  # one graph per network, any batch (and any size for PNet): no retracing
        model = stage().model
        return tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec(shape, tf.float32)])

    nets = (compiled(StagePNet, (1, None, None, 3)), compiled(StageRNet, (None, 24, 24, 3)),
            compiled(StageONet, (None, 48, 48, 3)))

    def detect(rgb: np.ndarray) -> list[Detection]:
        rows = mtcnn_rows(nets, rgb, **{**MTCNN, **settings})
        return [Detection(_box(r[1:5], rgb.shape), _eyes_first(r[6:16].reshape(2, 5).T.astype(np.float32)), float(r[5]))
                for r in rows]

    return detect


def pyramid(height: int, width: int, min_face: int, scale_factor: float) -> list[float]:
    """Scales that map faces from min_face px up to the whole picture onto PNet's 12 px window."""
    scales, scale = [], 12 / min_face
    while min(height, width) * scale >= 12:
        scales.append(scale)
        scale *= scale_factor
    return scales


def mtcnn_rows(nets, rgb: np.ndarray, min_face: int, scale_factor: float, thresholds: tuple[float, float, float],
               small_face: tuple[int, float]) -> np.ndarray:
    """MTCNN's cascade: rows of [image, x1, y1, x2, y2, score, 5 landmark x, 5 landmark y] (the wheel's layout,
    so its box and NMS helpers apply)."""
    from mtcnn.utils import bboxes as bb
    from mtcnn.utils.landmarks import adjust_landmarks

    pnet, rnet, onet = nets
    image = (rgb.astype(np.float32) - 127.5) / 128
    height, width = rgb.shape[:2]
    proposals = []
    for scale in pyramid(height, width, min_face, scale_factor):
        level = cv2.resize(image, (int(np.ceil(width * scale)), int(np.ceil(height * scale))), interpolation=cv2.INTER_AREA)
        regression, probability = pnet(level[None])
        rows = bb.generate_bounding_box(regression, probability, thresholds[0])
        if len(rows):
            rows = bb.upscale_bboxes(rows, np.asarray([scale]))
            proposals.append(bb.smart_nms_from_bboxes(rows, threshold=0.5, method="union", initial_sort=False))
    if not proposals:
        return np.empty((0, 16))
    rows = bb.resize_to_square(bb.smart_nms_from_bboxes(np.concatenate(proposals), threshold=0.7, method="union"))
    offsets, scores = rnet(_patches(image, rows, 24))
    rows = bb.adjust_bboxes(bb.replace_confidence(rows, scores.numpy()), offsets.numpy())
    rows = bb.pick_matches(rows, score_threshold=thresholds[1])
    if not len(rows):
        return np.empty((0, 16))
    rows = bb.resize_to_square(bb.smart_nms_from_bboxes(rows, threshold=0.7, method="union"))
    offsets, marks, scores = onet(_patches(image, rows, 48))
    marks = adjust_landmarks(marks, rows)
    rows = bb.adjust_bboxes(bb.replace_confidence(rows, scores.numpy()), offsets.numpy())
    rows = bb.pick_matches(np.concatenate([rows, marks], axis=1), scores_column=5, score_threshold=thresholds[2])
    rows = rows[(rows[:, 3] - rows[:, 1] >= small_face[0]) | (rows[:, 5] >= small_face[1])]
    return bb.smart_nms_from_bboxes(rows, threshold=0.7, method="min")


def _patches(image: np.ndarray, rows: np.ndarray, side: int):
    """Each row's box from the picture, resized to the network's input (zeros outside the picture)."""
    import tensorflow as tf

    height, width = image.shape[:2]
    corners = rows[:, [2, 1, 4, 3]] / np.array([height, width, height, width])
    return tf.image.crop_and_resize(image[None], corners.astype(np.float32), np.zeros(len(rows), np.int32), (side, side))


def _box(corners: np.ndarray, shape: tuple[int, ...]) -> Box:
    """x1, y1, x2, y2 to x, y, width, height, clipped to the picture (MTCNN's boxes may overhang it)."""
    x1, y1 = max(round(corners[0]), 0), max(round(corners[1]), 0)
    x2, y2 = min(round(corners[2]), shape[1]), min(round(corners[3]), shape[0])
    return (x1, y1, x2 - x1, y2 - y1)


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
DETECTORS: dict[str, Callable[..., Detector]] = {"mtcnn": _load_mtcnn, "lbp": _load_lbp}
DEFAULT_DETECTOR = "mtcnn"


def load_detector(name: str = DEFAULT_DETECTOR, **settings) -> Detector:
    """The named backend (with `settings` for its loader), wrapped to work on a bounded copy and to return boxes
    left to right."""
    if name not in DETECTORS:
        raise PipelineError(f"unknown face detector '{name}' (choose one of: {', '.join(DETECTORS)})")
    backend = DETECTORS[name](**settings)

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
