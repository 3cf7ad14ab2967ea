"""The Gradio demo driven in a real headless Chromium: upload a photo, press Predict, see labels and charts.

Needs Debian's chromium (`apt-get install chromium`); Playwright's own browser download is not used.
Set FER_APP_SCREENSHOT to keep the screenshot (the README's plots/app.png).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import gradio as gr  # noqa: E402
import keras  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from pipeline.serve import app as fer_app  # noqa: E402
from pipeline import modelfiles  # noqa: E402
from pipeline.serve import api, detect  # noqa: E402
from pipeline.classes import FER2013_LABELS  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


def save_tiny_model(models_dir: Path, name: str, seed: int) -> None:
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((48, 48, 1)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(FER2013_LABELS), activation="softmax"),
    ])
    info = {"classes": list(FER2013_LABELS), "input_shape": [48, 48, 1], "data": {"source": "sample"}}
    modelfiles.save_model(model, models_dir / f"{name}.keras", info)


def two_faces(path: Path) -> Path:
    """The astronaut's head (NASA, public domain, shipped in scikit-image) twice, at two sizes, on a grey wall."""
    head = Image.fromarray(skdata.astronaut()[20:260, 140:320])
    wall = np.clip(np.random.default_rng(0).normal(140, 12, (420, 720, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(wall)
    img.paste(head.resize((135, 180)), (60, 150))
    img.paste(head.resize((270, 360)), (380, 30))
    img.save(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: the browser test needs Debian's Chromium, `apt-get install chromium`")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def serve(app: gr.Blocks) -> str:
    app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    return app.local_url


def decoded_size(page, selector: str) -> list[int]:
    """An image's natural size once the browser has decoded it: right after the summary shows, a loaded
    machine had not (0 x 0), and the test failed on timing, not on the image."""
    page.wait_for_function(f"() => {{ const img = document.querySelector({selector!r}); return img && img.complete && img.naturalWidth > 0; }}", timeout=60_000)
    return page.locator(selector).evaluate("img => [img.naturalWidth, img.naturalHeight]")


def test_upload_predict_shows_labels_charts_and_metrics(browser, tmp_path):
    models = tmp_path / "models"
    metrics = tmp_path / "metrics"
    models.mkdir()
    metrics.mkdir()
    save_tiny_model(models, "cnn", 0)
    save_tiny_model(models, "ensemble", 1)
    (metrics / "cnn.json").write_text(json.dumps({"accuracy": 0.61, "macro_f1": 0.55, "macro_auroc": 0.86}))
    picture = two_faces(tmp_path / "two_faces.png")
    expected = api.Recognizer(models / "cnn.keras")(picture)
    assert len(expected.faces) == 2

    app = fer_app.build_app(models, metrics)
    url = serve(app)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(url)
        page.get_by_role("tab", name="cnn").wait_for()
        assert page.get_by_role("tab", name="ensemble").is_visible()
        page.locator("input[type=file]").first.set_input_files(str(picture))
        page.locator("#predict").click()

        summary = page.locator("#cnn-summary")
        for face in expected.faces:
            summary.get_by_text(face.label).first.wait_for(timeout=60_000)
        assert summary.inner_text().count("Face ") == 2
        assert decoded_size(page, "#crops img") == [2 * 96 + 4, 96]  # the aligned 48x48 crops every model sees, 2x, side by side
        assert page.locator("#cnn-faces img").first.is_visible()
        assert expected.faces[0].emotion in page.locator("#cnn-label").inner_text()
        metrics_text = page.locator("#cnn-metrics").inner_text()
        assert "macro_f1" in metrics_text and "built-in synthetic sample" in metrics_text
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        assert [r for r in requests if r.startswith("http") and not r.startswith(url)] == []  # all from the app
    finally:
        app.close()


def test_without_models_it_says_to_run_the_pipeline(browser, tmp_path):
    app = fer_app.build_app(tmp_path / "models", tmp_path / "metrics")
    url = serve(app)
    try:
        page = browser.new_page()
        page.goto(url)
        notice = page.locator("#no-models")
        notice.wait_for(timeout=30_000)
        assert "No trained models yet: run dvc repro first" in notice.inner_text()
    finally:
        app.close()


def test_metrics_panel_names_the_training_data(tmp_path):
    assert fer_app.metrics_markdown(tmp_path / "cnn.json", {}) == (
        f"_No test metrics yet (`{tmp_path / 'cnn.json'}`)._ Trained on data its .json does not name."
    )
    real = {"data": {"source": "mirror", "dataset": "fer2013"}}
    assert fer_app.training_data(real) == "real data (fer2013, from mirror)"


def test_predict_without_a_picture_asks_for_one():
    with pytest.raises(gr.Error, match="Upload a photo"):
        fer_app.run_photo({}, None, None)


def test_an_unreadable_upload_is_explained_in_words(tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"not a picture")
    with pytest.raises(gr.Error, match="Cannot use this picture: not an image PIL can read"):
        fer_app.run_photo({}, None, str(bad))


def test_live_frames_get_boxes_and_labels_or_a_no_face_notice(tmp_path):
    save_tiny_model(tmp_path, "cnn", 0)
    classifier = api.load_classifier(tmp_path / "cnn.keras")
    find = detect.load_detector()
    frame = np.asarray(Image.open(two_faces(tmp_path / "two.png")).convert("RGB"))
    shown = fer_app.run_live(classifier, find, frame)
    assert shown.shape == frame.shape
    green = (shown[..., 1] > 180) & (shown[..., 0] < 80) & (shown[..., 2] < 80)
    assert green.sum() > 500  # two boxes and their label strips
    empty = fer_app.run_live(classifier, find, np.full((480, 640, 3), 128, np.uint8))
    assert (empty[:20, :20] == (255, 191, 0)).all(axis=-1).any()  # the amber "no face found" notice
    assert fer_app.run_live(classifier, find, None) is None


def test_host_honours_gradio_server_name(monkeypatch):
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    assert fer_app.default_host() == "0.0.0.0"
    monkeypatch.delenv("GRADIO_SERVER_NAME")
    assert fer_app.default_host() == "127.0.0.1"


def test_the_app_serves_the_shipped_models_first_and_names_their_data(browser, tmp_path):
    """The models the repository ships, on a real photo: the README's screenshot (FER_APP_SCREENSHOT)."""
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    app = fer_app.build_app([modelfiles.SHIPPED_DIR, tmp_path / "no_pipeline_models"], tmp_path / "metrics")
    url = serve(app)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.get_by_role("tab", name="fer2013", exact=True).wait_for()
        tabs = [tab.inner_text().strip() for tab in page.get_by_role("tab").all()]
        assert tabs.index("fer2013") < tabs.index("ferplus")
        page.locator("input[type=file]").first.set_input_files(str(photo))
        page.locator("#predict").click()
        page.locator("#fer2013-summary").get_by_text("Face 1").first.wait_for(timeout=60_000)
        assert decoded_size(page, "#crops img") == [96, 96]
        metrics_text = page.locator("#fer2013-metrics").inner_text()
        assert "PrivateTest of real data (fer2013, from mirror)" in metrics_text and "accuracy" in metrics_text
        page.screenshot(path=os.environ.get("FER_APP_SCREENSHOT", str(tmp_path / "app.png")), full_page=True)
    finally:
        app.close()


def test_crops_strip_keeps_each_crop_whole_and_in_order():
    first, second = np.zeros((48, 48), np.uint8), np.full((48, 48), 100, np.uint8)
    strip = fer_app.crops_strip([first, second])
    assert strip.shape == (96, 2 * 96 + 4)
    assert (strip[:, :96] == 0).all() and (strip[:, 96:100] == 255).all() and (strip[:, 100:] == 100).all()
    assert fer_app.crops_strip([]) is None


@pytest.mark.parametrize("port", ["99999", "0", "http"])
def test_a_bad_port_is_one_usage_line_before_anything_loads(port, capsys):
    with pytest.raises(SystemExit) as stopped:
        fer_app.main(["--port", port])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"python -m pipeline.app: error: argument --port: {port} is not a port number: pass one from 1 to 65535"
    )
