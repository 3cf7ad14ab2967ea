"""Typed, validated view of params.yaml, loaded once per stage.

A wrong value stops the stage before any work, with a message that names the key and what it allows.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import PipelineError

Dataset = Literal["fer2013", "fer2013-images", "apollo6", "ferplus"]


@dataclass(frozen=True)
class DataParams:
    dataset: Dataset = "ferplus"
    source: Literal["sample", "mirror", "kaggle"] = "sample"
    mirror: str = "../shared/datasets"
    classes: Literal["fer7", "fer6", "ferplus8"] = "fer7"
    val_fraction: float = field(default=0.1, metadata={"min": 0.0, "max": 0.5})
    seed: int = 42


@dataclass(frozen=True)
class SampleParams:
    images_per_class: int = field(default=80, metadata={"min": 4})
    seed: int = 7


@dataclass(frozen=True)
class CleanParams:
    on_bad: Literal["drop", "error"] = "drop"
    blank_std: float = field(default=3.0, metadata={"min": 0.0})
    duplicates: bool = True
    leaks: bool = True
    nonfaces: bool = True
    include_test: bool = False  # off: the test split stays the official one, comparable with published scores


@dataclass(frozen=True)
class RelabelParams:
    scheme: Literal["none", "majority", "plurality", "distribution"] = "majority"
    min_agreement: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})


@dataclass(frozen=True)
class BalanceParams:
    method: Literal["none", "class_weight", "oversample", "undersample", "smote"] = "class_weight"
    seed: int = 42


@dataclass(frozen=True)
class AugmentParams:
    flip: bool = True
    rotation: float = field(default=0.05, metadata={"min": 0.0, "max": 0.5})
    shift: float = field(default=0.1, metadata={"min": 0.0, "max": 0.5})
    zoom: float = field(default=0.1, metadata={"min": 0.0, "max": 0.9})
    contrast: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    erasing: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    salt_pepper: float = field(default=0.0, metadata={"min": 0.0, "max": 0.5})


@dataclass(frozen=True)
class TrainParams:
    epochs: int = field(default=3, metadata={"min": 1})
    batch_size: int = field(default=64, metadata={"min": 1})
    lr: float = field(default=0.001, metadata={"min": 0.0})
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = "adam"
    weight_decay: float = field(default=0.0001, metadata={"min": 0.0})  # adamw only
    schedule: Literal["none", "exponential", "plateau", "cosine"] = "none"
    early_stopping: int = field(default=0, metadata={"min": 0})
    label_smoothing: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    l2: float = field(default=0.0, metadata={"min": 0.0})
    dropout: float | None = field(default=None, metadata={"min": 0.0, "max": 0.95})
    warmup_epochs: int = field(default=0, metadata={"min": 0})  # cosine only: linear warm-up from 0
    jit_compile: bool = False  # XLA: measured slower than plain TensorFlow on our 2-core CPU (benchmarks/)
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"  # bf16: CPUs with AVX-512 BF16
    seed: int = 42
    augment: AugmentParams = AugmentParams()


@dataclass(frozen=True)
class EnsembleParams:
    members: tuple[str, ...] = ()
    head_epochs: int = field(default=20, metadata={"min": 1})


@dataclass(frozen=True)
class EvaluateParams:
    tta: Literal["none", "flip", "flip_shift"] = "none"
    batch_size: int = field(default=256, metadata={"min": 1})


@dataclass(frozen=True)
class Params:
    data: DataParams = DataParams()
    sample: SampleParams = SampleParams()
    clean: CleanParams = CleanParams()
    relabel: RelabelParams = RelabelParams()
    balance: BalanceParams = BalanceParams()
    train: TrainParams = TrainParams()
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    ensemble: EnsembleParams = EnsembleParams()
    evaluate: EvaluateParams = EvaluateParams()

    def model_config(self, name: str) -> tuple[TrainParams, dict[str, Any]]:
        """Split `models.<name>` into its training overrides and the builder's own options."""
        if name not in self.models:
            raise PipelineError(
                f"params.yaml: model '{name}' is not under `models` (have: {', '.join(self.models) or 'none'})"
            )
        overrides = dict(self.models[name] or {})
        train_keys = {f.name for f in dataclasses.fields(TrainParams)}
        train_overrides = {k: overrides.pop(k) for k in list(overrides) if k in train_keys}
        merged = dataclasses.asdict(self.train) | train_overrides
        return _build(TrainParams, merged, f"models.{name}"), overrides


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} not found: run the stage from the repository root")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise PipelineError(f"{path} is not valid YAML: {err}".splitlines()[0]) from err
    return parse_params(raw)


def parse_params(raw: dict[str, Any]) -> Params:
    return _build(Params, raw, "")


def _build(cls, raw: Any, prefix: str):
    if not isinstance(raw, dict):
        raise PipelineError(f"params.yaml: `{prefix}` must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise PipelineError(f"params.yaml: unknown key `{key}` (allowed: {', '.join(known)})")
    values = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        values[name] = _coerce(hints[name], value, key, known[name].metadata)
    return cls(**values)


def _coerce(hint, value, key: str, meta) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value or {}, key)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise PipelineError(f"params.yaml: {key}={value!r} is not one of: {', '.join(map(str, args))}")
        return value
    if origin is typing.Union and type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise PipelineError(f"params.yaml: {key} must be a list of names, got {value!r}")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise PipelineError(f"params.yaml: {key} must be a mapping, got {value!r}")
        return {k: dict(v or {}) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise PipelineError(f"params.yaml: {key} must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (hint is int and value != int(value)):
            raise PipelineError(f"params.yaml: {key} must be a {hint.__name__}, got {value!r}")
        value = hint(value)
        low, high = meta.get("min"), meta.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            raise PipelineError(f"params.yaml: {key}={value} is out of range [{low}, {high if high is not None else '∞'}]")
        return value
    if hint is str and not isinstance(value, str):
        raise PipelineError(f"params.yaml: {key} must be a string, got {value!r}")
    return value
