"""Videos: every n-th frame through detection and one model, faces tracked so one person keeps one id.

The result is a per-frame table (time, frame, face id, box, emotion, probabilities), written as CSV and JSON,
and optionally a copy of the video with boxes and labels (each frame shows the latest sampled frame's faces).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline import atomic
from pipeline.errors import PipelineError
from pipeline.serve import api, detect, draw, images

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
# A track survives this many sampled frames without its face (a blink of the detector, a turned head).
MAX_MISSES = 5
TRACK_IOU = 0.3


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


class Tracker:
    """Greedy IoU matching of each sampled frame's boxes to the live tracks; unmatched boxes open new ids."""

    def __init__(self) -> None:
        self.tracks: dict[int, tuple[detect.Box, int]] = {}  # id → (last box, sampled frames since seen)
        self.next_id = 1

    def assign(self, boxes: list[detect.Box]) -> list[int]:
        pairs = sorted(((detect.iou(b, t[0]), i, tid) for i, b in enumerate(boxes) for tid, t in self.tracks.items()), reverse=True)
        ids: dict[int, int] = {}
        for score, i, tid in pairs:
            if score >= TRACK_IOU and i not in ids and tid not in ids.values():
                ids[i] = tid
        for i in range(len(boxes)):
            if i not in ids:
                ids[i], self.next_id = self.next_id, self.next_id + 1
        seen = {ids[i]: (box, 0) for i, box in enumerate(boxes)}
        aged = {tid: (box, misses + 1) for tid, (box, misses) in self.tracks.items() if tid not in seen and misses < MAX_MISSES}
        self.tracks = aged | seen
        return [ids[i] for i in range(len(boxes))]


def frames(path: str | Path, every: int, decode_all: bool) -> Iterator[tuple[int, float, bool, np.ndarray | None]]:
    """(index, seconds, sampled, RGB) for every frame; only sampled frames (every `every`-th) are decoded,
    unless decode_all (an annotated copy needs them all)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise PipelineError("not a video OpenCV can read (unknown format, or no such file)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    try:
        index = 0
        while capture.grab():
            sampled = index % every == 0
            rgb = None
            if sampled or decode_all:
                ok, bgr = capture.retrieve()
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None
            yield index, index / fps, sampled and rgb is not None, rgb
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise PipelineError("the video has no frame OpenCV can decode")


def analyse_video(path: str | Path, classifier: api.Classifier, detector: detect.Detector, every: int = 1,
                  annotate_to: Path | None = None) -> list[dict[str, Any]]:
    """One row per face per sampled frame; with `annotate_to`, also the annotated video (.mp4)."""
    if every < 1:
        raise PipelineError(f"--every must be 1 or more, not {every}")
    tracker, rows, writer, marks = Tracker(), [], None, ([], [])
    try:
        for index, seconds, sampled, rgb in frames(path, every, decode_all=annotate_to is not None):
            if sampled:
                faces = api.classify(classifier, api.locate(images.to_photo(rgb), detector)[0])
                ids = tracker.assign([f.box for f in faces])
                rows += [frame_row(index, seconds, fid, f) for fid, f in zip(ids, faces, strict=True)]
                marks = ([f.box for f in faces], [f"#{fid} {f.label}" for fid, f in zip(ids, faces, strict=True)])
            if annotate_to is not None and rgb is not None:
                writer = writer or _writer(annotate_to, path, rgb.shape)
                writer.write(cv2.cvtColor(draw.draw_labels(rgb, *marks), cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return rows


def _writer(out: Path, source: str | Path, shape: tuple[int, ...]) -> cv2.VideoWriter:
    """An MP4 writer at the source's frame rate; refused with one line when OpenCV cannot write there."""
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    capture.release()
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (shape[1], shape[0]))
    if not writer.isOpened():
        raise PipelineError(f"cannot write the annotated video {out}: use a .mp4 name in a writable folder")
    return writer


def frame_row(index: int, seconds: float, face_id: int, face: api.Face) -> dict[str, Any]:
    x, y, w, h = face.box
    return {"time_s": round(seconds, 3), "frame": index, "face": face_id, "x": x, "y": y, "w": w, "h": h,
            "emotion": face.emotion, "probability": round(face.probability, 4),
            **{c: round(p, 4) for c, p in face.probabilities.items()}}


def write_table(rows: list[dict[str, Any]], classes: tuple[str, ...], csv_path: Path) -> None:
    """The rows as CSV at `csv_path` and as JSON beside it (.json); both appear whole or not at all."""
    columns = ["time_s", "frame", "face", "x", "y", "w", "h", "emotion", "probability", *classes]
    with atomic.atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    atomic.write_json(csv_path.with_suffix(".json"), rows)
