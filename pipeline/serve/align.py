"""Face crops the way FER2013 framed its faces: eyes level, at the place and distance they sit in its 48x48 images.

The eye positions were measured, not guessed: MTCNN (as pipeline.serve.detect runs it) on 200 upscaled PrivateTest
faces put the eyes at (15.01, 18.32) and (33.11, 17.97) of 48 (benchmarks/detectors.py, `fer_eyes`). Detectors
without landmarks get a square around their box with the margin FER's framing adds (the box hugs brows to mouth).
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.serve.detect import Box, Detection

SIDE = 48
EYE_Y = 18.15 / SIDE  # eye height in FER's frame, as a fraction of the side
EYE_DISTANCE = 18.1 / SIDE  # between the eye centres, as a fraction of the side
BOX_MARGIN = 0.15  # per side, for boxes without landmarks


def aligned_crop(grey: np.ndarray, detection: Detection, side: int = SIDE) -> np.ndarray:
    """side x side crop with the eyes level at FER's positions; edges replicate past the picture's border."""
    if detection.landmarks is None:
        return box_crop(grey, detection.box, side, BOX_MARGIN)
    return cv2.warpAffine(grey, eye_transform(detection.landmarks[:2], side), (side, side),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def eye_transform(eyes: np.ndarray, side: int) -> np.ndarray:
    """The 2x3 similarity (rotation, scale, shift) taking the image-left and image-right eye to FER's places."""
    (lx, ly), (rx, ry) = eyes
    angle = np.degrees(np.arctan2(ry - ly, rx - lx))
    scale = EYE_DISTANCE * side / max(np.hypot(rx - lx, ry - ly), 1e-6)
    centre = ((lx + rx) / 2, (ly + ry) / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    matrix[:, 2] += (side / 2 - centre[0], EYE_Y * side - centre[1])
    return matrix


def box_crop(grey: np.ndarray, box: Box, side: int, margin: float) -> np.ndarray:
    """Square crop around `box` grown by `margin` per side, edges replicated past the border."""
    x, y, w, h = box
    size = max(round(max(w, h) * (1 + 2 * margin)), 1)
    patch = cv2.getRectSubPix(grey, (size, size), (x + w / 2, y + h / 2))
    return cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA)


def centre_square(width: int, height: int) -> Box:
    """The largest centred square: what gets classified when the caller asks for the whole picture."""
    s = min(width, height)
    return ((width - s) // 2, (height - s) // 2, s, s)
