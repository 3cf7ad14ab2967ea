"""The face detector on FER2013 faces pasted into scikit-image photos (made at test time from the read-only FER
files, never saved) and on scikit-image photos without a face; plus its pyramid and box clipping."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import detectors as bench  # noqa: E402
from pipeline.serve import detect  # noqa: E402
from tests.helpers import ASTRONAUT_FACE  # noqa: E402

# The first 20 pictures of the benchmark's seed-0 draw (benchmarks/results/detectors.md measures all 100 and a
# second draw: recall 0.95, precision >= 0.97 on each).
PICTURES, SEED = 20, 0


@pytest.fixture(scope="module")
def detector() -> detect.Detector:
    return detect.load_detector()


@pytest.fixture(scope="module")
def pasted(shared_datasets) -> list[tuple[np.ndarray, list[detect.Box]]]:
    faces = bench.fer_private_test(shared_datasets, 3 * PICTURES, SEED)
    return bench.pasted_set(faces, PICTURES, SEED)


def test_finds_95_percent_of_pasted_fer_faces_with_few_false_ones(detector, pasted):
    found = [[d.box for d in detector(rgb)] for rgb, _ in pasted]
    score = bench.score(found, [boxes for _, boxes in pasted])
    assert score["faces"] >= 25  # enough faces for the rates to mean something
    assert score["recall"] >= 0.95, score
    assert score["precision"] >= 0.95, score


@pytest.mark.parametrize("name", ["rocket", "coffee"])
def test_photos_without_a_face_give_no_detection(detector, name):
    assert detector(bench.photo(name)) == []


def test_the_astronaut_is_found_with_eyes_and_mouth_in_order(detector):
    (face,) = detector(bench.photo("astronaut"))
    assert detect.iou(face.box, ASTRONAUT_FACE) > 0.6
    (left_eye, right_eye, nose, mouth_left, mouth_right) = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_a_face_cut_by_the_border_gets_a_box_inside_the_picture(detector):
    astronaut = bench.photo("astronaut")
    cut = np.ascontiguousarray(astronaut[:300, 200:400])  # the left cheek is off the left edge
    (face,) = detector(cut)
    x, y, w, h = face.box
    assert x == 0 and y >= 0 and x + w <= cut.shape[1] and y + h <= cut.shape[0]


def test_pyramid_runs_from_the_smallest_face_to_the_whole_picture():
    scales = detect.pyramid(240, 320, min_face=24, scale_factor=0.8)
    assert scales[0] == 12 / 24  # a 24 px face fills PNet's 12 px window
    assert 240 * scales[-1] >= 12 > 240 * scales[-1] * 0.8  # the last level still holds one window
    np.testing.assert_allclose(np.diff(np.log(scales)), np.log(0.8))
    assert detect.pyramid(10, 300, min_face=24, scale_factor=0.8) == []
