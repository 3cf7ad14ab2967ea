"""Time to accuracy: validation accuracy after each epoch against training minutes, one line per model,
and the test accuracy where each run ended, from the .json files the train stage and `pipeline.ship` write.

    python -m benchmarks.time_to_accuracy models/fer2013.json models/ferplus.json --out plots/time_to_accuracy.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline import atomic  # noqa: E402


def draw(runs: dict[str, dict]):
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # one colour a run for up to 20 runs (the default cycle has 10)
    for label, info in runs.items():
        history = info["history"]
        line, = ax.plot([h["minutes"] for h in history], [100 * h["val_accuracy"] for h in history], marker="o", ms=3, label=f"{label}: validation")
        if "test" in info:
            ax.plot(history[-1]["minutes"], 100 * info["test"]["accuracy"], marker="*", ms=14, color=line.get_color(), ls="none",
                    label=f"{label}: test {100 * info['test']['accuracy']:.1f} % ({info['splits']['test']})")
    ax.set_xlabel("training minutes (wall clock, as measured by the train stage)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Time to accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("infos", nargs="+", help="model .json files with a `history`, each as PATH or LABEL=PATH")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    labelled = [info.split("=", 1) if "=" in info else (Path(info).stem, info) for info in args.infos]
    runs = {label: json.loads(Path(path).read_text()) for label, path in labelled}
    atomic.save_figure(args.out, draw(runs))
    print(args.out)


if __name__ == "__main__":
    main()
