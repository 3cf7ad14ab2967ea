"""Stage `compare`: one table and one chart of every model's test metrics, and `summary.json`: one column per
model (its test accuracy) for a compact `dvc exp show`. `--keep` matches the column names exp show prints,
so the keys carry a prefix no other metric has: `acc_<model>`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from pipeline import atomic, plots
from pipeline.errors import PipelineError, run_cli
from pipeline.params import load_params
from pipeline.records import metrics_file, record_file

COLUMNS = ("accuracy", "macro_f1", "macro_auroc", "top2_accuracy", "loss")


def compare_table(names: list[str], metrics_dir: Path) -> pd.DataFrame:
    rows = []
    for name in names:
        path = metrics_file(metrics_dir, name)
        if not path.exists():
            raise PipelineError(f"{path} not found: evaluate the model first (`dvc repro evaluate@{name}`)")
        metrics = json.loads(path.read_text())
        speed_path = record_file(metrics_dir, name)
        speed = json.loads(speed_path.read_text()) if speed_path.exists() else {}
        rows.append({"model": name, **{c: metrics[c] for c in COLUMNS}, "ms_per_image": speed.get("ms_per_image")})
    return pd.DataFrame(rows).sort_values("accuracy", ascending=False, kind="stable").reset_index(drop=True)


SUMMARY_PREFIX = "acc_"


def summary(table: pd.DataFrame) -> dict[str, float]:
    return {f"{SUMMARY_PREFIX}{row.model}": round(float(row.accuracy), 4) for row in table.itertuples()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--out", type=Path, default=Path("plots/compare"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    names = list(params.models) + (["ensemble", "ensemble_stacked"] if params.ensemble.members else [])
    table = compare_table(names, args.metrics)
    plots.write_csv(args.out / "compare.csv", table)
    atomic.write_json(args.out / "summary.json", summary(table))
    atomic.write_text(args.out / "compare.md", table.to_markdown(index=False, floatfmt=".4f") + "\n")
    atomic.save_figure(args.out / "compare.png", plots.compare_figure(table))
    print(table.to_string(index=False))


if __name__ == "__main__":
    run_cli(main)
