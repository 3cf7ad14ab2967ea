"""Ship a model the pipeline trained and evaluated: `models/<as>.keras` with a .json that says what it is.

    python -m pipeline.ship fer_resnet --as fer2013 --command "dvc exp run -n cpu-fer2013 ..."

The .json carries the class names in output order, the data and splits it was trained and tested on,
the command that made it, its test metrics, training minutes, device and date: what a model card needs.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from pipeline import modelfiles
from pipeline.device import device_name
from pipeline.errors import PipelineError, run_cli
from pipeline.records import metrics_file, record_file
from pipeline.params import load_params
from pipeline.splits import load_split

SPLITS = {  # dataset → where each split comes from
    "fer2013": {"train": "Training", "val": "PublicTest", "test": "PrivateTest"},
    "ferplus": {"train": "FER+ Train", "val": "FER+ Valid (PublicTest)", "test": "FER+ Test (PrivateTest)"},
    "fer2013-images": {"train": "train/ less val_fraction", "val": "val_fraction of train/", "test": "test/"},
    "apollo6": {"train": "train/ less val_fraction", "val": "val_fraction of train/", "test": "test/"},
}


def shipped_info(
    train_info: dict, options: dict, data: dict, test_metrics: dict, test_images: int, tta: str, command: str
) -> dict:
    """The released model's .json from the train stage's .json, the model's builder `options` in params.yaml
    and the evaluate stage's metrics."""
    options = dict(options)
    return {
        "classes": train_info["classes"],
        "input_shape": train_info["input_shape"],
        "input": "(N, 48, 48, 1) raw grey pixels 0..255; softmax out",
        "architecture": options.pop("architecture", train_info["name"]),
        "options": options,
        "parameters": train_info["parameters"],
        "data": data,
        "splits": SPLITS[data["dataset"]] | {"test_images": test_images},
        "test": {"tta": tta} | {k: round(v, 4) for k, v in test_metrics.items()},
        "best_val_accuracy": round(train_info["best_val_accuracy"], 4),
        "epochs": train_info["epochs_run"],
        "train_minutes": round(train_info["train_minutes"], 1),
        "history": train_info["history"],
        "device": f"{device_name()} ({train_info['backend']}, {train_info['precision']})",
        "command": command,
        "date": datetime.date.today().isoformat(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a model of data/models that `evaluate@<model>` has scored")
    parser.add_argument("--as", dest="name", required=True, help="the released name, e.g. fer2013")
    parser.add_argument("--command", required=True, help="the command that reproduces it, for the .json")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--models", type=Path, default=Path("data/models"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--out", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    source = args.models / f"{args.model}.keras"
    train_info = modelfiles.read_info(source)
    data = train_info["data"]  # what the train stage recorded: source, dataset, classes, relabel, balance, teacher
    if data["source"] == "sample":
        raise PipelineError(f"{source} was trained on the synthetic sample: ship only models trained on real data")
    metrics_path = metrics_file(args.metrics, args.model)
    if not metrics_path.exists():
        raise PipelineError(f"{metrics_path} not found: run `dvc repro evaluate@{args.model}` first")
    test = load_split(args.prepared / "test.npz")
    tta = json.loads(record_file(args.metrics, args.model).read_text())["tta"]  # the views evaluate scored it with
    info = shipped_info(
        train_info, params.model_config(args.model)[1], data, json.loads(metrics_path.read_text()), len(test["y"]), tta, args.command,
    )
    target = args.out / f"{args.name}.keras"
    modelfiles.save_model(modelfiles.load_model(source), target, info)
    size = target.stat().st_size / 2**20
    print(f"{target}: {info['architecture']}, test accuracy {info['test']['accuracy']:.4f} ({size:.1f} MB)")


if __name__ == "__main__":
    run_cli(main)
