"""Cleaning rules as masks over a decoded table: True marks an image to drop.

Masks (not in-place filtering) let the prepare stage count what each rule removed.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from pipeline.classes import FERPLUS_LABELS

NONFACE = FERPLUS_LABELS.index("nonface")


def blank_mask(images: np.ndarray, min_std: float) -> np.ndarray:
    """Near-constant images (pixel std below `min_std`) carry no face."""
    return images.reshape(len(images), -1).std(axis=1) < min_std


def nonface_mask(votes: np.ndarray) -> np.ndarray:
    """Images whose FER+ annotators voted `NF` more than any emotion."""
    others = np.delete(votes, NONFACE, axis=1).max(axis=1)
    return votes[:, NONFACE] > others


def image_hashes(images: np.ndarray) -> np.ndarray:
    return np.array([hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest() for image in images])


def duplicate_mask(hashes: np.ndarray, splits: pd.Series) -> np.ndarray:
    """Repeats of an image within the same split; the first copy is kept."""
    return pd.DataFrame({"split": splits.to_numpy(), "hash": hashes}).duplicated().to_numpy()


def copied_from(hashes: np.ndarray, splits: np.ndarray, sources: tuple[str, ...]) -> np.ndarray:
    """True for each image whose pixels also sit in one of the `sources` splits (the image itself counts)."""
    return np.isin(hashes, hashes[np.isin(splits, sources)])


def leak_mask(hashes: np.ndarray, splits: pd.Series) -> np.ndarray:
    """Images that also sit in a later-evaluated split: train copies of val/test images, val copies of test ones.

    Dropping them from the training side keeps the test score honest.
    """
    splits = splits.to_numpy()
    later = {"train": ("val", "test"), "val": ("test",), "test": ()}
    mask = np.zeros(len(hashes), bool)
    for split, targets in later.items():
        mask |= (splits == split) & copied_from(hashes, splits, targets)
    return mask
