"""Which trained FER2013 models average best, chosen on the validation split only.

Each candidate (a `.keras` file, or `file.keras:layer` for a member inside a saved ensemble) predicts every
`--tta` view of PublicTest (validation) and PrivateTest (test) once; every subset of candidates is then
scored by averaging probabilities, with the views that score best on validation, as the `ensemble` stage
does. The subset with the best validation accuracy is the pick; its test accuracy is the honest figure, and
every subset's two numbers are written, so the gap between the pick and the best-on-test is visible too.
A FER+ model's 8 classes map onto FER2013's 7 by name, contempt dropped and the rest renormalised.

    python -m benchmarks.ensemble_search --prepared data/prepared --out benchmarks/results/ensemble_search.json \
        models/fer2013.keras models/fer2013_fast.keras old/fer2013_ensemble.keras:fer2013_2h_kd
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from pipeline import atomic, modelfiles
from pipeline.device import device_name
from pipeline.distill import align_classes, class_order
from pipeline.download import sha256_of
from pipeline.errors import PipelineError, run_cli
from pipeline.splits import load_classes, load_split
from pipeline.tta import VIEWS, best_views, view_count, view_probs


def label(spec: str) -> str:
    """A candidate's name in the results: its file's stem, and the member's layer if it is one."""
    path, _, layer = spec.partition(":")
    return ":".join(filter(None, (Path(path).stem, layer)))


def load_candidate(spec: str):
    """`file.keras` or `file.keras:layer`, with the class names its outputs follow."""
    path, _, layer = spec.partition(":")
    model = modelfiles.load_model(path)
    if layer and layer not in [inner.name for inner in model.layers]:
        raise PipelineError(f"{path} has no member {layer}: its layers are {', '.join(inner.name for inner in model.layers)}")
    return (model.get_layer(layer) if layer else model), modelfiles.read_info(path)["classes"]


def candidate_views(spec: str, splits: dict[str, dict], classes: list[str], tta: str, batch_size: int) -> dict[str, np.ndarray]:
    model, own = load_candidate(spec)
    order = class_order(own, classes, spec)
    return {
        split: np.stack([align_classes(p, order) for p in view_probs(model, data["x"], tta, batch_size)])
        for split, data in splits.items()
    }


def score_subsets(views: dict[str, dict[str, np.ndarray]], splits: dict[str, dict]) -> list[dict]:
    rows = []
    names = list(views)
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            val = np.mean([views[name]["val"] for name in subset], axis=0)
            chosen, val_scores = best_views(list(val), splits["val"]["y"])  # a VIEWS entry beyond the views
            # predicted scores as the last one predicted, and a tie goes to fewer views: never chosen
            test = np.mean([views[name]["test"] for name in subset], axis=0)
            n = view_count(chosen)
            test_acc = float((test[:n].mean(axis=0).argmax(axis=1) == splits["test"]["y"]).mean())
            rows.append({"members": list(subset), "views": chosen, "val": val_scores[chosen], "test": test_acc})
    return sorted(rows, key=lambda row: (-row["val"], len(row["members"])))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("candidates", nargs="+", help="model files, or file.keras:layer for an ensemble's member")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tta", choices=list(VIEWS), default="flip_shift", help="the views each candidate predicts")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    classes = load_classes(args.prepared)
    splits = {"val": load_split(args.prepared / "val.npz"), "test": load_split(args.prepared / "test.npz")}
    start = time.perf_counter()
    labels = [label(spec) for spec in args.candidates]
    if len(set(labels)) < len(labels):
        raise PipelineError("two candidates have the same file name: give each file a name of its own")
    views = {name: candidate_views(spec, splits, classes, args.tta, args.batch_size) for name, spec in zip(labels, args.candidates)}
    rows = score_subsets(views, splits)
    pick = rows[0]
    result = {
        "command": shlex.join(["python", "-m", "benchmarks.ensemble_search", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": device_name(),
        "split_val": "FER2013 PublicTest (validation)",
        "split_test": "FER2013 PrivateTest (test)",
        "candidates": {name: {"file": Path(spec.partition(":")[0]).name, "sha256": sha256_of(Path(spec.partition(":")[0]))}
                       for name, spec in zip(labels, args.candidates)},
        "tta_predicted": args.tta,
        "pick_by_validation": pick,
        "best_on_test_for_reference": max(rows, key=lambda row: row["test"]),
        "predict_seconds": round(time.perf_counter() - start, 1),
        "subsets": rows,
    }
    atomic.write_json(args.out, result)
    for row in rows[:15]:
        print(f"val {row['val']:.4f} test {row['test']:.4f} {row['views']:<10} {' + '.join(row['members'])}")


if __name__ == "__main__":
    run_cli(main)
