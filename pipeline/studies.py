"""The four studies this zoo comes from, their published numbers, and a reproduction table beside ours.

Each study has a preset in `studies/` (its recipe and its models); its runs are experiments named
`study-<key>` (its recipe) and `ours-<key>` (its models with our CPU recipe, `studies/our-recipe.yaml`):

    dvc exp run --queue -n study-riv $(python -m pipeline.preset studies/riv.yaml studies/cpu-budget.yaml) \
        -S data.mirror=$PWD/../shared/datasets
    dvc queue start -j 1
    python -m pipeline.studies --readme README.md

writes `studies/results.md` and the same table into the README between its `studies` markers. The table reads each experiment's committed metrics, timings and params through git, so it shows what
`dvc exp show` shows; a run that does not exist yet is "not run".
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.atomic import write_text
from pipeline.classes import class_names
from pipeline.errors import PipelineError, run_cli
from pipeline.params import DataParams, Params, parse_params
from pipeline.records import METRICS_DIR, metrics_file, record_file
from pipeline.tools import DVC, output, spawn

STUDIES_DIR = Path("studies")
RUNS = {"study": "its recipe", "ours": "our recipe"}  # experiment name prefix -> column
RUN_PRESETS = {"study": (), "ours": (STUDIES_DIR / "our-recipe.yaml",)}  # put over the study's own preset
CPU_BUDGET = STUDIES_DIR / "cpu-budget.yaml"  # the budget the table's runs had on our 2-core CPU


@dataclass(frozen=True)
class Published:
    """A study's own number for one model: a value or a (low, high) range, in %, and what it was measured on."""

    model: str
    low: float | None
    high: float | None = None
    split: str = "val"
    epochs: int | None = None
    pretrained: bool = False

    def text(self) -> str:
        if self.low is None:
            return "not in our sources"
        value = f"{self.low:g}" if self.high is None else f"{self.low:g}-{self.high:g}"
        return f"{value} % ({self.split})"

    def gap(self, ours: float) -> float:
        """Points from our accuracy to the published value or range (0 inside the range)."""
        high = self.low if self.high is None else self.high
        return 0.0 if self.low <= ours <= high else min(abs(ours - self.low), abs(ours - high))


@dataclass(frozen=True)
class Study:
    title: str
    protocol: str
    published: tuple[Published, ...]


STUDIES: dict[str, Study] = {
    "riv": Study(
        "F-Riv",
        "FER2013, 7 classes, 50 epochs, batch 128",
        (
            Published("riv_base", 63.5, epochs=50),
            Published("riv_avgpool", 65.1, epochs=50),
            Published("riv_wide", 65.5, epochs=50),
            Published("riv_k5", 64.8, epochs=50),
            Published("riv_deep", 65.2, epochs=50),
            Published("riv_valid", 65.1, epochs=50),
            Published("efficientnet_b0", 51.0, epochs=50, pretrained=True),
        ),
    ),
    "mondal": Study(
        "Mondal",
        "FER2013, 7 classes",
        (
            Published("mondal_shallow", 58.0, 61.0),
            Published("mondal_dropout", 58.0, 61.0),
            Published("mondal_deep", 58.0, split="test"),
        ),
    ),
    "moustafa": Study(
        "Moustafa & Smaluch",
        "FER+, majority-vote labels, 8 classes",
        (Published("lenet_bn", 72.57, split="test"), Published("resnet18", None, pretrained=True)),
    ),
    "sodhi": Study(
        "Sodhi & Chiu",
        "6 classes without disgust, on their apollo2506 archive; here FER2013 without disgust",
        (
            Published("sodhi_scratch", 57.76),
            Published("resnet50", 64.84, pretrained=True),
            Published("mobilenet_v2", 62.90, pretrained=True),
            Published("inception_v3", 65.93, pretrained=True),
            Published("ensemble", 66.72),
        ),
    ),
}


def preset_path(key: str) -> Path:
    return STUDIES_DIR / f"{key}.yaml"


def commands(key: str) -> dict[str, str]:
    """The command that queues each run of a study, as the table prints it: a queued run starts in a
    temporary copy of the repository, so the mirror is given as an absolute path."""
    return {
        prefix: f"dvc exp run --queue -n {prefix}-{key} $(python -m pipeline.preset "
        + " ".join(str(path) for path in (preset_path(key), *RUN_PRESETS[prefix], CPU_BUDGET))
        + f") -S data.mirror=$PWD/{DataParams().mirror}"
        for prefix in RUNS
    }


def experiment_revs() -> dict[str, str]:
    """Experiment name -> commit of each finished experiment, over every baseline (`dvc exp show -A`), newest
    baseline first. A queued, running or failed one has an executor; its commit holds its baseline's metrics."""
    revs: dict[str, str] = {}
    for baseline in json.loads(output([*DVC, "exp", "show", "--json", "-A"]) or "[]"):
        for experiment in baseline.get("experiments") or []:
            if (experiment.get("executor") or {}).get("state", "success") != "success":
                continue
            for rev in experiment.get("revs") or []:
                if rev.get("name"):
                    revs.setdefault(rev["name"], rev["rev"])
    return revs


def read_at(rev: str, path: str) -> str | None:
    proc = spawn(["git", "show", f"{rev}:{path}"])
    return proc.stdout if proc.returncode == 0 else None


@functools.cache
def params_at(rev: str) -> Params:
    return parse_params(yaml.safe_load(read_at(rev, "params.yaml") or "{}"))


def run_result(rev: str, model: str) -> dict | None:
    """One model's test accuracy (%), epochs, training minutes and time budget (`train.max_minutes`, 0 for
    none; an ensemble's is its members') in an experiment; None if it has none."""
    metrics = read_at(rev, metrics_file(METRICS_DIR, model).as_posix())
    if metrics is None:
        return None
    timing = json.loads(read_at(rev, record_file(METRICS_DIR, model).as_posix()) or "{}")  # the evaluate stage's; ensembles have none
    metrics, params = json.loads(metrics), params_at(rev)
    budget = params.model_config(model)[0].max_minutes if model in params.models else params.train.max_minutes
    return {
        "accuracy": 100 * metrics["accuracy"], "epochs": timing.get("epochs"), "minutes": timing.get("train_minutes"),
        "budget": budget, "one_class": predicts_one_class(metrics["macro_recall"], len(class_names(params.data.classes))),
    }  # fmt: skip


def predicts_one_class(macro_recall: float, classes: int) -> bool:
    """Recall 1 on one class and 0 on the others averages to 1/classes (to the 4 decimals evaluate writes)."""
    return math.isclose(macro_recall * classes, 1.0, abs_tol=1e-3)


def why_different(study: str, published: Published, run: dict) -> str:
    """The known reasons our number can differ from the study's: each a fact about the two runs."""
    reasons = []
    if published.pretrained:
        reasons.append("trained from scratch (no ImageNet weights here)")
    if run["budget"]:
        of = f" of the study's {published.epochs}" if published.epochs else ""
        ran = f"{run['epochs']:g}{of} epochs" if run["epochs"] else "for each member"
        reasons.append(f"a {run['budget']:g}-minute training budget on the 2-core CPU ({ran})")
    elif published.epochs and run["epochs"] and run["epochs"] < published.epochs:
        reasons.append(f"{run['epochs']:g} of the study's {published.epochs} epochs (CPU budget)")
    if run["one_class"]:
        reasons.append("the net had not yet left the one-class solution: it predicts one class for every face")
    if study == "sodhi":
        reasons.append("FER2013 without disgust, not the study's archive")
    if published.split == "val":
        reasons.append("the study reports validation accuracy, ours is on the test split")
    return "; ".join(reasons) or "not explained by a known difference in data or budget"


def cell(published: Published, run: dict | None) -> str:
    if run is None:
        return "not run"
    timing = ", ".join(part for part in (f"{run['epochs']:g} ep" if run["epochs"] else "", f"{run['minutes']:.0f} min" if run["minutes"] else "") if part)
    return f"{run['accuracy']:.1f} %" + (f" ({timing})" if timing else "")


def table(revs: dict[str, str]) -> str:
    """Markdown: one row per published model, our runs beside it, and a sentence for each gap over 3 points."""
    lines = [
        "| study | model | published | " + " | ".join(f"ours, {column}" for column in RUNS.values()) + " | more than 3 points off: why |",
        "|---|---|---|" + "---|" * len(RUNS) + "---|",
    ]
    for key, study in STUDIES.items():
        for published in study.published:
            runs = {prefix: run_result(revs[f"{prefix}-{key}"], published.model) if f"{prefix}-{key}" in revs else None for prefix in RUNS}
            study_run = runs["study"]
            gap = study_run is not None and published.low is not None and published.gap(study_run["accuracy"]) > 3
            why = why_different(key, published, study_run) if gap else ""
            lines.append(
                f"| {study.title} | `{published.model}` | {published.text()} | "
                + " | ".join(cell(published, run) for run in runs.values()) + f" | {why} |"
            )
    lines += [
        "",
        f"Commands (from the repository root, then `dvc queue start -j 1`; `ours-` runs put our CPU recipe over the study's; "
        f"leave out {CPU_BUDGET} for the study's full budget):",
        "",
    ]
    for key, study in STUDIES.items():
        lines += [f"- {study.title} ({study.protocol}): " + "; ".join(f"`{command}`" for command in commands(key).values())]
    return "\n".join(lines) + "\n"


MARKERS = ("<!-- studies: start (python -m pipeline.studies --readme README.md) -->", "<!-- studies: end -->")


def with_table(readme: str, text: str) -> str:
    """The README with `text` between the markers."""
    start, end = (readme.find(marker) for marker in MARKERS)
    if start < 0 or end < start:
        raise PipelineError(f"the README lacks the markers {MARKERS[0]} ... {MARKERS[1]}: add them where the table goes")
    return readme[: start + len(MARKERS[0])] + "\n" + text + readme[end:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=STUDIES_DIR / "results.md")
    parser.add_argument("--readme", type=Path, help="also put the table into this README, between its markers")
    args = parser.parse_args(argv)
    text = table(experiment_revs())
    if args.readme:
        write_text(args.readme, with_table(args.readme.read_text(), text))
    write_text(args.out, text)
    print(text, end="")


if __name__ == "__main__":
    run_cli(main)
