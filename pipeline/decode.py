"""Decode each source format into one table of images: uint8 (N, 48, 48) plus a metadata frame.

Bad rows are collected, not raised, so the prepare stage can drop or refuse them by `clean.on_bad`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.model_selection import train_test_split

from pipeline.classes import FER2013_LABELS, FERPLUS_VOTE_COLUMNS
from pipeline.errors import PipelineError

SIDE = 48
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FOLDER_TO_SPLIT = {"train": "train", "training": "train", "test": "test", "testing": "test"}
MAX_IMAGE_BYTES = 20 << 20  # a 48x48 face is a few kB; the largest in the real archives is under 100 kB
MAX_IMAGE_PIXELS = 4096 * 4096  # checked from the header, before Pillow decompresses anything
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}  # scaled 0-65535 → 0-255, never clipped


@dataclass
class Decoded:
    """Images with one metadata row each: split, label (canonical name), row (CSV row or -1), source."""

    images: np.ndarray
    meta: pd.DataFrame
    bad: list[str] = field(default_factory=list)

    def take(self, mask: np.ndarray) -> Decoded:
        return Decoded(self.images[mask], self.meta[mask].reset_index(drop=True), self.bad)


def text_of(data: bytes) -> str:
    """UTF-8 text (a BOM is dropped); undecodable bytes become U+FFFD, so only their rows are refused."""
    return data.decode("utf-8-sig", errors="replace")


def read_records(text: str, name: str, columns: tuple[str, ...]) -> tuple[pd.DataFrame, dict[int, str]]:
    """Every data record of a CSV as strings, one frame row per record (the row index keeps FER+ alignment).

    A record with the wrong number of fields or undecodable bytes stays as an empty row, its problem
    in the returned {row index: reason}: pandas would stop at the first one with a traceback.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header = next(reader, [])
    missing = set(columns) - set(header)
    if missing:
        raise PipelineError(f"{name}: missing column(s) {', '.join(sorted(missing))}: is this the right file?")
    index = [header.index(c) for c in columns]
    rows, bad = [], {}
    try:
        for record in reader:
            if len(record) != len(header):
                bad[len(rows)] = f"{len(record)} fields, expected {len(header)}"
                record = [""] * len(header)
            elif any("\ufffd" in field for field in record):
                bad[len(rows)] = "bytes that are not UTF-8 text"
            rows.append([record[i] for i in index])
    except csv.Error as err:  # an unmatched quote or a NUL byte: the rest of the file cannot be split into rows
        raise PipelineError(f"{name} row {reader.line_num}: {err}: the file is damaged, download it again") from None
    return pd.DataFrame(rows, columns=list(columns), dtype=str), bad


def decode_fer2013_csv(text: str, name: str = "fer2013.csv") -> Decoded:
    """Parse the challenge CSV (`emotion,pixels,Usage`); the official splits are kept."""
    frame, structure = read_records(text, name, ("emotion", "pixels", "Usage"))
    images, ok, bad = _parse_pixels(frame, name, structure)
    meta = pd.DataFrame(
        {
            "split": frame.Usage.map(USAGE_TO_SPLIT),
            "label": [FER2013_LABELS[int(e)] if o else "" for e, o in zip(frame.emotion, ok)],
            "row": np.arange(len(frame)),
            "source": [f"{name}:{i + 2}" for i in range(len(frame))],
        }
    )
    return Decoded(images[ok], meta[ok].reset_index(drop=True), bad)


def _parse_pixels(frame: pd.DataFrame, name: str, structure: dict[int, str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Parse all pixel strings in one C-level pass; only rows that look wrong are checked one by one."""
    n = len(frame)
    labels = pd.to_numeric(frame.emotion.where(frame.emotion.str.fullmatch(r"[0-9]+")), errors="coerce")
    suspect = (
        (frame.pixels.str.count(" ") != SIDE * SIDE - 1)
        | ~frame.pixels.str.fullmatch(r"[0-9 ]+")
        | ~labels.between(0, len(FER2013_LABELS) - 1)
        | ~frame.Usage.isin(list(USAGE_TO_SPLIT))
    ).to_numpy(copy=True)
    suspect[list(structure)] = True
    images = np.zeros((n, SIDE, SIDE), np.uint8)
    good = np.flatnonzero(~suspect)
    if len(good):
        values = np.fromstring(" ".join(frame.pixels.iloc[good]), dtype=np.int64, sep=" ").reshape(-1, SIDE, SIDE)
        suspect[good[(values > 255).any(axis=(1, 2))]] = True
        images[good] = np.clip(values, 0, 255)
    bad = [
        f"{name} row {i + 2}: {structure.get(i) or _row_problem(frame.emotion[i], frame.pixels[i], frame.Usage[i])}"
        for i in np.flatnonzero(suspect)
    ]
    return images, ~suspect, bad


def _row_problem(emotion: str, pixels: str, usage: str) -> str:
    if not (emotion.isascii() and emotion.isdigit()) or int(emotion) >= len(FER2013_LABELS):
        return f"unknown emotion label {emotion!r}"
    if usage not in USAGE_TO_SPLIT:
        return f"unknown Usage {usage!r}"
    values = pixels.split()
    if not all(v.isdigit() for v in values):
        return "non-numeric pixels"
    if len(values) != SIDE * SIDE:
        return f"{len(values)} pixels, expected {SIDE * SIDE}"
    return "pixel value outside 0-255"


def decode_image_folders(members, name: str, val_fraction: float, seed: int, folders: set[str] = frozenset()) -> Decoded:
    """Read `<split>/<class>/<file>` image folders (msambare and apollo2506 layouts).

    The folders only have train and test, so a seeded stratified slice of train becomes val. A class
    folder (from `folders`, the archive's directory entries, or a file's parent) left without a single
    readable image is listed as bad: a class missing from a split would otherwise go unnoticed.
    """
    images, rows, bad = [], [], []
    class_folders = {f.rstrip("/") for f in folders if _class_of(f.rstrip("/") + "/x")[0] is not None}
    found = set()
    for path, data in members:
        split, label = _class_of(path)
        folder = str(PurePosixPath(path).parent)
        if split is not None:
            class_folders.add(folder)
        if split is None:
            bad.append(f"{name}:{path}: not under <train|test>/<emotion>/")
            continue
        try:
            image = decode_image(data)
        except ValueError as err:
            bad.append(f"{name}:{path}: {err}")
            continue
        found.add(folder)
        images.append(image)
        rows.append({"split": split, "label": label, "row": -1, "source": f"{name}:{path}"})
    bad += [f"{name}:{folder}/: empty class folder (no readable image)" for folder in sorted(class_folders - found)]
    if not rows:
        raise PipelineError(f"{name}: no images under <train|test>/<emotion>/ folders: is this the right archive?")
    meta = pd.DataFrame(rows)
    meta["split"] = split_validation(meta, val_fraction, seed)
    return Decoded(np.stack(images), meta, bad)


def _class_of(path: str) -> tuple[str | None, str]:
    """(split, emotion) of a file under `<split>/<emotion>/`, split None when the path is not in that layout."""
    parts = PurePosixPath(path).parts
    split = next((FOLDER_TO_SPLIT[p.lower()] for p in parts[:-2] if p.lower() in FOLDER_TO_SPLIT), None)
    label = parts[-2].lower() if len(parts) >= 2 else ""
    return (split, label) if label in FER2013_LABELS else (None, label)


def decode_image(data: bytes) -> np.ndarray:
    """Any image file → 48x48 uint8 grayscale; ValueError, with the reason, when it cannot be one."""
    if not data:
        raise ValueError("empty file")
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"{len(data):,} bytes, over the {MAX_IMAGE_BYTES:,}-byte limit for one image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:  # the header is read, the pixels not yet: a bomb stops here
                raise ValueError(f"{width}x{height} pixels, over the {MAX_IMAGE_PIXELS:,}-pixel limit (decompression bomb?)")
            return _to_gray48(image)
    except ValueError:
        raise
    except Image.DecompressionBombError as err:  # over Pillow's own limit: refused while reading the header
        raise ValueError(f"decompression bomb: {str(err).split(', could be')[0]}") from err
    except Exception as err:  # noqa: BLE001  Pillow's format plugins raise many kinds on hostile bytes
        raise ValueError(f"unreadable image ({err.__class__.__name__})") from err


def _to_gray48(image: Image.Image) -> np.ndarray:
    """8-bit grayscale at 48x48; 16-bit images are scaled (Pillow's convert("L") would clip them to white)."""
    if image.mode in SIXTEEN_BIT_MODES:
        wide = np.asarray(image).astype(np.uint32)
        image = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))
    elif image.mode in ("I", "F"):
        raise ValueError(f"{image.mode}-mode ({'32-bit integer' if image.mode == 'I' else 'float'}) pixels have no known range: save it as 8 or 16 bits")
    image = image.convert("L")
    if image.size != (SIDE, SIDE):
        image = image.resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def split_validation(meta: pd.DataFrame, val_fraction: float, seed: int) -> pd.Series:
    """Move a stratified, seeded `val_fraction` of train to val."""
    split = meta["split"].copy()
    train = meta.index[split == "train"]
    if val_fraction == 0 or len(train) == 0:
        return split
    counts = meta.loc[train, "label"].value_counts()
    stratify = meta.loc[train, "label"] if counts.min() >= 2 else None
    _, val = train_test_split(train, test_size=val_fraction, random_state=seed, stratify=stratify)
    split[val] = "val"
    return split


def read_ferplus_votes(text: str, n_rows: int, name: str = "fer2013new.csv") -> tuple[np.ndarray, dict[int, str]]:
    """FER+ votes as int (N, 10) in FERPLUS_VOTE_COLUMNS order, aligned row by row with fer2013.csv.

    Returns the votes and {row index: reason} for rows whose votes are not non-negative integers; their
    votes are zero, and the prepare stage drops or refuses the image they belong to.
    """
    frame, bad = read_records(text, name, FERPLUS_VOTE_COLUMNS)
    if len(frame) != n_rows:
        raise PipelineError(f"{name}: {len(frame)} rows but fer2013.csv has {n_rows}: the two files must come from the same release")
    valid = frame.apply(lambda column: column.str.fullmatch(r"\s*[0-9]{1,6}\s*")).to_numpy()
    for i in np.flatnonzero(~valid.all(axis=1)):
        column = FERPLUS_VOTE_COLUMNS[int(np.argmin(valid[i]))]
        bad.setdefault(int(i), f"vote {frame[column][i]!r} for {column!r} is not a non-negative integer")
    votes = np.zeros((len(frame), len(FERPLUS_VOTE_COLUMNS)), np.int64)
    ok = valid.all(axis=1)
    votes[ok] = frame[ok].to_numpy().astype(np.int64)
    return votes, bad
