"""The Python API (pipeline.serve), the model-files module and the drawing helper, on real models and photos."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline import modelfiles  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from pipeline.serve import Recognizer, align, api, cli, detect, draw  # noqa: E402
from tests.helpers import ASTRONAUT_FACE, save_model, tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory) -> Recognizer:
    root = tmp_path_factory.mktemp("models")
    save_model(root, "tiny", tiny_model(0))
    return Recognizer("tiny", models_dirs=[root])


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def test_path_bytes_and_arrays_give_the_same_faces(recognizer, tmp_path):
    astronaut = skdata.astronaut()
    Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    results = [recognizer(x) for x in (tmp_path / "astronaut.png", str(tmp_path / "astronaut.png"),
                                       png_bytes(astronaut), astronaut, astronaut / 255.0)]
    first = results[0]
    assert first.face_found and (first.width, first.height) == (512, 512) and len(first.faces) == 1
    face = first.faces[0]
    assert detect.iou(face.box, ASTRONAUT_FACE) > 0.6
    assert face.landmarks.shape == (5, 2) and face.landmarks[0, 0] < face.landmarks[1, 0]  # image-left eye first
    assert face.crop.shape == (48, 48) and face.crop.dtype == np.uint8
    assert abs(sum(face.probabilities.values()) - 1) < 1e-4 and face.emotion in face.probabilities
    for other in results[1:]:
        assert [f.box for f in other.faces] == [face.box]
        np.testing.assert_allclose(list(other.faces[0].probabilities.values()), list(face.probabilities.values()), atol=2e-3)


def test_a_picture_without_a_face_has_no_faces_unless_whole_image_is_asked(recognizer):
    rocket = skdata.rocket()
    plain = recognizer(rocket)
    assert plain.face_found is False and plain.faces == []
    whole = recognizer(rocket, whole_image=True)
    assert whole.face_found is False and [f.box for f in whole.faces] == [align.centre_square(640, 427)]


def test_the_detector_registry_is_what_the_cli_offers():
    choices = next(a.choices for a in cli._parser()._actions if a.dest == "detector")
    assert list(choices) == list(detect.DETECTORS) and detect.DEFAULT_DETECTOR in detect.DETECTORS


def test_unknown_detector_and_bad_arrays_say_what_to_do(recognizer):
    with pytest.raises(PipelineError, match=r"unknown face detector 'haar' \(choose one of: mtcnn, lbp\)"):
        detect.load_detector("haar")
    with pytest.raises(PipelineError, match=r"must be \(H, W\), \(H, W, 3\) or \(H, W, 4\), not \(2, 3, 5\)"):
        recognizer(np.zeros((2, 3, 5), np.uint8))
    with pytest.raises(PipelineError, match="cannot read a list"):
        recognizer([1, 2, 3])


def test_alignment_levels_a_tilted_face():
    astronaut = skdata.astronaut()
    tilted = np.asarray(Image.fromarray(astronaut).rotate(20, center=(224, 110)))
    find = detect.load_detector("mtcnn")
    upright, turned = find(astronaut)[0], find(tilted)[0]
    (lx, ly), (rx, ry) = turned.landmarks[:2]
    assert abs(np.degrees(np.arctan2(ry - ly, rx - lx))) > 12  # the eyes are tilted in the picture...
    grey = np.asarray(Image.fromarray(tilted).convert("L"))
    crop = align.aligned_crop(grey, turned).astype(float)
    reference = align.aligned_crop(np.asarray(Image.fromarray(astronaut).convert("L")), upright).astype(float)
    assert np.abs(crop - reference).mean() < 20  # ...and level in the crop, which matches the upright one's


def test_modelfiles_save_writes_both_files_and_refuses_a_model_without_classes(tmp_path):
    model = tiny_model(3)
    modelfiles.save_model(model, tmp_path / "m.keras", {"classes": ["a"] * 7, "data": {"source": "sample"}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.keras"]  # no temporary left behind
    assert json.loads((tmp_path / "m.json").read_text())["name"] == "m"
    assert modelfiles.load_model(tmp_path / "m.keras").count_params() == model.count_params()
    with pytest.raises(PipelineError, match="needs `classes`"):
        modelfiles.save_model(model, tmp_path / "n.keras", {})
    with pytest.raises(PipelineError, match=r"gone.keras not found: train it first \(`dvc repro train@gone`\)"):
        modelfiles.load_model(tmp_path / "gone.keras")


def test_the_shipped_model_comes_first_and_no_model_anywhere_is_one_clear_line(tmp_path, monkeypatch):
    shipped = tmp_path / "shipped" / "fer2013.keras"
    monkeypatch.setattr(modelfiles, "SHIPPED_MODEL", shipped)  # the repository's own may or may not be there yet
    with pytest.raises(PipelineError, match="no model to use: .*fer2013.keras is not there yet"):
        modelfiles.default_model([tmp_path])
    shipped.parent.mkdir()
    save_model(shipped.parent, "fer2013", tiny_model())
    save_model(tmp_path, "ensemble", tiny_model(1))
    assert modelfiles.default_model([tmp_path]) == shipped


@pytest.mark.parametrize("seed", range(5))
def test_labels_never_overlap_and_stay_on_the_canvas(seed):
    rng = np.random.default_rng(seed)
    canvas = (640, 480)
    boxes = [(int(rng.integers(-20, 600)), int(rng.integers(-20, 450)), int(rng.integers(20, 120)), int(rng.integers(20, 120)))
             for _ in range(8)]
    sizes = [(int(rng.integers(60, 200)), 24) for _ in boxes]
    rects = draw.label_layout(boxes, sizes, canvas)
    for i, (x, y, w, h) in enumerate(rects):
        assert 0 <= x and x + w <= canvas[0] and 0 <= y and y + h <= canvas[1]
        assert (w, h) == sizes[i]
        assert not any(draw._hits(rects[i], other) for other in rects[:i])


def test_installed_package_imports_from_outside_the_repository(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                            "--target", str(target), str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    probe = "import pipeline.serve as s, pipeline.modelfiles as m; print(s.__file__); print(callable(s.analyse))"
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [str(target / "pipeline" / "serve" / "__init__.py"), "True"]
