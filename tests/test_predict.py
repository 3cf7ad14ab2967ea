"""The predict CLI (pipeline.serve.cli) and picture decoding on real photos, a real (tiny) Keras model and real runs.

The faces are cut from scikit-image's astronaut photo (NASA, public domain), which ships inside its wheel.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from pipeline import modelfiles, predict  # noqa: E402
from pipeline.classes import FER2013_LABELS, FERPLUS_LABELS  # noqa: E402
from pipeline.serve import api, detect, images  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from tests.helpers import save_model, scene, tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def encode(rgb_or_img, fmt: str = "PNG", **kwargs) -> bytes:
    img = rgb_or_img if isinstance(rgb_or_img, Image.Image) else Image.fromarray(rgb_or_img)
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def centre_inside(box, rect) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return rect[0] <= cx <= rect[0] + rect[2] and rect[1] <= cy <= rect[1] + rect[3]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_model(root, "tiny", tiny_model(0))
    save_model(root, "ensemble", tiny_model(1))
    (root / ".cnn.tmp.x1y2.keras").write_bytes(b"half of a model an interrupted write left behind")
    return root


@pytest.fixture(scope="module")
def classifier(models_dir) -> api.Classifier:
    return api.load_classifier(models_dir / "tiny.keras")


@pytest.fixture(scope="module")
def detector():
    return detect.load_detector()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """Three faces of different sizes, one face, and a picture without any, as files."""
    root = tmp_path_factory.mktemp("photos")
    group, _ = scene(1000, 700, [(40, 60, 0.6), (330, 300, 1.0), (660, 80, 1.5)])
    single, _ = scene(400, 320, [(110, 30, 1.0)], seed=1)
    wall, _ = scene(500, 300, [], seed=2)
    paths = {"group": root / "group.png", "single": root / "single.jpg", "wall": root / "wall.png"}
    Image.fromarray(group).save(paths["group"])
    Image.fromarray(single).save(paths["single"], quality=92)
    Image.fromarray(wall).save(paths["wall"])
    return paths


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """predict.main in-process; SystemExit(2) is the partial-failure status, PipelineError propagates."""
    try:
        predict.main(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def boxes_of(rgb: np.ndarray, detector) -> list:
    return [d.box for d in detector(images.to_photo(rgb).rgb)]


# --- decoding any picture ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "CMYK", "I;16", "1"])
def test_every_colour_mode_decodes_to_rgb(mode):
    rgb, _ = scene(400, 320, [(110, 30, 1.0)], seed=1)
    img = Image.fromarray(rgb)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257)
        assert img.mode.startswith("I;16")
    else:
        img = img.convert(mode)
    photo = images.read_photo(encode(img, "JPEG" if mode == "CMYK" else "PNG"))
    assert photo.rgb.dtype == np.uint8 and photo.rgb.shape == (320, 400, 3)
    assert (photo.width, photo.height) == (400, 320)


def test_sixteen_bit_grey_is_rescaled_not_clipped():
    img = Image.fromarray(np.full((20, 30), 32896, np.uint16))  # 128 * 257
    assert abs(int(images.read_photo(encode(img)).rgb.mean()) - 128) <= 1


def test_transparent_background_becomes_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    assert images.read_photo(encode(Image.fromarray(rgba, "RGBA"))).rgb.min() == 255


def test_exif_rotation_is_applied(detector):
    rgb, placed = scene(400, 320, [(110, 30, 1.0)], seed=1)
    sideways = Image.fromarray(rgb).rotate(90, expand=True)  # stored turned left; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = images.read_photo(encode(sideways, "JPEG", exif=exif, quality=92))
    assert (photo.width, photo.height) == (400, 320) and photo.rgb.shape == (320, 400, 3)
    found = [d.box for d in detector(photo.rgb)]
    assert len(found) == 1 and centre_inside(found[0], placed[0])


def test_large_photo_is_downscaled_and_boxes_use_original_pixels(classifier, detector):
    rgb, placed = scene(4000, 3000, [(1500, 1000, 4.0)], seed=3)
    photo = images.read_photo(encode(rgb, "JPEG", quality=85))
    assert max(photo.rgb.shape[:2]) == images.WORK_SIDE
    located, face_found = api.locate(photo, detector)
    assert face_found and len(located) == 1
    assert centre_inside(located[0].box, placed[0])
    assert located[0].box[2] > 300  # a 4x head, ~90 px at 1x: the box is in original, not working, pixels


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: what a decompression bomb looks like before decoding."""
    png = bytearray(encode(Image.new("L", (1, 1))))
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"just some text, not a picture\n", "not an image"),
        (png_claiming(9_000, 9_000), "over the 64 MP limit"),
        (png_claiming(20_000, 20_000), "over the 64 MP limit"),
        (encode(np.zeros((200, 200, 3), np.uint8), "JPEG")[:300], "truncated or corrupt"),
        (encode(np.full((200, 200, 3), 99, np.uint8), "PNG")[:-40], "truncated or corrupt"),
    ],
    ids=["empty", "text", "over-limit", "bomb", "truncated-header", "truncated-data"],
)
def test_unusable_bytes_raise_one_clear_error(content, message):
    with pytest.raises(PipelineError, match=message):
        images.read_photo(content)


# --- models -----------------------------------------------------------------------------------------------------


def test_unknown_model_lists_the_available_ones(models_dir):
    with pytest.raises(PipelineError, match=r"no model 'cnn' in .* \(available: ensemble, tiny\)"):
        modelfiles.find_model("cnn", models_dir)


def test_empty_models_dir_says_to_run_the_pipeline(tmp_path):
    with pytest.raises(PipelineError, match="none: run `dvc repro` first"):
        modelfiles.find_model("cnn", tmp_path)


def test_model_path_outside_the_models_dir(models_dir, tmp_path):
    assert modelfiles.find_model(str(models_dir / "tiny.keras"), tmp_path) == models_dir / "tiny.keras"
    with pytest.raises(PipelineError, match="model file .* not found"):
        modelfiles.find_model(str(tmp_path / "gone.keras"), tmp_path)


def test_files_that_are_not_keras_models_are_refused(tmp_path, photos):
    with pytest.raises(PipelineError, match="is not a Keras model"):
        api.load_classifier(photos["single"])
    fake = tmp_path / "fake.keras"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(PipelineError, match="is not a loadable Keras model"):
        api.load_classifier(fake)


def test_model_needs_matching_class_names(tmp_path):
    path = save_model(tmp_path, "m", tiny_model(), classes=("happy", "sad"))
    with pytest.raises(PipelineError, match="outputs 7 classes but .* names 2"):
        api.load_classifier(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(PipelineError, match="m.json not found"):
        api.load_classifier(path)


def test_batches_are_split_but_results_match_one_call(classifier):
    x = np.random.default_rng(0).uniform(0, 255, (api.BATCH * 2 + 3, 48, 48, 1)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(classifier.model(x))
    np.testing.assert_allclose(api.predict_probabilities(classifier, x), expected, rtol=1e-5, atol=1e-6)


# --- the CLI, in-process ----------------------------------------------------------------------------------------


def test_json_output(models_dir, photos, capsys):
    code, out, _ = run_main(["--models-dir", str(models_dir), "--model", "tiny", "--json", str(photos["group"])], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["model"] == "tiny" and report["classes"] == list(FER2013_LABELS) and report["errors"] == []
    (group,) = report["images"]
    assert (group["image"], group["width"], group["height"]) == (str(photos["group"]), 1000, 700)
    assert group["face_found"] is True
    assert len(group["faces"]) == 3
    for face in group["faces"]:
        assert set(face) == {"box", "landmarks", "detector_score", "emotion", "probability", "probabilities"}
        assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
        assert len(face["landmarks"]) == 5
        assert list(face["probabilities"]) == list(FER2013_LABELS)
        assert abs(sum(face["probabilities"].values()) - 1) < 1e-3
        assert face["probabilities"][face["emotion"]] == face["probability"] == max(face["probabilities"].values())


def test_no_face_is_reported_as_such_with_exit_3(models_dir, photos, capsys):
    code, out, _ = run_main(["--models-dir", str(models_dir), "--model", "tiny", "--json", str(photos["wall"])], capsys)
    assert code == 3
    (wall,) = json.loads(out)["images"]
    assert wall["face_found"] is False and wall["faces"] == []


def test_whole_image_is_classified_only_when_asked(models_dir, photos, capsys):
    code, out, _ = run_main(["--models-dir", str(models_dir), "--model", "tiny", "--whole-image", "--json",
                             str(photos["wall"])], capsys)
    assert code == 0
    (wall,) = json.loads(out)["images"]
    assert wall["face_found"] is False and [f["box"] for f in wall["faces"]] == [[100, 0, 300, 300]]


def test_table_output(models_dir, photos, capsys):
    code, out, _ = run_main(["--models-dir", str(models_dir), "--model", "tiny",
                             str(photos["single"]), str(photos["wall"])], capsys)
    assert code == 3
    header, single, wall = out.strip().splitlines()
    assert header.split()[:4] == ["image", "face", "box", "(x"] and header.split()[-7:] == list(FER2013_LABELS)
    assert single.split()[:2] == [str(photos["single"]), "1"]
    assert wall.split() == [str(photos["wall"]), "-", "no", "face", "found"]


def test_ensemble_flag_uses_the_ensemble_model(models_dir, photos, capsys):
    code, out, _ = run_main(["--models-dir", str(models_dir), "--ensemble", "--json", str(photos["single"])], capsys)
    assert code == 0 and json.loads(out)["model"] == "ensemble"


@pytest.mark.parametrize("name, classes", [("ferplus", FERPLUS_LABELS[:8]), ("fer2013_fast", FER2013_LABELS)])
def test_a_shipped_model_is_found_by_name_without_models_dir(name, classes, photos, capsys):
    code, out, _ = run_main(["--model", name, "--json", str(photos["single"])], capsys)
    result = json.loads(out)
    assert code == 0 and result["model"] == name and result["classes"] == list(classes)
    assert len(result["images"][0]["faces"]) == 1


def test_without_a_model_name_or_a_shipped_model_the_ensemble_is_the_default(models_dir, photos, tmp_path, capsys,
                                                                             monkeypatch):
    monkeypatch.setattr(modelfiles, "SHIPPED_MODEL", tmp_path / "fer2013.keras")  # not shipped (yet)
    assert modelfiles.default_model(models_dir) == models_dir / "ensemble.keras"
    code, out, _ = run_main(["--models-dir", str(models_dir), "--json", str(photos["single"])], capsys)
    assert code == 0 and json.loads(out)["model"] == "ensemble"


def test_folder_input_takes_its_images_in_order(models_dir, photos, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "b.png").write_bytes(photos["wall"].read_bytes())
    (folder / "a.jpg").write_bytes(photos["single"].read_bytes())
    (folder / "notes.txt").write_text("not a picture, not taken")
    code, out, _ = run_main(["--models-dir", str(models_dir), "--model", "tiny", "--json", str(folder)], capsys)
    assert code == 3
    assert [i["image"] for i in json.loads(out)["images"]] == [str(folder / "a.jpg"), str(folder / "b.png")]


def test_annotate_one_image_writes_that_file(models_dir, photos, tmp_path, capsys):
    out_file = tmp_path / "marked.jpg"
    code, _, _ = run_main(["--models-dir", str(models_dir), "--model", "tiny", "--annotate", str(out_file),
                           str(photos["single"])], capsys)
    assert code == 0
    marked = np.asarray(Image.open(out_file).convert("RGB")).astype(int)
    original = np.asarray(Image.open(photos["single"]).convert("RGB")).astype(int)
    assert marked.shape == original.shape
    green = (marked[..., 1] > 180) & (marked[..., 0] < 80) & (marked[..., 2] < 80)
    assert green.sum() > 200  # the box and the label strip


def test_annotate_several_images_fills_a_folder(models_dir, photos, tmp_path, capsys):
    out_dir = tmp_path / "marked"
    code, _, _ = run_main(["--models-dir", str(models_dir), "--model", "tiny", "--annotate", str(out_dir),
                           str(photos["single"]), str(photos["wall"])], capsys)
    assert code == 3
    assert sorted(p.name for p in out_dir.iterdir()) == ["single.png", "wall.png"]
    wall = np.asarray(Image.open(out_dir / "wall.png").convert("RGB")).astype(int)
    assert wall.shape == (300, 500, 3)
    amber = (wall[..., 0] > 230) & (wall[..., 1] > 170) & (wall[..., 1] < 210) & (wall[..., 2] < 30)
    assert amber[:30, :200].sum() > 100  # the "no face found" notice, inside the picture's top-left corner


def test_annotate_to_a_non_image_name_fails_first(models_dir, photos, tmp_path):
    with pytest.raises(PipelineError, match="use an image extension"):
        predict.main(["--models-dir", str(models_dir), "--model", "tiny", "--annotate", str(tmp_path / "out.txt"),
                      str(photos["single"])])


def hostile_inputs(root: Path) -> dict[str, Path]:
    """Files that decode but break naive image code: slivers, a single pixel, an all-black frame, a float TIFF."""
    arrays = {
        "pixel.png": np.full((1, 1, 3), 200, np.uint8),
        "row.png": np.zeros((1, 5000, 3), np.uint8),
        "column.png": np.zeros((3000, 2, 3), np.uint8),
        "black.png": np.zeros((480, 640, 3), np.uint8),
    }
    paths = {}
    for name, array in arrays.items():
        paths[name] = root / name
        Image.fromarray(array).save(paths[name])
    paths["float.tiff"] = root / "float.tiff"
    Image.fromarray(np.full((40, 60), 0.5, np.float32)).save(paths["float.tiff"])
    paths["fake.jpg"] = root / "fake.jpg"
    paths["fake.jpg"].write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    paths["fake.mp4"] = root / "fake.mp4"
    paths["fake.mp4"].write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing else")
    return paths


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("pixel.png", None), ("row.png", None), ("column.png", None), ("black.png", None), ("float.tiff", None),
        ("fake.jpg", "image data is truncated or corrupt"),
        ("fake.mp4", "not a video OpenCV can read"),
    ],
)
def test_hostile_input_is_reported_alone_and_the_good_one_still_comes_out(name, error, models_dir, photos, tmp_path, capsys):
    bad = hostile_inputs(tmp_path)[name]
    code, out, err = run_main(["--models-dir", str(models_dir), "--model", "tiny", "--json", str(bad),
                               str(photos["single"])], capsys)
    report = json.loads(out)
    assert report["images"][-1]["image"] == str(photos["single"]) and report["images"][-1]["face_found"]
    if error is None:  # decodes fine, holds no face
        assert code == 3 and err == ""
        assert report["images"][0]["image"] == str(bad) and report["images"][0]["faces"] == []
    else:
        assert code == 2
        assert err.startswith(f"error: {bad}: {error}") and err.count("\n") == 1
        assert [e["image"] for e in report["errors"]] == [str(bad)]


def test_batch_carries_on_past_bad_files_and_exits_2(models_dir, photos, tmp_path, capsys):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    code, out, err = run_main(["--models-dir", str(models_dir), "--model", "tiny", str(empty),
                               str(tmp_path / "missing.png"), str(photos["single"])], capsys)
    assert code == 2
    assert str(photos["single"]) in out
    assert f"error: {empty}: empty file" in err
    assert f"error: {tmp_path / 'missing.png'}: cannot read it: No such file or directory" in err


def test_nothing_processed_is_an_error(models_dir, tmp_path, capsys):
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(PipelineError, match=r"no input could be processed \(1 failed\)"):
        predict.main(["--models-dir", str(models_dir), "--model", "tiny", str(tmp_path / "empty_folder")])
    assert "folder holds no image or video files" in capsys.readouterr().err


# --- the CLI as a user runs it ----------------------------------------------------------------------------------


def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipeline.predict", *args], input=stdin, capture_output=True,
                          cwd=REPO, env=env, timeout=180)


def test_cli_stdin_json_and_partial_failure(models_dir, photos, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    run = cli("--models-dir", str(models_dir), "--model", "tiny", "--json", "-", str(bad),
              stdin=photos["single"].read_bytes())
    assert run.returncode == 2, run.stderr
    report = json.loads(run.stdout)
    assert [i["image"] for i in report["images"]] == ["<stdin>"] and report["images"][0]["face_found"]
    why = "not an image PIL can read (unknown or unsupported format)"
    assert report["errors"] == [{"image": str(bad), "error": why}]
    assert run.stderr.decode().strip() == f"error: {bad}: {why}"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [(["--model", "cnn"], 1, "error: no model 'cnn' in {models} (available: ensemble, tiny)"),
     (["--model", "{photo}"], 1, "error: {photo} is not a Keras model: a .keras file is a zip archive, this is not"),
     (["--detector", "haar"], 2, "argument --detector: invalid choice: 'haar'")],
    ids=["unknown-name", "not-a-model", "unknown-detector"],
)
def test_cli_bad_choices_are_one_line(args, code, message, models_dir, photos):
    fill = {"models": models_dir, "photo": photos["single"]}
    run = cli("--models-dir", str(models_dir), *[a.format(**fill) for a in args], str(photos["single"]))
    assert run.returncode == code  # argparse's usage errors exit 2, the pipeline's 1
    assert message.format(**fill) in run.stderr.decode().strip().splitlines()[-1]
    assert "Traceback" not in run.stderr.decode() and run.stdout == b""
