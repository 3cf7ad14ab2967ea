"""Web demo: try every trained model on a photo or a webcam shot, served on 127.0.0.1 only.

    python -m pipeline.app [--models-dir data/models] [--metrics-dir metrics] [--port 7860]

One tab per model in --models-dir (the ensemble included): the photo with boxes and labels, a probability chart
per face, and the model's test metrics from --metrics-dir/<name>.json. All the work is pipeline.predict's.
"""

from __future__ import annotations

import argparse
import json
import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr
import numpy as np
from matplotlib.figure import Figure

from pipeline import faces, predict
from pipeline.errors import PipelineError, run_cli

if TYPE_CHECKING:
    from skimage.feature import Cascade

NO_MODELS = "No trained models yet: run `dvc repro` first"


def build_app(models_dir: Path | list[Path], metrics_dir: Path) -> gr.Blocks:
    """The whole UI; models are loaded once here, so a click only runs detection and one forward pass."""
    models = predict.available_models(models_dir)
    detector = faces.load_detector()
    with gr.Blocks(title="Facial expression recognition", analytics_enabled=False) as app:
        gr.Markdown("# Facial expression recognition")
        if not models:
            gr.Markdown(f"**{NO_MODELS}** (no `*.keras` in `{models_dir}`).", elem_id="no-models")
            return app
        photo = gr.Image(label="Photo", sources=["upload", "webcam"], type="filepath", image_mode=None)
        button = gr.Button("Predict", variant="primary", elem_id="predict")
        for name, path in models.items():
            with gr.Tab(name, id=name):
                _model_tab(name, path, Path(metrics_dir), detector, photo, button)
    return app


def _model_tab(name: str, path: Path, metrics_dir: Path, detector: Cascade, photo: gr.Image, button: gr.Button) -> None:
    """Outputs and metrics of one model; a model that fails to load says why in its tab instead of stopping the app."""
    try:
        classifier = predict.load_classifier(path)
    except PipelineError as err:
        gr.Markdown(f"**Cannot use this model:** {err}")
        return
    with gr.Row():
        with gr.Column(scale=3):
            annotated = gr.Image(label="Faces", type="numpy", interactive=False, elem_id=f"{name}-faces")
            summary = gr.Markdown(elem_id=f"{name}-summary")
            chart = gr.Plot(label="Probabilities", format="png", elem_id=f"{name}-chart")
        with gr.Column(scale=1):
            gr.Markdown(metrics_markdown(metrics_dir / f"{name}.json"), elem_id=f"{name}-metrics")
    button.click(partial(run_model, classifier, detector), inputs=photo, outputs=[annotated, summary, chart])


def run_model(classifier: predict.Classifier, detector: Cascade, path: str | None) -> tuple[np.ndarray, str, Figure]:
    """One click: the annotated photo, a line per face, and the probability chart."""
    if not path:
        raise gr.Error("Upload a photo or take one with the webcam first.")
    try:
        photo = faces.read_photo(Path(path).read_bytes())
    except PipelineError as err:
        raise gr.Error(str(err)) from err
    analysis = predict.analyse(photo, Path(path).name, classifier, detector)
    return (
        predict.annotate(photo, analysis, classifier.classes),
        summary_markdown(analysis, classifier.classes),
        probability_figure(analysis, classifier.classes),
    )


def summary_markdown(analysis: predict.Analysis, classes: tuple[str, ...]) -> str:
    if not analysis.face_found:
        return f"No face found, so the whole picture was classified: **{predict.label(analysis.faces[0], classes)}**"
    return "\n".join(
        f"- Face {i} (x {f.box[0]}, y {f.box[1]}, {f.box[2]}x{f.box[3]} px): **{predict.label(f, classes)}**"
        for i, f in enumerate(analysis.faces, 1)
    )


def probability_figure(analysis: predict.Analysis, classes: tuple[str, ...]) -> Figure:
    """One horizontal bar chart per face, the top class highlighted; built without pyplot, so no global figure state."""
    n = len(analysis.faces)
    fig = Figure(figsize=(4 * min(n, 3), 2.6 * -(-n // 3)), layout="constrained")
    for i, face in enumerate(analysis.faces):
        ax = fig.add_subplot(-(-n // 3), min(n, 3), i + 1)
        colours = ["tab:orange" if j == np.argmax(face.probabilities) else "tab:blue" for j in range(len(classes))]
        ax.barh(classes, face.probabilities, color=colours)
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
        ax.set_title(f"Face {i + 1}" if analysis.face_found else "Whole picture (no face)")
    return fig


def metrics_markdown(path: Path) -> str:
    """The test metrics as a table, or why there are none."""
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        return f"_No test metrics yet (`{path}`)._"
    except (OSError, ValueError) as err:
        return f"_Cannot read `{path}`: {err}_"
    rows = [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    return "\n".join(["**Test metrics**", "", "| metric | value |", "| --- | --- |", *rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.app", description="Serve the demo on 127.0.0.1.")
    parser.add_argument(
        "--models-dir", type=Path, action="append", help="folder of trained models (repeatable; default: data/models and data/ensemble)"
    )
    parser.add_argument("--metrics-dir", type=Path, default=Path("metrics"))
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    app = build_app(args.models_dir or list(predict.MODELS_DIRS), args.metrics_dir)
    try:
        app.launch(server_name="127.0.0.1", server_port=args.port)
    except OSError as err:
        raise PipelineError(f"cannot serve on 127.0.0.1:{args.port}: the port is taken; pass another --port") from err


if __name__ == "__main__":
    run_cli(main)
