"""Turn a params preset (a partial params.yaml) into `dvc exp run -S` arguments.

    dvc exp run $(python -m pipeline.preset params-full.yaml) -S data.source=mirror

Each leaf becomes one `-S key=value`, so the run is an ordinary experiment whose changed params
`dvc exp show` lists; later `-S` on the same command line win.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from pipeline.errors import PipelineError, run_cli
from pipeline.params import parse_params


def flatten(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    leaves = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            leaves += flatten(value, f"{path}.")
        else:
            leaves.append((path, value))
    return leaves


def set_param_args(preset: dict) -> list[str]:
    """`-S` arguments in Hydra's override grammar, values in YAML flow style without spaces so the shell keeps
    each one whole."""
    args = []
    for key, value in flatten(preset):
        text = json.dumps(value, separators=(",", ":"))
        args += ["-S", f"++{key}={text}"]  # `++`: set the key, or add it (a model the preset brings in)
    return args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", type=Path)
    args = parser.parse_args(argv)
    if not args.preset.exists():
        raise PipelineError(f"{args.preset} not found: give the path of a params preset such as params-full.yaml")
    preset = yaml.safe_load(args.preset.read_text()) or {}
    base = yaml.safe_load(Path("params.yaml").read_text()) if Path("params.yaml").exists() else {}
    parse_params(_merge(base, preset))  # a bad key or value stops here, not halfway through a run
    print(" ".join(set_param_args(preset)))


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged.get(key) or {}, value) if isinstance(value, dict) and value else value
    return merged


if __name__ == "__main__":
    run_cli(main)
