"""Web demo: every trained model on a photo, a live webcam stream or a video.

    python -m pipeline.app [--models-dir DIR] [--metrics-dir metrics] [--host 127.0.0.1] [--port 7860]

Faces are found and aligned once per click and the same 48x48 crops go to every model (one tab each, with its
test metrics and the data it was trained on). --host defaults to GRADIO_SERVER_NAME, else 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image
from skimage import data as skdata

from pipeline import modelfiles
from pipeline.errors import PipelineError, run_cli
from pipeline.serve import api, detect, draw, images, video

NO_MODELS = "No trained models yet: run `dvc repro` first"
MAX_UPLOAD = "20mb"  # photos and short clips; Gradio refuses larger uploads before they reach /tmp
EXAMPLES = {"astronaut.png": skdata.astronaut, "camera.png": skdata.camera, "rocket.png": skdata.rocket}
DATA_WORDS = {"sample": "the built-in synthetic sample (drawings, not real faces)"}


def build_app(models_dir: Path | list[Path], metrics_dir: Path, detector: str = detect.DEFAULT_DETECTOR) -> gr.Blocks:
    """The whole UI; models and the detector are loaded once here, so a click runs detection once."""
    paths = modelfiles.available_models(models_dir)
    classifiers = {name: _load(path) for name, path in paths.items()}
    usable = {n: c for n, c in classifiers.items() if isinstance(c, api.Classifier)}
    find = detect.load_detector(detector) if usable else None
    with gr.Blocks(title="Facial expression recognition", analytics_enabled=False) as app:
        gr.Markdown("# Facial expression recognition")
        if not paths:
            gr.Markdown(f"**{NO_MODELS}** (no `*.keras` in `{models_dir}`).", elem_id="no-models")
            return app
        with gr.Tab("Photo", id="photo"):
            photo = gr.Image(label="Photo", sources=["upload", "webcam"], type="filepath", image_mode=None)
            button = gr.Button("Predict", variant="primary", elem_id="predict")
            gr.Examples([str(p) for p in example_photos()], inputs=photo, label="Example photos")
            crops = gr.Image(label="What every model sees: the aligned 48x48 crops, face 1 first", type="numpy",
                             interactive=False, height=130, elem_id="crops")
            outputs = [crops]
            for name, classifier in classifiers.items():
                with gr.Tab(name, id=name):
                    outputs += _model_tab(name, classifier, Path(metrics_dir))
        button.click(lambda path: run_photo(usable, find, path), inputs=photo, outputs=outputs)
        if usable:
            _live_tab(usable, find)
            _video_tab(usable, find)
    return app


def _load(path: Path) -> api.Classifier | str:
    try:
        return api.load_classifier(path)
    except PipelineError as err:
        return str(err)


def _model_tab(name: str, classifier: api.Classifier | str, metrics_dir: Path) -> list[gr.components.Component]:
    if isinstance(classifier, str):
        gr.Markdown(f"**Cannot use this model:** {classifier}")
        return []
    with gr.Row():
        with gr.Column(scale=3):
            faces = gr.AnnotatedImage(label="Faces", elem_id=f"{name}-faces")
            summary = gr.Markdown(elem_id=f"{name}-summary")
        with gr.Column(scale=1):
            label = gr.Label(label="Largest face", num_top_classes=3, elem_id=f"{name}-label")
            gr.Markdown(metrics_markdown(metrics_dir / f"{name}.json", classifier.info), elem_id=f"{name}-metrics")
    return [faces, summary, label]


def _live_tab(classifiers: dict[str, api.Classifier], find: detect.Detector) -> None:
    with gr.Tab("Live webcam", id="live"):
        model = gr.Dropdown(list(classifiers), value=next(iter(classifiers)), label="Model", elem_id="live-model")
        with gr.Row():
            camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam", elem_id="live-in")
            shown = gr.Image(label="Faces, live", type="numpy", elem_id="live-out")
        camera.stream(lambda frame, name: run_live(classifiers[name], find, frame), inputs=[camera, model],
                      outputs=shown, stream_every=0.5, concurrency_limit=1)


def _video_tab(classifiers: dict[str, api.Classifier], find: detect.Detector) -> None:
    with gr.Tab("Video", id="video"):
        with gr.Row():
            clip = gr.Video(label="Video", sources=["upload"], elem_id="video-in")
            with gr.Column():
                model = gr.Dropdown(list(classifiers), value=next(iter(classifiers)), label="Model")
                every = gr.Slider(1, 30, value=5, step=1, label="Analyse every n-th frame")
                button = gr.Button("Analyse video", variant="primary", elem_id="video-run")
        annotated = gr.Video(label="Annotated", elem_id="video-out")
        table = gr.File(label="Per-frame table (CSV)", elem_id="video-table")
    button.click(lambda path, name, n: run_video(classifiers[name], find, path, int(n)),
                 inputs=[clip, model, every], outputs=[annotated, table])


def example_photos() -> list[Path]:
    """scikit-image's public-domain samples as files (Gradio's examples are files): two faces, one without."""
    folder = Path(tempfile.gettempdir()) / "fer-app-examples"
    folder.mkdir(exist_ok=True)
    for name, load in EXAMPLES.items():
        if not (folder / name).exists():
            Image.fromarray(load()).save(folder / name)
    return [folder / name for name in EXAMPLES]


def run_photo(classifiers: dict[str, api.Classifier], find: detect.Detector, path: str | None) -> list[Any]:
    """One click: detection and alignment once, then every model on the same crops."""
    if not path:
        raise gr.Error("Upload a photo or take one with the webcam first.")
    try:
        photo = images.to_photo(Path(path))
        located, _ = api.locate(photo, find)
    except PipelineError as err:
        raise gr.Error(f"Cannot use this picture: {err}") from err
    outputs: list[Any] = [crops_strip([f.crop for f in located])]
    for classifier in classifiers.values():
        faces = api.classify(classifier, located)
        outputs += [annotated_value(photo, faces), summary_markdown(faces), largest_label(faces)]
    return outputs


def crops_strip(crops: list[np.ndarray], scale: int = 2, gap: int = 4) -> np.ndarray | None:
    """The crops side by side, each `scale`x its size, `gap` white pixels apart: one picture that keeps their
    proportions (a gr.Gallery with fewer images than columns stretches them across the row)."""
    if not crops:
        return None
    tiles = [np.kron(c, np.ones((scale, scale), np.uint8)) for c in crops]
    white = np.full((tiles[0].shape[0], gap), 255, np.uint8)
    return np.hstack([part for tile in tiles for part in (white, tile)][1:])


def annotated_value(photo: images.Photo, faces: list[api.Face]) -> tuple[np.ndarray, list]:
    """(picture, [((x1, y1, x2, y2), label)]) in working-copy pixels, for gr.AnnotatedImage."""
    boxes = [tuple(round(v * photo.scale) for v in f.box) for f in faces]
    return photo.rgb, [((x, y, x + w, y + h), f"{i}: {f.label}") for i, ((x, y, w, h), f) in enumerate(zip(boxes, faces, strict=True), 1)]


def summary_markdown(faces: list[api.Face]) -> str:
    if not faces:
        return "**No face found** in this picture, so nothing was classified."
    return "\n".join(f"- Face {i} (x {f.box[0]}, y {f.box[1]}, {f.box[2]}x{f.box[3]} px): **{f.label}**"
                     for i, f in enumerate(faces, 1))


def largest_label(faces: list[api.Face]) -> dict[str, float] | None:
    return max(faces, key=lambda f: f.box[2] * f.box[3]).probabilities if faces else None


def run_live(classifier: api.Classifier, find: detect.Detector, frame: np.ndarray | None) -> np.ndarray | None:
    """One webcam frame: boxes and labels drawn on it, or a 'no face' notice."""
    if frame is None:
        return None
    photo = images.to_photo(frame)
    faces = api.classify(classifier, api.locate(photo, find)[0])
    if not faces:
        return draw.draw_notice(photo.rgb, "no face found")
    boxes = [tuple(round(v * photo.scale) for v in f.box) for f in faces]
    return draw.draw_labels(photo.rgb, boxes, [f.label for f in faces])


def run_video(classifier: api.Classifier, find: detect.Detector, path: str | None, every: int) -> tuple[str, str]:
    """The annotated video and the per-frame CSV, in a fresh temporary folder."""
    if not path:
        raise gr.Error("Upload a video first.")
    out = Path(tempfile.mkdtemp(prefix="fer-video-"))
    try:
        rows = video.analyse_video(path, classifier, find, every, out / "annotated.mp4")
    except PipelineError as err:
        raise gr.Error(f"Cannot use this video: {err}") from err
    video.write_table(rows, classifier.classes, out / "frames.csv")
    return str(out / "annotated.mp4"), str(out / "frames.csv")


def metrics_markdown(path: Path, info: dict[str, Any]) -> str:
    """The test metrics as a table, headed by the data they were measured on, or why there are none.
    A shipped model carries its own (`test` in its .json) and names its test split."""
    data = training_data(info)
    if "test" in info:
        metrics, split = info["test"], info.get("splits", {}).get("test", "the test split")
    else:
        try:
            metrics = json.loads(path.read_text())
        except FileNotFoundError:
            return f"_No test metrics yet (`{path}`)._ Trained on {data}."
        except (OSError, ValueError) as err:
            return f"_Cannot read `{path}`: {err}_"
        split = "the test split"
    rows = [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    return "\n".join([f"**Test metrics** on {split} of {data}", "", "| metric | value |", "| --- | --- |", *rows])


def training_data(info: dict[str, Any]) -> str:
    """What the model's .json says it was trained on, in words."""
    data = info.get("data")
    if not isinstance(data, dict) or "source" not in data:
        return "data its .json does not name"
    source = data["source"]
    return DATA_WORDS.get(source, f"real data ({data.get('dataset', 'dataset unnamed')}, from {source})")


def default_host() -> str:
    return os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"


def port_number(text: str) -> int:
    """argparse type for --port: a TCP port, so a typo is one usage line, not a socket traceback."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number: pass one from 1 to 65535")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.app", description="Serve the web demo.")
    parser.add_argument("--models-dir", type=Path, action="append",
                        help="folder of trained models (repeatable; default: the shipped models/, then data/models and data/ensemble)")
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    parser.add_argument("--detector", choices=list(detect.DETECTORS), default=detect.DEFAULT_DETECTOR)
    parser.add_argument("--host", default=default_host(), help="address to serve on (default: $GRADIO_SERVER_NAME, else 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=7860)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    app = build_app(args.models_dir or list(modelfiles.MODELS_DIRS), args.metrics_dir, args.detector)
    try:
        app.launch(server_name=args.host, server_port=args.port, max_file_size=MAX_UPLOAD)
    except OSError as err:
        raise PipelineError(f"cannot serve on {args.host}:{args.port}: the port is taken; pass another --port") from err


def cli() -> None:
    """The `fer-app` console script and `python -m pipeline.app`."""
    run_cli(main, interrupted="the demo stopped")
