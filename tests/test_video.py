"""Video input: a real MP4 written with OpenCV, through the CLI: per-frame table, tracking ids, annotated copy."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline import predict  # noqa: E402
from pipeline.classes import FER2013_LABELS  # noqa: E402
from pipeline.serve import video  # noqa: E402
from tests.helpers import save_model, scene, tiny_model  # noqa: E402

FPS = 10


def clip(path: Path, frames: int = 12) -> Path:
    """Two astronaut heads drifting right on a grey wall, one step per frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (640, 360))
    for i in range(frames):
        rgb, _ = scene(640, 360, [(20 + 4 * i, 60, 0.8), (360 + 3 * i, 40, 1.0)], seed=0)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_model(root, "tiny", tiny_model(0))
    return root


def test_video_gives_a_per_frame_table_with_stable_ids_and_an_annotated_copy(models_dir, tmp_path, capsys):
    source = clip(tmp_path / "walk.mp4")
    out = tmp_path / "marked.mp4"
    predict.main(["--models-dir", str(models_dir), "--model", "tiny", "--every", "3", "--frames", str(tmp_path / "t"),
                  "--annotate", str(out), "--json", str(source)])  # returns: exit status 0
    report = json.loads(capsys.readouterr().out)
    (entry,) = report["videos"]
    rows = entry["frames"]
    assert entry["video"] == str(source) and entry["face_found"] is True
    assert sorted({r["frame"] for r in rows}) == [0, 3, 6, 9]
    assert [r["time_s"] for r in rows if r["face"] == 1] == [0.0, 0.3, 0.6, 0.9]
    assert {r["face"] for r in rows} == {1, 2}  # two people, two ids, kept over the whole clip
    for frame in (0, 3, 6, 9):
        by_id = {r["face"]: r["x"] for r in rows if r["frame"] == frame}
        assert by_id[1] < by_id[2]  # the left head keeps id 1
    with open(tmp_path / "t" / "walk.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["time_s", "frame", "face", "x", "y", "w", "h", "emotion", "probability", *FER2013_LABELS]
    assert len(table) == len(rows) == len(json.loads((tmp_path / "t" / "walk.json").read_text()))
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 12 and capture.get(cv2.CAP_PROP_FPS) == FPS
    ok, first = capture.read()
    capture.release()
    assert ok and first.shape == (360, 640, 3)


def test_tracker_keeps_ids_through_a_missed_frame_and_opens_new_ones():
    tracker = video.Tracker()
    assert tracker.assign([(0, 0, 50, 50), (200, 0, 50, 50)]) == [1, 2]
    assert tracker.assign([(205, 2, 50, 50)]) == [2]
    assert tracker.assign([(4, 0, 50, 50), (210, 0, 50, 50), (400, 0, 50, 50)]) == [1, 2, 3]


def test_every_must_be_positive(models_dir, tmp_path):
    from pipeline.errors import PipelineError
    from pipeline.serve import api, detect

    with pytest.raises(PipelineError, match="--every must be 1 or more, not 0"):
        video.analyse_video(clip(tmp_path / "c.mp4", 2), api.load_classifier(models_dir / "tiny.keras"),
                            detect.load_detector("lbp"), every=0)

