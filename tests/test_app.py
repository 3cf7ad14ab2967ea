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

from pipeline import app as fer_app  # noqa: E402
from pipeline import faces, predict  # noqa: E402
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
    model.save(models_dir / f"{name}.keras")
    meta = {"name": name, "classes": list(FER2013_LABELS), "input_shape": [48, 48, 1]}
    (models_dir / f"{name}.json").write_text(json.dumps(meta))


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


def test_upload_predict_shows_labels_charts_and_metrics(browser, tmp_path):
    models = tmp_path / "models"
    metrics = tmp_path / "metrics"
    models.mkdir()
    metrics.mkdir()
    save_tiny_model(models, "cnn", 0)
    save_tiny_model(models, "ensemble", 1)
    (metrics / "cnn.json").write_text(json.dumps({"accuracy": 0.61, "macro_f1": 0.55, "macro_auroc": 0.86}))
    picture = two_faces(tmp_path / "two_faces.png")
    classifier = predict.load_classifier(models / "cnn.keras")
    expected = predict.analyse(faces.read_photo(picture.read_bytes()), "x", classifier, faces.load_detector())
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
            summary.get_by_text(f"{predict.label(face, classifier.classes)}").first.wait_for(timeout=60_000)
        assert summary.inner_text().count("Face ") == 2
        chart = page.locator("#cnn-chart img")
        chart.wait_for(timeout=30_000)
        assert chart.bounding_box()["height"] > 100
        assert page.locator("#cnn-faces img").is_visible()
        assert "macro_f1" in page.locator("#cnn-metrics").inner_text()
        page.screenshot(path=os.environ.get("FER_APP_SCREENSHOT", str(tmp_path / "app.png")), full_page=True)
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


def test_metrics_panel_without_metrics(tmp_path):
    assert "No test metrics yet" in fer_app.metrics_markdown(tmp_path / "cnn.json")


def test_predict_without_a_picture_asks_for_one():
    with pytest.raises(gr.Error, match="Upload a photo"):
        fer_app.run_model(None, None, None)
