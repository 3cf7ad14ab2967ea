"""Stage `prepare`: decode the raw archives, clean, relabel, and write one array file per split."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import archives, atomic, plots, workspace
from pipeline.classes import class_names
from pipeline.clean import blank_mask, duplicate_mask, image_hashes, leak_mask, nonface_mask
from pipeline.decode import Decoded, decode_fer2013_csv, decode_image_folders, read_ferplus_votes, text_of
from pipeline.errors import PipelineError, run_cli
from pipeline.params import Params, load_params
from pipeline.raw import FERPLUS_VOTES, RAW_FILES
from pipeline.relabel import relabel_splits

SPLITS = ("train", "val", "test")


@dataclass
class Prepared:
    splits: dict[str, dict[str, np.ndarray]]
    classes: tuple[str, ...]
    report: dict


def decode_dataset(raw_dir: Path, params: Params) -> tuple[Decoded, np.ndarray | None]:
    """Decode the chosen dataset's raw files; FER+ votes come back aligned with the decoded rows."""
    dataset = params.data.dataset
    paths = [raw_dir / name for name in RAW_FILES[dataset]]
    for path in paths:
        if not path.exists():
            raise PipelineError(f"{path} not found: run `dvc repro download` (or python -m pipeline.download) first")
    if dataset in ("fer2013", "ferplus"):
        decoded = decode_fer2013_csv(text_of(archives.read_member(paths[0], "fer2013/fer2013.csv")))
        if dataset == "fer2013":
            return decoded, None
        n_rows = len(decoded.meta) + len(decoded.bad)
        votes, bad_votes = read_ferplus_votes(text_of((raw_dir / FERPLUS_VOTES).read_bytes()), n_rows)
        decoded = drop_bad_votes(decoded, bad_votes)
        return decoded, votes[decoded.meta["row"].to_numpy()]
    members = archives.iter_members(paths[0])
    folders = archives.folder_names(paths[0])
    return decode_image_folders(members, paths[0].name, params.data.val_fraction, params.data.seed, folders), None


def drop_bad_votes(decoded: Decoded, bad_votes: dict[int, str]) -> Decoded:
    """Images whose FER+ vote row is malformed cannot be relabelled: they join the bad rows."""
    rows = decoded.meta["row"].to_numpy()
    hit = np.isin(rows, list(bad_votes))
    kept = decoded.take(~hit)
    return Decoded(kept.images, kept.meta, decoded.bad + [f"{FERPLUS_VOTES} row {r + 2}: {bad_votes[r]}" for r in rows[hit]])


def prepare(decoded: Decoded, votes: np.ndarray | None, params: Params) -> Prepared:
    """Apply the cleaning rules, then the relabelling, counting what each step removed per split and class."""
    clean, classes = params.clean, class_names(params.data.classes)
    meta = decoded.meta
    if decoded.bad and clean.on_bad == "error":
        raise PipelineError(f"{len(decoded.bad)} bad rows/images, first: {decoded.bad[0]} (set clean.on_bad=drop to skip them)")
    dropped = np.full(len(meta), "", dtype=object)
    steps = {"decoded": _counts(meta, dropped == "")}

    cleanable = np.ones(len(meta), bool) if clean.include_test else (meta["split"] != "test").to_numpy()

    def apply(step: str, mask: np.ndarray) -> None:
        dropped[(dropped == "") & cleanable & mask] = step
        steps[step] = _counts(meta, dropped == "")

    if clean.blank_std > 0:
        apply("blank", blank_mask(decoded.images, clean.blank_std))
    if clean.nonfaces and votes is not None:
        apply("nonface", nonface_mask(votes))
    hashes = image_hashes(decoded.images)
    kept = dropped == ""
    if clean.duplicates:
        mask = np.zeros(len(meta), bool)
        mask[kept] = duplicate_mask(hashes[kept], meta["split"][kept])
        apply("duplicate", mask)
    if clean.leaks:
        kept = dropped == ""
        mask = np.zeros(len(meta), bool)
        mask[kept] = leak_mask(hashes[kept], meta["split"][kept])
        apply("leak", mask)

    is_train = (meta["split"] == "train").to_numpy()
    result = relabel_splits(params.relabel.scheme, votes, meta["label"].to_numpy(), is_train, classes, params.relabel.min_agreement)
    kept = dropped == ""
    dropped[kept & (result.reasons != "")] = result.reasons[kept & (result.reasons != "")]
    final = dropped == ""
    new_names = np.where(result.labels >= 0, np.array(classes)[np.maximum(result.labels, 0)], "dropped")
    steps["relabelled"] = _counts(meta.assign(label=new_names), final)

    splits = {}
    for split in SPLITS:
        rows = final & (meta["split"] == split).to_numpy()
        splits[split] = {
            "x": decoded.images[rows],
            "y": result.labels[rows],
            "targets": result.targets[rows],
            "source": meta["source"].to_numpy()[rows].astype(str),
        }
    confusion = pd.crosstab(meta["label"][kept], pd.Series(new_names[kept], name="new"))
    report = {
        "dataset": params.data.dataset,
        "classes": list(classes),
        "bad": len(decoded.bad),
        "bad_examples": decoded.bad[:20],
        "dropped": {reason: int((dropped == reason).sum()) for reason in pd.unique(dropped) if reason},
        "relabelled": int((meta["label"].to_numpy()[final] != new_names[final]).sum()),
        "relabel_confusion": {orig: row[row > 0].to_dict() for orig, row in confusion.iterrows()},
        "steps": steps,
    }
    return Prepared(splits, classes, report)


def _counts(meta: pd.DataFrame, mask: np.ndarray) -> dict[str, dict[str, int]]:
    table = meta[mask].groupby(["split", "label"]).size()
    return {split: {label: int(n) for label, n in table[split].items()} for split in SPLITS if split in table}


def summary_metrics(prepared: Prepared) -> dict:
    """The short keys `dvc exp show` gets as columns."""
    report = prepared.report
    return {
        **{split: len(prepared.splits[split]["y"]) for split in SPLITS},
        "bad": report["bad"],
        **{f"dropped_{reason}": n for reason, n in sorted(report["dropped"].items())},
        "relabelled": report["relabelled"],
    }


def write_outputs(prepared: Prepared, out: Path, metrics_dir: Path, plots_dir: Path) -> None:
    for folder in (out.parent, metrics_dir, plots_dir):
        workspace.remove_orphans(folder)  # a run killed mid-write leaves hidden temporaries beside its outputs
    with atomic.atomic_dir(out) as tmp:
        for split, arrays in prepared.splits.items():
            atomic.save_npz(tmp / f"{split}.npz", **arrays)
        atomic.write_json(tmp / "classes.json", list(prepared.classes))
    atomic.write_json(metrics_dir / "data.json", summary_metrics(prepared))
    atomic.write_json(metrics_dir / "data_report.json", prepared.report)
    plots.write_data_plots(prepared.splits, prepared.classes, prepared.report, plots_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("data/prepared"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--plots", type=Path, default=Path("plots/data"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    decoded, votes = decode_dataset(args.raw, params)
    for line in decoded.bad[:10]:
        print(f"bad: {line}")
    prepared = prepare(decoded, votes, params)
    write_outputs(prepared, args.out, args.metrics, args.plots)
    print(", ".join(f"{k}={v}" for k, v in summary_metrics(prepared).items()))


if __name__ == "__main__":
    run_cli(main)
