"""Typed, validated view of params.yaml, loaded once per stage.

A wrong value stops the stage before any work, with a message that names the key and what it allows:
every number must be finite and in its range (`min`/`max`, `above` for a strict lower bound), and the
rules that tie several keys together live in RULES, the one place every stage and preset goes through.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import PipelineError

SEED_MAX = 2**32 - 1  # numpy and scikit-learn seeds are 32-bit
Dataset = Literal["fer2013", "fer2013-images", "apollo6", "ferplus"]


@dataclass(frozen=True)
class DataParams:
    dataset: Dataset = "ferplus"
    source: Literal["sample", "mirror", "kaggle"] = "sample"
    mirror: str = "../shared/datasets"
    classes: Literal["fer7", "fer6", "ferplus8"] = "fer7"
    val_fraction: float = field(default=0.1, metadata={"min": 0.0, "max": 0.5})
    seed: int = field(default=42, metadata={"min": 0, "max": SEED_MAX})


@dataclass(frozen=True)
class SampleParams:
    images_per_class: int = field(default=80, metadata={"min": 4, "max": 100_000})
    seed: int = field(default=7, metadata={"min": 0, "max": SEED_MAX})


@dataclass(frozen=True)
class CleanParams:
    on_bad: Literal["drop", "error"] = "drop"
    blank_std: float = field(default=3.0, metadata={"min": 0.0, "max": 128.0})  # 128 would drop every image
    duplicates: bool = True
    leaks: bool = True
    nonfaces: bool = True
    include_test: bool = False  # off: the test split stays the official one, comparable with published scores


@dataclass(frozen=True)
class RelabelParams:
    scheme: Literal["none", "majority", "plurality", "distribution", "blend"] = "majority"
    min_agreement: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})


@dataclass(frozen=True)
class BalanceParams:
    method: Literal["none", "class_weight", "oversample", "undersample", "smote"] = "class_weight"
    seed: int = field(default=42, metadata={"min": 0, "max": SEED_MAX})


@dataclass(frozen=True)
class DistillParams:
    teacher: str = ""  # a shipped model's name (models/<teacher>.keras); "" trains on the labels alone
    weight: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})  # the teacher's share of each target
    init: str = ""  # a shipped model whose weights every trained model starts from (same architecture); "" = random


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
    batch_size: int = field(default=64, metadata={"min": 1, "max": 65_536})
    lr: float = field(default=0.001, metadata={"above": 0.0, "max": 10.0})
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = "adam"
    weight_decay: float = field(default=0.0001, metadata={"min": 0.0, "max": 1.0})  # adamw only
    schedule: Literal["none", "exponential", "plateau", "cosine"] = "none"
    early_stopping: int = field(default=0, metadata={"min": 0, "max": 10_000})
    max_minutes: float = field(default=0.0, metadata={"min": 0.0, "max": 1e6})  # wall-time cap on training; 0 = none
    label_smoothing: float = field(default=0.0, metadata={"min": 0.0, "max": 0.9})
    mix: Literal["none", "mixup", "cutmix"] = "none"  # blend pairs of training images and their targets
    mix_alpha: float = field(default=0.2, metadata={"above": 0.0, "max": 10.0})  # Beta(alpha, alpha) mixing weights
    l2: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    # momentum of a moving average of the weights that validation, the best epoch and the saved model use; 0 = off
    ema: float = field(default=0.0, metadata={"min": 0.0, "max": 0.99999})
    dropout: float | None = field(default=None, metadata={"min": 0.0, "max": 0.95})
    warmup_epochs: int = field(default=0, metadata={"min": 0, "max": 10_000})  # cosine only: linear warm-up from 0
    jit_compile: bool = False  # XLA: measured slower than plain TensorFlow on our 2-core CPU (benchmarks/)
    # auto: the mixed precision this machine computes natively, else float32 (pipeline.device.native_precision)
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16", "auto"] = "float32"
    seed: int = field(default=42, metadata={"min": 0, "max": SEED_MAX})
    augment: AugmentParams = AugmentParams()


@dataclass(frozen=True)
class EnsembleParams:
    members: tuple[str, ...] = ()
    head_epochs: int = field(default=20, metadata={"min": 1, "max": 10_000})


@dataclass(frozen=True)
class EvaluateParams:
    tta: Literal["none", "flip", "flip_shift", "auto"] = "none"  # auto: the views that score best on val
    batch_size: int = field(default=256, metadata={"min": 1, "max": 65_536})


@dataclass(frozen=True)
class Params:
    data: DataParams = DataParams()
    sample: SampleParams = SampleParams()
    clean: CleanParams = CleanParams()
    relabel: RelabelParams = RelabelParams()
    balance: BalanceParams = BalanceParams()
    distill: DistillParams = DistillParams()
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


class ParamsError(PipelineError):
    """A wrong params value; `keys` are the dotted keys at fault, so a failed experiment can put them back."""

    def __init__(self, message: str, keys: tuple[str, ...]):
        super().__init__(f"params.yaml: {message}")
        self.keys = keys


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check params.yaml; inside a DVC stage, first hold the workspace (see pipeline.workspace)."""
    from pipeline import workspace

    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} not found: run the stage from the repository root")
    workspace.hold()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise PipelineError(f"{path} is not valid YAML: {err}".splitlines()[0]) from err
    try:
        return parse_params(raw)
    except ParamsError as err:
        workspace.undo_failed_experiment(path, err.keys)
        raise


def parse_params(raw: dict[str, Any]) -> Params:
    """Types and ranges key by key, then each model's merged training settings, then the cross-field RULES."""
    params = _build(Params, raw, "")
    for name in params.models:
        params.model_config(name)
    for rule in RULES.values():
        rule(params)
    return params


def _train_configs(params: Params) -> Iterator[tuple[str, TrainParams]]:
    """`train` and every model's effective training settings (its overrides merged in), with the key prefix."""
    yield "train", params.train
    for name in params.models:
        yield f"models.{name}", params.model_config(name)[0]


def _warmup_below_epochs(params: Params) -> None:
    """A warm-up as long as the run leaves the cosine decay no steps (Keras then divides by zero)."""
    for prefix, train in _train_configs(params):
        if train.warmup_epochs and train.warmup_epochs >= train.epochs:
            raise ParamsError(
                f"{prefix}.warmup_epochs={train.warmup_epochs} must be below {prefix}.epochs={train.epochs}",
                tuple(dict.fromkeys(("train.warmup_epochs", "train.epochs", f"{prefix}.warmup_epochs", f"{prefix}.epochs"))),
            )


def _mix_alpha_only_with_mix(params: Params) -> None:
    """Without a mix the batches are plain: a changed train.mix_alpha would be silently ignored."""
    for prefix, train in _train_configs(params):
        if train.mix == "none" and train.mix_alpha != TrainParams.mix_alpha:
            raise ParamsError(
                f"{prefix}.mix_alpha={train.mix_alpha} applies only with {prefix}.mix=mixup or cutmix: "
                f"set the mix or put the alpha back to {TrainParams.mix_alpha}",
                tuple(dict.fromkeys(("train.mix_alpha", "train.mix", f"{prefix}.mix_alpha", f"{prefix}.mix"))),
            )


def _members_are_models(params: Params) -> None:
    """The ensemble stage loads each member's trained model: a name not under `models` is never trained."""
    unknown = [m for m in params.ensemble.members if m not in params.models]
    if unknown:
        raise ParamsError(
            f"ensemble.members has {', '.join(unknown)}, not under `models` (have: {', '.join(params.models) or 'none'})",
            ("ensemble.members",),
        )
    if len(set(params.ensemble.members)) != len(params.ensemble.members):
        raise ParamsError(f"ensemble.members lists a model twice: {list(params.ensemble.members)}", ("ensemble.members",))


def _min_agreement_only_for_plurality(params: Params) -> None:
    """Only the plurality scheme reads min_agreement; a changed value elsewhere would be silently ignored."""
    relabel = params.relabel
    if relabel.scheme != "plurality" and relabel.min_agreement != RelabelParams.min_agreement:
        raise ParamsError(
            f"relabel.min_agreement={relabel.min_agreement} applies to relabel.scheme=plurality only "
            f"(got {relabel.scheme}): set the scheme or put min_agreement back to {RelabelParams.min_agreement}",
            ("relabel.min_agreement", "relabel.scheme"),
        )


def _weight_only_with_teacher(params: Params) -> None:
    """Without a teacher the targets are the labels: a changed distill.weight would be silently ignored."""
    distill = params.distill
    if not distill.teacher and distill.weight != DistillParams.weight:
        raise ParamsError(
            f"distill.weight={distill.weight} applies only with distill.teacher (a shipped model, e.g. fer2013): "
            f"set the teacher or put the weight back to {DistillParams.weight}",
            ("distill.weight", "distill.teacher"),
        )


def _relabel_needs_votes(params: Params) -> None:
    if params.relabel.scheme != "none" and params.data.dataset != "ferplus":
        raise ParamsError(
            f"relabel.scheme={params.relabel.scheme} needs the FER+ votes: set data.dataset=ferplus or relabel.scheme=none",
            ("relabel.scheme", "data.dataset"),
        )


def _ferplus8_needs_relabel(params: Params) -> None:
    if params.data.classes == "ferplus8" and params.relabel.scheme in ("none", "blend"):
        raise ParamsError(
            f"data.classes=ferplus8 needs FER+ labels (contempt), which relabel.scheme={params.relabel.scheme} keeps out: "
            "set relabel.scheme to majority, plurality or distribution",
            ("data.classes", "relabel.scheme"),
        )


def _apollo_is_fer6(params: Params) -> None:
    if params.data.dataset == "apollo6" and params.data.classes != "fer6":
        raise ParamsError(
            f"data.dataset=apollo6 has 6 classes: set data.classes=fer6 (got {params.data.classes})",
            ("data.classes", "data.dataset"),
        )


def _image_folders_need_val(params: Params) -> None:
    """Image-folder datasets have no val split of their own: val_fraction=0 would leave training without one."""
    if params.data.dataset in ("fer2013-images", "apollo6") and params.data.val_fraction == 0:
        raise ParamsError(
            f"data.val_fraction=0 leaves {params.data.dataset} without a val split: use a value in (0, 0.5]",
            ("data.val_fraction",),
        )


# Rules that tie keys together, each raising ParamsError; parse_params runs all of them, so every stage and
# every preset (pipeline.preset) is held to the same ones.
RULES: dict[str, Callable[[Params], None]] = {
    "warmup_below_epochs": _warmup_below_epochs,
    "mix_alpha_only_with_mix": _mix_alpha_only_with_mix,
    "members_are_models": _members_are_models,
    "min_agreement_only_for_plurality": _min_agreement_only_for_plurality,
    "weight_only_with_teacher": _weight_only_with_teacher,
    "relabel_needs_votes": _relabel_needs_votes,
    "ferplus8_needs_relabel": _ferplus8_needs_relabel,
    "apollo_is_fer6": _apollo_is_fer6,
    "image_folders_need_val": _image_folders_need_val,
}


def _build(cls, raw: Any, prefix: str):
    if not isinstance(raw, dict):
        raise ParamsError(f"`{prefix}` must be a mapping, got {raw!r}", (prefix,))
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ParamsError(f"unknown key `{key}` (allowed: {', '.join(known)})", (key,))
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
            raise ParamsError(f"{key}={value!r} is not one of: {', '.join(map(str, args))}", (key,))
        return value
    if origin is typing.Union and type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ParamsError(f"{key} must be a list of names, got {value!r}", (key,))
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, dict | None) for v in value.values()):
            raise ParamsError(f"{key} must be a mapping of names to mappings, got {value!r}", (key,))
        return {str(k): dict(v or {}) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key} must be true or false, got {value!r}", (key,))
        return value
    if hint in (int, float):
        return _number(hint, value, key, meta)
    if hint is str and not isinstance(value, str):
        raise ParamsError(f"{key} must be a string, got {value!r}", (key,))
    return value


def _number(hint: type, value: Any, key: str, meta) -> int | float:
    """A finite int or float within the field's bounds: NaN compares false with every bound, so it is refused first."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamsError(f"{key} must be a {hint.__name__}, got {value!r}", (key,))
    if not math.isfinite(value):
        raise ParamsError(f"{key}={value} is not a finite number", (key,))
    if hint is int and value != int(value):
        raise ParamsError(f"{key} must be a whole number, got {value!r}", (key,))
    value = hint(value)
    low, above, high = meta.get("min"), meta.get("above"), meta.get("max")
    too_low = (low is not None and value < low) or (above is not None and value <= above)
    if too_low or (high is not None and value > high):
        left = f"[{low}" if above is None else f"({above}"
        raise ParamsError(f"{key}={value} is out of range {left}, {high if high is not None else '∞'}]", (key,))
    return value
