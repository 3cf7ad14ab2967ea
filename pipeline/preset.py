"""Turn params presets (partial params.yaml files) into `dvc exp run -S` arguments.

    dvc exp run $(python -m pipeline.preset params-full.yaml) -S data.source=mirror
    dvc exp run $(python -m pipeline.preset studies/riv.yaml studies/our-recipe.yaml)

Several presets apply in order, a later one's keys winning. Each leaf becomes one `-S ++key=value`, so the run is an ordinary experiment whose changed params
`dvc exp show` lists; later `-S` on the same command line win. A preset's `models` is the experiment's
whole model set: params.yaml's own models (and their overrides) are removed first (`-S ~models.<name>`),
so an experiment trains what its preset names and nothing tuned for the sample leaks in.
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


def set_param_args(preset: dict, base: dict) -> list[str]:
    """`-S` arguments in Hydra's override grammar over params.yaml's `base`, values in YAML flow style without
    spaces so the shell keeps each one whole."""
    args = []
    if "models" in preset:
        for name in base.get("models") or {}:
            args += ["-S", f"~models.{name}"]
    for key, value in flatten(preset):
        text = json.dumps(value, separators=(",", ":"))
        args += ["-S", f"++{key}={text}"]  # `++`: set the key, or add it (a model the preset brings in)
    return args


def apply_preset(base: dict, preset: dict) -> dict:
    """The params an experiment runs with: `preset` over `base` key by key, its `models` replacing base's."""
    return _merge(base, preset) | ({"models": preset["models"]} if "models" in preset else {})


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged.get(key) or {}, value) if isinstance(value, dict) and value else value
    return merged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", type=Path, nargs="+", metavar="preset")
    args = parser.parse_args(argv)
    preset: dict = {}
    for path in args.presets:
        if not path.exists():
            raise PipelineError(f"{path} not found: give the path of a params preset such as params-full.yaml")
        preset = apply_preset(preset, yaml.safe_load(path.read_text()) or {})
    base = yaml.safe_load(Path("params.yaml").read_text()) if Path("params.yaml").exists() else {}
    parse_params(apply_preset(base, preset))  # a bad key or value stops here, not halfway through a run
    print(" ".join(set_param_args(preset, base)))


if __name__ == "__main__":
    run_cli(main)
