"""Carry the train stage's inputs to a machine that takes only a small upload (a lent GPU: 64 MiB a call with
the repository) and lay them out there as the pipeline's data folders, so `python -m pipeline.train` and
`pipeline.evaluate` run on them unchanged. Images travel as lossless PNG mosaics of 64x64 faces (FER2013's
train and val splits: 51.9 MB packed against 70.2 MB of raw pixels); labels, targets and the small files as
they are.

    python -m benchmarks.remote_splits pack data .remote/data --splits train val
    python -m benchmarks.remote_splits unpack .remote/data data      # there, then: python -m pipeline.train <model>
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import PipelineError, run_cli

SPLIT_FILES = {"train": "balanced/train.npz", "val": "prepared/val.npz", "test": "prepared/test.npz"}
SMALL_FILES = ("prepared/classes.json", "balanced/class_weights.json", "distilled/targets.npz", "distilled/teacher.json")
TILES = 64  # faces a mosaic side: 3072x3072 px


def to_mosaics(images: np.ndarray) -> list[np.ndarray]:
    """(N, 48, 48) uint8 → mosaics of TILES x TILES faces, row-major, the last padded with black faces."""
    n, h, w = images.shape
    per = TILES * TILES
    padded = np.concatenate([images, np.zeros((-n % per, h, w), images.dtype)])
    return [m.reshape(TILES, TILES, h, w).transpose(0, 2, 1, 3).reshape(TILES * h, TILES * w) for m in padded.reshape(-1, per, h, w)]


def from_mosaics(mosaics: list[np.ndarray], n: int, size: int = 48) -> np.ndarray:
    faces = [m.reshape(TILES, size, TILES, size).transpose(0, 2, 1, 3).reshape(-1, size, size) for m in mosaics]
    return np.concatenate(faces)[:n]


def copy_small_files(source: Path, target: Path) -> None:
    for name in SMALL_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target / name)


def pack(data: Path, out: Path, splits: list[str]) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for split in splits:
        with np.load(data / SPLIT_FILES[split]) as arrays:
            rest = {k: arrays[k] for k in arrays.files if k != "x"}
            images = arrays["x"]
        np.savez_compressed(out / f"{split}.npz", n=len(images), **rest)
        for i, mosaic in enumerate(to_mosaics(images)):
            cv2.imwrite(str(out / f"{split}_{i:02d}.png"), mosaic, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    copy_small_files(data, out)


def unpack(packed: Path, data: Path) -> None:
    if not packed.is_dir():
        raise PipelineError(f"{packed} not found: make it with `python -m benchmarks.remote_splits pack`")
    for split, name in SPLIT_FILES.items():
        if not (packed / f"{split}.npz").exists():
            continue
        with np.load(packed / f"{split}.npz") as arrays:
            rest = {k: arrays[k] for k in arrays.files if k != "n"}
            n = int(arrays["n"])
        mosaics = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(packed.glob(f"{split}_*.png"))]
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        np.savez(data / name, x=from_mosaics(mosaics, n), **rest)
    copy_small_files(packed, data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack")
    packing.add_argument("data", type=Path, help="a pipeline's data/ folder after `dvc repro distill`")
    packing.add_argument("out", type=Path)
    packing.add_argument("--splits", nargs="+", choices=list(SPLIT_FILES), default=list(SPLIT_FILES))
    unpacking = commands.add_parser("unpack")
    unpacking.add_argument("packed", type=Path)
    unpacking.add_argument("data", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.data, args.out, args.splits)
    else:
        unpack(args.packed, args.data)


if __name__ == "__main__":
    run_cli(main)
