"""Any picture in, an upright RGB working copy out: bytes of any format PIL reads, a path, or a numpy array.

Decoding refuses empty, non-image, truncated and oversized files with one line each; the working copy is bounded
(WORK_SIDE) so memory is too, and `scale` maps original pixels to working pixels so boxes come back in the former.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from pipeline.errors import PipelineError


# Checked from the header, before decoding: a 50 MP camera photo passes, a decompression bomb does not.
MAX_PIXELS = 64_000_000
# Photos are worked on at most this long: enough for faces of a few dozen pixels, bounded memory.
WORK_SIDE = 1600


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
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))  # a sliver keeps 1 px
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
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


def to_photo(image: str | Path | bytes | np.ndarray | Image.Image) -> Photo:
    """A path, encoded bytes, a PIL image, or an array (H, W) grey / (H, W, 3) RGB / (H, W, 4) RGBA, uint8 or float 0..1."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return read_photo(bytes(image))
    if isinstance(image, (str, Path)):
        try:
            return read_photo(Path(image).read_bytes())
        except OSError as err:
            raise PipelineError(f"cannot read {image}: {err.strerror or err}") from err
    if isinstance(image, Image.Image):
        return photo_from_image(image)
    if isinstance(image, np.ndarray):
        return photo_from_image(Image.fromarray(array_to_uint8(image)))
    raise PipelineError(f"cannot read a {type(image).__name__}: pass a path, image bytes or a numpy array")


def array_to_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 (H, W), (H, W, 3) or (H, W, 4); floats are taken as 0..1, as scikit-image and matplotlib use them."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)) or 0 in array.shape:
        raise PipelineError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), not {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(np.nan_to_num(array) * 255 + 0.5, 0, 255).astype(np.uint8)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    raise PipelineError(f"an image array must be uint8 or float 0..1, not {array.dtype}")


def grey(photo: Photo) -> np.ndarray:
    return cv2.cvtColor(photo.rgb, cv2.COLOR_RGB2GRAY)
