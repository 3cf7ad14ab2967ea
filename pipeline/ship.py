"""Ship a model the pipeline trained and evaluated: `models/<as>.keras` with a .json that says what it is.

    python -m pipeline.ship fer_resnet --as fer2013 --command "dvc exp run -n cpu-fer2013 ..."
    python -m pipeline.ship ensemble --as fer2013_ensemble --weights float16 --command "..."   # an ensemble and its members' cards

Validation decides which model ships (models/README.md): a model replaces the shipped file of its name only
with a higher validation accuracy, each scored with the TTA views it chose; `--replace` overrides that.
A shipped file is committed to git, so a model over 20 MB is refused: 5 M parameters in float32, 10 M with
`--weights float16` (half the bytes; loaded, it computes in float32 and its probabilities move by ~1e-3).

The .json carries the class names in output order, the data and splits it was trained and tested on,
the command that made it, its test metrics, training minutes, device and date: what a model card needs.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import numpy as np

from pipeline import modelfiles
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
MAX_FILE_BYTES = 20_000_000  # a shipped model is a file in git: issue #9 caps each at 20 MB


def shipped_info(made: dict, facts: dict, test_metrics: dict, test_images: int, record: dict, command: str) -> dict:
    """The released model's .json: what made it (`made`, the .json the train or ensemble stage wrote), what
    it is (`facts`: a trained net's or an ensemble's), and how the evaluation scored it (`record`: the views
    it chose and each view's validation accuracy, the figure models/README.md picks shipped models by)."""
    data = facts["data"]
    return {
        "classes": made["classes"],
        "input_shape": made["input_shape"],
        "input": "(N, 48, 48, 1) raw grey pixels 0..255; softmax out",
        **facts,
        "splits": SPLITS[data["dataset"]] | {"test_images": test_images},
        "val_accuracy": {view: round(v, 4) for view, v in record.get("tta_val_accuracy", {}).items()},
        "test": {"tta": record["tta"]} | {k: round(v, 4) for k, v in test_metrics.items()},
        "command": command,
        "date": datetime.date.today().isoformat(),
    }


def net_facts(train_info: dict, options: dict) -> dict:
    """A trained net, from the train stage's .json and its builder `options` in params.yaml."""
    options = dict(options)
    return {
        "architecture": options.pop("architecture", train_info["name"]),
        "options": options,
        "parameters": train_info["parameters"],
        "data": train_info["data"],
        "best_val_accuracy": round(train_info["best_val_accuracy"], 4),
        "epochs": round(train_info["epochs_run"], 2),
        "train_minutes": round(train_info["train_minutes"], 1),
        "history": train_info["history"],
        "device": f"{train_info['device']} ({train_info['backend']}, {train_info['precision']})",
    }


def ensemble_facts(ensemble_info: dict, members: dict[str, dict], parameters: int) -> dict:
    """An ensemble, from the ensemble stage's .json and its members' own .json (kept whole, as their cards):
    its data is what all members share (a member's teacher, say, stays with that member)."""
    first, *others = (member["data"] for member in members.values())
    return {
        "architecture": ensemble_info["name"],
        "parameters": parameters,
        "data": {k: v for k, v in first.items() if all(other.get(k) == v for other in others)},
        "train_minutes": round(sum(member["train_minutes"] for member in members.values()), 1),
        "members": members,
    }


def trained_members(source: Path, made: dict, dirs: list[Path]) -> dict[Path, dict]:
    """The file and .json of each net that was trained for this model: itself, or an ensemble's members."""
    if "members" not in made:
        return {source: made}
    paths = [modelfiles.find_model(name, dirs) for name in made["members"]]
    return {path: modelfiles.read_info(path) for path in paths}


def check_beats_shipped(info: dict, target: Path) -> None:
    """Refuse, before anything is written, to replace a shipped model unless this one scores higher on the
    same validation split, both figures recorded (each with the TTA views its evaluation chose)."""
    if not target.exists():
        return
    shipped = modelfiles.read_info(target)
    split = info["splits"]["val"]
    new = info["val_accuracy"].get(info["test"]["tta"])
    old = shipped.get("val_accuracy", {}).get(shipped["test"]["tta"]) if shipped["splits"]["val"] == split else None
    if new is None:
        raise PipelineError(f"this model has no accuracy on {split} to compare with {target}'s (`evaluate.tta: auto` records it): "
                            "pass --replace to replace that file anyway")
    if old is None:
        raise PipelineError(f"{target} records no accuracy on {split} to compare this model with: pass --replace to replace it anyway")
    if new <= old:
        raise PipelineError(
            f"{target} scores {100 * old:.2f} % on {split} ({shipped['test']['tta']}), this model {100 * new:.2f} % "
            f"({info['test']['tta']}): the higher on validation ships, so it stays (--replace replaces it anyway)"
        )


def check_file_size(name: str, parameters: int, weights: str) -> None:
    """Refuse, before anything is written, a model whose weights alone pass the size cap."""
    size = parameters * np.dtype(weights).itemsize
    if size > MAX_FILE_BYTES:
        smaller = "store its weights in half the bytes (--weights float16), or ship" if weights == "float32" else "ship"
        raise PipelineError(
            f"{name}: {parameters:,} {weights} parameters make a {size / 1e6:.1f} MB file, over the "
            f"{MAX_FILE_BYTES / 1e6:.0f} MB a shipped model may be: {smaller} a smaller model (an ensemble: fewer or smaller members)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a model or ensemble the pipeline has trained and scored (`evaluate@<model>`, `ensemble`)")
    parser.add_argument("--as", dest="name", required=True, help="the released name, e.g. fer2013")
    parser.add_argument("--command", required=True, help="the command that reproduces it, for the .json")
    parser.add_argument("--weights", choices=modelfiles.WEIGHT_DTYPES, default="float32",
                        help="how the file stores the weights: float16 halves it (default: float32)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--models", type=Path, action="append",
                        help="folder of the model and an ensemble's members (repeatable; default: data/models and data/ensemble)")
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--replace", action="store_true", help="replace the shipped file of that name even where it scores as high on validation")
    args = parser.parse_args(argv)
    dirs = args.models or list(modelfiles.PIPELINE_DIRS)
    source = modelfiles.find_model(args.model, dirs)
    made = modelfiles.read_info(source)  # what its stage recorded: for a net, the data (source, dataset, teacher...)
    is_ensemble = "members" in made
    members = trained_members(source, made, dirs)
    for path, info in members.items():
        if info["data"]["source"] == "sample":
            raise PipelineError(f"{path} was trained on the synthetic sample: ship only models trained on real data")
    metrics_path = metrics_file(args.metrics, args.model)
    if not metrics_path.exists():
        stage = "ensemble" if is_ensemble else f"evaluate@{args.model}"
        raise PipelineError(f"{metrics_path} not found: run `dvc repro {stage}` first")
    record = json.loads(record_file(args.metrics, args.model).read_text())  # the views evaluate scored it with
    model = modelfiles.load_model(source)
    check_file_size(args.name, model.count_params(), args.weights)
    if is_ensemble:
        cards = {path.stem: info for path, info in members.items()}
        facts = ensemble_facts(made, cards, model.count_params())
    else:
        facts = net_facts(made, load_params(args.params).model_config(args.model)[1])
    test = load_split(args.prepared / "test.npz")
    info = shipped_info(made, facts, json.loads(metrics_path.read_text()), len(test["y"]), record, args.command)
    target = args.out / f"{args.name}.keras"
    if not args.replace:
        check_beats_shipped(info, target)
    modelfiles.save_model(model, target, info, args.weights)
    size = target.stat().st_size / 1e6
    print(f"{target}: {info['architecture']}, test accuracy {info['test']['accuracy']:.4f} ({size:.1f} MB)")


if __name__ == "__main__":
    run_cli(main)
