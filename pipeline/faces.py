"""Photos in, face crops out: decode any picture safely, find the faces, cut them out the way FER2013 framed them.

No Keras here, so the detector and the image handling can be used and tested without loading a model.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from skimage import data as skdata
from skimage.feature import Cascade

from pipeline.errors import PipelineError

# Checked from the header, before decoding: a 50 MP camera photo passes, a decompression bomb does not.
MAX_PIXELS = 64_000_000
# Photos are worked on at most this long: enough for faces of a few dozen pixels, bounded memory.
WORK_SIDE = 1600
# The cascade runs on a copy at most this long: its cost grows with the pixel count.
DETECT_SIDE = 640
# The cascade's own window: faces smaller than this on the detection copy are missed.
MIN_FACE = 24
# Cascade boxes hug brows-to-mouth; FER2013 faces include forehead and chin.
FACE_MARGIN = 0.15

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


@dataclass(frozen=True)
class Photo:
    """A decoded photo, upright, RGB, downscaled to at most WORK_SIDE; `scale` maps original pixels to `rgb` pixels."""

    rgb: np.ndarray
    width: int
    height: int
    scale: float


def read_photo(data: bytes) -> Photo:
    """Decode image bytes of any format PIL knows, refusing empty, non-image, truncated and oversized files."""
    if not data:
        raise PipelineError("empty file")
    too_big = PipelineError(
        f"image is over the {MAX_PIXELS // 1_000_000} MP limit (a decompression bomb or an oversized scan): "
        "downscale it first"
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as err:
        raise PipelineError("not an image PIL can read (unknown or unsupported format)") from err
    except Image.DecompressionBombError as err:
        raise too_big from err
    except OSError as err:
        raise PipelineError(f"image data is truncated or corrupt ({err})") from err
    if img.width * img.height > MAX_PIXELS:
        raise too_big
    try:
        size = _upright_size(img)
        img.draft("RGB", (WORK_SIDE, WORK_SIDE))  # JPEG decodes straight at a reduced scale
        img.load()
    except (OSError, ValueError) as err:
        raise PipelineError(f"image data is truncated or corrupt ({err})") from err
    return photo_from_image(img, size)


def photo_from_image(img: Image.Image, size: tuple[int, int] | None = None) -> Photo:
    """Upright RGB working copy of a PIL image; `size` is the original upright size when `img` was decoded smaller."""
    img = ImageOps.exif_transpose(img)
    width, height = size or img.size
    rgb = _to_rgb(img)
    scale = min(1.0, WORK_SIDE / max(rgb.shape[:2]))
    if scale < 1.0:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return Photo(rgb=np.ascontiguousarray(rgb), width=width, height=height, scale=rgb.shape[1] / width)


def _upright_size(img: Image.Image) -> tuple[int, int]:
    """Size after EXIF rotation, read from the header so it stays right when draft() decodes smaller."""
    turned = img.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8)
    return (img.height, img.width) if turned else (img.width, img.height)


def _to_rgb(img: Image.Image) -> np.ndarray:
    """uint8 RGB from any mode: 16-bit and float greys are rescaled (PIL would clip them), transparency goes white."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        grey = np.clip(values * (255.0 / top), 0, 255).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    if "A" in img.mode or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def grey(photo: Photo) -> np.ndarray:
    return cv2.cvtColor(photo.rgb, cv2.COLOR_RGB2GRAY)


def load_detector() -> Cascade:
    """OpenCV's LBP frontal-face cascade as shipped inside scikit-image's wheel.

    OpenCV 5 wheels no longer ship CascadeClassifier nor the Haar XML files; this needs no download.
    """
    return Cascade(skdata.lbp_frontal_face_cascade_filename())


def detect_faces(grey_image: np.ndarray, detector: Cascade) -> list[Box]:
    """Face boxes in `grey_image` coordinates, left to right, one per face."""
    shrink = min(1.0, DETECT_SIDE / max(grey_image.shape))
    small = grey_image
    if shrink < 1:
        small = cv2.resize(grey_image, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    found = detector.detect_multi_scale(
        img=small, scale_factor=1.2, step_ratio=1.0, min_size=(MIN_FACE, MIN_FACE), max_size=small.shape,
        min_neighbor_number=6,  # tuned on skimage's sample photos: fewer finds false faces, more misses real ones
    )
    boxes = [tuple(round(d[k] / shrink) for k in ("c", "r", "width", "height")) for d in found]
    return sorted(drop_overlapping(boxes))


def drop_overlapping(boxes: list[Box]) -> list[Box]:
    """Keep the largest of boxes that mostly overlap: the cascade reports one face at several scales."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        if all(_overlap(box, other) <= 0.5 for other in kept):
            kept.append(box)
    return kept


def _overlap(a: Box, b: Box) -> float:
    """Intersection area over the smaller box's area."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0) / min(a[2] * a[3], b[2] * b[3])


def centre_square(width: int, height: int) -> Box:
    """The largest centred square: what gets classified when no face is found."""
    side = min(width, height)
    return ((width - side) // 2, (height - side) // 2, side, side)


def crop(grey_image: np.ndarray, box: Box, size: tuple[int, int], margin: float) -> np.ndarray:
    """Square crop around `box` grown by `margin` per side, edges replicated past the border, resized to (h, w)."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    patch = cv2.getRectSubPix(grey_image, (round(side), round(side)), (x + w / 2, y + h / 2))
    return cv2.resize(patch, (size[1], size[0]), interpolation=cv2.INTER_AREA)


def scale_box(box: Box, factor: float) -> Box:
    return tuple(round(v * factor) for v in box)


def draw_labels(rgb: np.ndarray, boxes: list[Box], labels: list[str]) -> np.ndarray:
    """Copy of `rgb` with each box outlined and its label on a filled strip above it (below when at the top edge)."""
    out = rgb.copy()
    thick = max(1, round(max(rgb.shape[:2]) / 400))
    font_scale = max(0.4, max(rgb.shape[:2]) / 1000)
    for (x, y, w, h), label in zip(boxes, labels, strict=True):
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 220, 0), thick)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
        top = y - th - base - 2 * thick if y >= th + base + 2 * thick else y + h
        cv2.rectangle(out, (x, top), (x + tw + 2 * thick, top + th + base + 2 * thick), (0, 220, 0), cv2.FILLED)
        origin = (x + thick, top + th + thick)
        cv2.putText(out, label, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thick, cv2.LINE_AA)
    return out
