"""Decode each source format into one table of images: uint8 (N, 48, 48) plus a metadata frame.

Bad rows are collected, not raised, so the prepare stage can drop or refuse them by `clean.on_bad`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import train_test_split

from pipeline.classes import FER2013_LABELS, FERPLUS_VOTE_COLUMNS
from pipeline.errors import PipelineError

SIDE = 48
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FOLDER_TO_SPLIT = {"train": "train", "training": "train", "test": "test", "testing": "test"}


@dataclass
class Decoded:
    """Images with one metadata row each: split, label (canonical name), row (CSV row or -1), source."""

    images: np.ndarray
    meta: pd.DataFrame
    bad: list[str] = field(default_factory=list)

    def take(self, mask: np.ndarray) -> Decoded:
        return Decoded(self.images[mask], self.meta[mask].reset_index(drop=True), self.bad)


def decode_fer2013_csv(text: str, name: str = "fer2013.csv") -> Decoded:
    """Parse the challenge CSV (`emotion,pixels,Usage`); the official splits are kept."""
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    missing = {"emotion", "pixels", "Usage"} - set(frame.columns)
    if missing:
        raise PipelineError(f"{name}: missing column(s) {', '.join(sorted(missing))}: is this the FER2013 challenge CSV?")
    images, ok, bad = _parse_pixels(frame, name)
    meta = pd.DataFrame(
        {
            "split": frame.Usage.map(USAGE_TO_SPLIT),
            "label": [FER2013_LABELS[int(e)] if o else "" for e, o in zip(frame.emotion, ok)],
            "row": np.arange(len(frame)),
            "source": [f"{name}:{i + 2}" for i in range(len(frame))],
        }
    )
    return Decoded(images[ok], meta[ok].reset_index(drop=True), bad)


def _parse_pixels(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Parse all pixel strings in one C-level pass; only rows that look wrong are checked one by one."""
    n = len(frame)
    labels = pd.to_numeric(frame.emotion, errors="coerce")
    suspect = (
        (frame.pixels.str.count(" ") != SIDE * SIDE - 1)
        | ~frame.pixels.str.fullmatch(r"[0-9 ]+")
        | ~labels.between(0, len(FER2013_LABELS) - 1)
        | (labels != labels.round())
        | ~frame.Usage.isin(list(USAGE_TO_SPLIT))
    ).to_numpy(copy=True)
    images = np.zeros((n, SIDE, SIDE), np.uint8)
    good = np.flatnonzero(~suspect)
    if len(good):
        values = np.fromstring(" ".join(frame.pixels.iloc[good]), dtype=np.int64, sep=" ").reshape(-1, SIDE, SIDE)
        suspect[good[(values > 255).any(axis=(1, 2))]] = True
        images[good] = np.clip(values, 0, 255)
    bad = [f"{name} row {i + 2}: {_row_problem(frame.emotion[i], frame.pixels[i], frame.Usage[i])}" for i in np.flatnonzero(suspect)]
    return images, ~suspect, bad


def _row_problem(emotion: str, pixels: str, usage: str) -> str:
    if not emotion.isdigit() or int(emotion) >= len(FER2013_LABELS):
        return f"unknown emotion label {emotion!r}"
    if usage not in USAGE_TO_SPLIT:
        return f"unknown Usage {usage!r}"
    values = pixels.split()
    if not all(v.isdigit() for v in values):
        return "non-numeric pixels"
    if len(values) != SIDE * SIDE:
        return f"{len(values)} pixels, expected {SIDE * SIDE}"
    return "pixel value outside 0-255"


def decode_image_folders(members, name: str, val_fraction: float, seed: int) -> Decoded:
    """Read `<split>/<class>/<file>` image folders (msambare and apollo2506 layouts).

    The folders only have train and test, so a seeded stratified slice of train becomes val.
    """
    images, rows, bad = [], [], []
    for path, data in members:
        parts = PurePosixPath(path).parts
        split = next((FOLDER_TO_SPLIT[p.lower()] for p in parts if p.lower() in FOLDER_TO_SPLIT), None)
        label = parts[-2].lower() if len(parts) >= 2 else ""
        if split is None or label not in FER2013_LABELS:
            bad.append(f"{name}:{path}: not under <train|test>/<emotion>/")
            continue
        try:
            image = decode_image(data)
        except ValueError as err:
            bad.append(f"{name}:{path}: {err}")
            continue
        images.append(image)
        rows.append({"split": split, "label": label, "row": -1, "source": f"{name}:{path}"})
    if not rows:
        raise PipelineError(f"{name}: no images under <train|test>/<emotion>/ folders: is this the right archive?")
    meta = pd.DataFrame(rows)
    meta["split"] = split_validation(meta, val_fraction, seed)
    return Decoded(np.stack(images), meta, bad)


def decode_image(data: bytes) -> np.ndarray:
    """Any image file → 48x48 uint8 grayscale; ValueError when it is not a readable image."""
    if not data:
        raise ValueError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("L")
            if image.size != (SIDE, SIDE):
                image = image.resize((SIDE, SIDE), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"unreadable image ({err.__class__.__name__})") from err


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


def read_ferplus_votes(text: str, n_rows: int, name: str = "fer2013new.csv") -> np.ndarray:
    """FER+ votes as int (N, 10) in FERPLUS_VOTE_COLUMNS order, aligned row by row with fer2013.csv."""
    frame = pd.read_csv(io.StringIO(text))
    missing = set(FERPLUS_VOTE_COLUMNS) - set(frame.columns)
    if missing:
        raise PipelineError(f"{name}: missing vote column(s) {', '.join(sorted(missing))}: is this FER+ fer2013new.csv?")
    if len(frame) != n_rows:
        raise PipelineError(f"{name}: {len(frame)} rows but fer2013.csv has {n_rows}: the two files must come from the same release")
    votes = frame[list(FERPLUS_VOTE_COLUMNS)]
    if votes.isna().any().any() or (votes < 0).any().any():
        raise PipelineError(f"{name}: vote counts must be non-negative integers")
    return votes.to_numpy(dtype=np.int64)
