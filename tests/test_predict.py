"""pipeline.predict and pipeline.faces on real photos, a real (tiny) Keras model and real CLI runs.

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
from skimage import data as skdata

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from pipeline import faces, predict  # noqa: E402
from pipeline.classes import FER2013_LABELS  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The astronaut's head, hair to chin, 240x180; its face is what the cascade finds.
HEAD = skdata.astronaut()[20:260, 140:320]
# The face box the cascade reports on the full astronaut photo (x, y, w, h).
ASTRONAUT_FACE = (178, 74, 83, 83)


def tiny_model(seed: int = 0) -> keras.Model:
    """A real, untrained FER-shaped model: float pixels 0..255 in, 7 softmax probabilities out."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((48, 48, 1)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(FER2013_LABELS), activation="softmax"),
    ])


def save_model(models_dir: Path, name: str, model: keras.Model, classes=FER2013_LABELS) -> Path:
    models_dir.mkdir(parents=True, exist_ok=True)
    model.save(models_dir / f"{name}.keras")
    meta = {"name": name, "classes": list(classes), "input_shape": [48, 48, 1]}
    (models_dir / f"{name}.json").write_text(json.dumps(meta))
    return models_dir / f"{name}.keras"


def scene(width: int, height: int, heads: list[tuple[int, int, float]], seed: int = 0) -> tuple[np.ndarray, list]:
    """An RGB picture with astronaut heads pasted at (x, y, scale) on a noisy grey wall, and where each went."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(rng.normal(140, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    placed = []
    for x, y, scale in heads:
        head = np.asarray(Image.fromarray(HEAD).resize((round(180 * scale), round(240 * scale)), Image.LANCZOS))
        rgb[y : y + head.shape[0], x : x + head.shape[1]] = head
        placed.append((x, y, head.shape[1], head.shape[0]))
    return rgb, placed


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
def classifier(models_dir) -> predict.Classifier:
    return predict.load_classifier(models_dir / "tiny.keras")


@pytest.fixture(scope="module")
def detector():
    return faces.load_detector()


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


# --- detection and cropping -------------------------------------------------------------------------------------


def test_faces_of_different_sizes_are_all_found_once(detector):
    rgb, placed = scene(1000, 700, [(40, 60, 0.6), (330, 300, 1.0), (660, 80, 1.5)])
    boxes = faces.detect_faces(faces.grey(faces.photo_from_image(Image.fromarray(rgb))), detector)
    assert len(boxes) == 3
    assert all(centre_inside(box, rect) for box, rect in zip(boxes, placed, strict=True))  # left to right


def test_astronaut_face_is_found(detector):
    boxes = faces.detect_faces(faces.grey(faces.photo_from_image(Image.fromarray(skdata.astronaut()))), detector)
    assert any(faces._overlap(box, ASTRONAUT_FACE) > 0.7 for box in boxes)


def test_picture_without_a_face_gives_no_box(detector):
    wall, _ = scene(500, 300, [], seed=2)
    assert faces.detect_faces(faces.grey(faces.photo_from_image(Image.fromarray(wall))), detector) == []


def test_overlapping_detections_merge_into_the_largest():
    assert faces.drop_overlapping([(10, 10, 50, 50), (15, 15, 40, 40), (200, 10, 30, 30)]) == [
        (10, 10, 50, 50), (200, 10, 30, 30),
    ]


def test_crop_is_square_around_the_box_and_replicates_edges():
    grey = np.zeros((100, 100), np.uint8)
    grey[:, 70:] = 200
    patch = faces.crop(grey, (0, 0, 40, 40), (48, 48), margin=0.5)  # reaches 20 px past the top-left corner
    assert patch.shape == (48, 48)
    assert patch.max() == 0  # x from -20 to 60: the dark part and its replicated edge
    assert faces.crop(grey, (40, 0, 40, 40), (48, 48), margin=0.5)[:, -1].min() == 200  # x up to 100: the bright strip
    assert faces.centre_square(640, 480) == (80, 0, 480, 480)


# --- decoding any photo -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "CMYK", "I;16", "1"])
def test_every_colour_mode_decodes_to_rgb(mode, detector):
    rgb, placed = scene(400, 320, [(110, 30, 1.0)], seed=1)
    img = Image.fromarray(rgb)
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img.convert("L")).astype(np.uint16) * 257)
        assert img.mode.startswith("I;16")
    else:
        img = img.convert(mode)
    photo = faces.read_photo(encode(img, "JPEG" if mode == "CMYK" else "PNG"))
    assert photo.rgb.dtype == np.uint8 and photo.rgb.shape == (320, 400, 3)
    assert (photo.width, photo.height) == (400, 320)
    if mode != "1":  # a 1-bit picture has no face left to find
        boxes = faces.detect_faces(faces.grey(photo), detector)
        assert len(boxes) == 1 and centre_inside(boxes[0], placed[0])


def test_sixteen_bit_grey_is_rescaled_not_clipped():
    img = Image.fromarray(np.full((20, 30), 32896, np.uint16))  # 128 * 257
    assert abs(int(faces.read_photo(encode(img)).rgb.mean()) - 128) <= 1


def test_transparent_background_becomes_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    assert faces.read_photo(encode(Image.fromarray(rgba, "RGBA"))).rgb.min() == 255


def test_exif_rotation_is_applied(detector):
    rgb, _ = scene(400, 320, [(110, 30, 1.0)], seed=1)
    sideways = Image.fromarray(rgb).rotate(90, expand=True)  # stored turned left; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = faces.read_photo(encode(sideways, "JPEG", exif=exif, quality=92))
    assert (photo.width, photo.height) == (400, 320) and photo.rgb.shape == (320, 400, 3)
    assert len(faces.detect_faces(faces.grey(photo), detector)) == 1


def test_large_photo_is_downscaled_and_boxes_use_original_pixels(classifier, detector):
    rgb, placed = scene(4000, 3000, [(1500, 1000, 4.0)], seed=3)
    photo = faces.read_photo(encode(rgb, "JPEG", quality=85))
    assert max(photo.rgb.shape[:2]) == faces.WORK_SIDE
    assert (photo.width, photo.height) == (4000, 3000)
    analysis = predict.analyse(photo, "big.jpg", classifier, detector)
    assert analysis.face_found and len(analysis.faces) == 1
    assert centre_inside(analysis.faces[0].box, placed[0])
    assert analysis.faces[0].box[2] > 300  # a 4x head, ~90 px at 1x: the box is in original, not working, pixels


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
        faces.read_photo(content)


# --- models -----------------------------------------------------------------------------------------------------


def test_unknown_model_lists_the_available_ones(models_dir):
    with pytest.raises(PipelineError, match=r"no model 'cnn' in .* \(available: ensemble, tiny\)"):
        predict.resolve_model("cnn", models_dir)


def test_empty_models_dir_says_to_run_the_pipeline(tmp_path):
    with pytest.raises(PipelineError, match="none: run `dvc repro` first"):
        predict.resolve_model("cnn", tmp_path)


def test_model_path_outside_the_models_dir(models_dir, tmp_path):
    assert predict.resolve_model(str(models_dir / "tiny.keras"), tmp_path) == models_dir / "tiny.keras"
    with pytest.raises(PipelineError, match="model file .* not found"):
        predict.resolve_model(str(tmp_path / "gone.keras"), tmp_path)


def test_files_that_are_not_keras_models_are_refused(tmp_path, photos):
    with pytest.raises(PipelineError, match="is not a Keras model"):
        predict.load_classifier(photos["single"])
    fake = tmp_path / "fake.keras"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(PipelineError, match="is not a loadable Keras model"):
        predict.load_classifier(fake)


def test_model_needs_matching_class_names(tmp_path):
    path = save_model(tmp_path, "m", tiny_model(), classes=("happy", "sad"))
    with pytest.raises(PipelineError, match="outputs 7 classes but .* names 2"):
        predict.load_classifier(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(PipelineError, match="m.json not found"):
        predict.load_classifier(path)


def test_batches_are_split_but_results_match_one_call(classifier):
    x = np.random.default_rng(0).uniform(0, 255, (predict.BATCH * 2 + 3, 48, 48, 1)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(classifier.model(x))
    np.testing.assert_allclose(predict.predict_probabilities(classifier, x), expected, rtol=1e-5, atol=1e-6)


def test_each_face_gets_its_own_crops_probabilities(classifier, detector, photos):
    photo = faces.read_photo(photos["group"].read_bytes())
    analysis = predict.analyse(photo, "group.png", classifier, detector)
    grey = faces.grey(photo)
    for face in analysis.faces:
        crop = faces.crop(grey, faces.scale_box(face.box, photo.scale), (48, 48), faces.FACE_MARGIN)
        alone = keras.ops.convert_to_numpy(classifier.model(crop[None, ..., None].astype(np.float32)))[0]
        np.testing.assert_allclose(face.probabilities, alone, rtol=1e-4, atol=1e-6)


# --- the CLI, in-process ----------------------------------------------------------------------------------------


def test_json_output(models_dir, photos, capsys):
    code, out, _ = run_main(["--models-dir", str(models_dir), "--model", "tiny", "--json",
                             str(photos["group"]), str(photos["wall"])], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["model"] == "tiny" and report["classes"] == list(FER2013_LABELS) and report["errors"] == []
    group, wall = report["images"]
    assert (group["image"], group["width"], group["height"]) == (str(photos["group"]), 1000, 700)
    assert group["face_found"] is True
    assert len(group["faces"]) == 3
    for face in group["faces"]:
        assert set(face) == {"box", "emotion", "probability", "probabilities"}
        assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
        assert list(face["probabilities"]) == list(FER2013_LABELS)
        assert abs(sum(face["probabilities"].values()) - 1) < 1e-3
        assert face["probabilities"][face["emotion"]] == face["probability"] == max(face["probabilities"].values())
    assert wall["face_found"] is False and [f["box"] for f in wall["faces"]] == [[100, 0, 300, 300]]


def test_table_output(models_dir, photos, capsys):
    code, out, _ = run_main(["--models-dir", str(models_dir), "--model", "tiny",
                             str(photos["single"]), str(photos["wall"])], capsys)
    assert code == 0
    header, single, wall, note = out.strip().splitlines()
    assert header.split()[:4] == ["image", "face", "box", "(x"] and header.split()[-7:] == list(FER2013_LABELS)
    assert single.split()[:2] == [str(photos["single"]), "1"]
    assert wall.split()[:2] == [str(photos["wall"]), "none*"]
    assert note.startswith("* no face found")


def test_ensemble_flag_uses_the_ensemble_model(models_dir, photos, capsys):
    code, out, _ = run_main(["--models-dir", str(models_dir), "--ensemble", "--json", str(photos["single"])], capsys)
    assert code == 0 and json.loads(out)["model"] == "ensemble"


def test_folder_input_takes_its_images_in_order(models_dir, photos, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "b.png").write_bytes(photos["wall"].read_bytes())
    (folder / "a.jpg").write_bytes(photos["single"].read_bytes())
    (folder / "notes.txt").write_text("not a picture, not taken")
    code, out, _ = run_main(["--models-dir", str(models_dir), "--model", "tiny", "--json", str(folder)], capsys)
    assert code == 0
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
    assert code == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["single.png", "wall.png"]
    assert Image.open(out_dir / "wall.png").size == (500, 300)


def test_annotate_to_a_non_image_name_fails_first(models_dir, photos, tmp_path):
    with pytest.raises(PipelineError, match="use an image extension"):
        predict.main(["--models-dir", str(models_dir), "--model", "tiny", "--annotate", str(tmp_path / "out.txt"),
                      str(photos["single"])])


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
    with pytest.raises(PipelineError, match=r"no image could be processed \(1 failed\)"):
        predict.main(["--models-dir", str(models_dir), "--model", "tiny", str(tmp_path / "empty_folder")])
    assert "folder holds no image files" in capsys.readouterr().err


# --- the CLI as a user runs it ----------------------------------------------------------------------------------


def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pipeline.predict", *args], input=stdin, capture_output=True,
                          cwd=REPO, env=env, timeout=120)


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
    ("model", "message"),
    [("cnn", "error: no model 'cnn' in {models} (available: ensemble, tiny)"),
     ("{photo}", "error: {photo} is not a Keras model: a .keras file is a zip archive, this is not")],
    ids=["unknown-name", "not-a-model"],
)
def test_cli_model_errors_are_one_line_and_exit_1(model, message, models_dir, photos):
    fill = {"models": models_dir, "photo": photos["single"]}
    run = cli("--models-dir", str(models_dir), "--model", model.format(**fill), str(photos["single"]))
    assert run.returncode == 1
    assert run.stderr.decode().strip() == message.format(**fill)
    assert run.stdout == b""
