"""The one owner of model files: `<name>.keras` beside `<name>.json`, saved atomically, loaded safely, found by name.

The .json says what the model needs and was made from: `classes` (its output order), `input_shape`, how the
file stores its `weights`, and what the stage that made it adds (training data, epochs, members). Loading uses Keras safe mode, so a model file can
never run code; the pipeline's custom layers are registered first so safe mode finds them.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline import atomic
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    import keras

# The released models, committed to the repository; fer2013 is the serving API's default when present.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "models"
SHIPPED_MODEL = SHIPPED_DIR / "fer2013.keras"
# How a model file may store its weights; float16 halves a shipped file (see `save_model`).
WEIGHT_DTYPES = ("float32", "float16")
MIXED_POLICIES = ("mixed_bfloat16", "mixed_float16")
# Where `dvc repro` puts the members and the ensembles.
PIPELINE_DIRS = (Path("data/models"), Path("data/ensemble"))
# Where a model is found by name, in this order: the released models, then the pipeline's.
MODELS_DIRS = (SHIPPED_DIR, *PIPELINE_DIRS)


def save_model(model: keras.Model, path: str | Path, info: dict[str, Any], weights: str = "float32") -> None:
    """Write `path` (.keras) and its .json; each file appears whole or not at all. `info` must name the classes.

    A model trained in mixed precision is saved computing in float32: bfloat16 is fast only on CPUs with
    AVX-512 BF16 or AMX kernels, float32 everywhere. `weights="float16"` stores the weights in half the bytes
    (a shipped file in git; their rounding moves probabilities by ~1e-3); `load_model` computes in float32 again."""
    path = Path(path)
    if path.suffix != ".keras":
        raise PipelineError(f"{path}: a model file must end in .keras")
    if not info.get("classes"):
        raise PipelineError(f"{path}: the model's info needs `classes`, the names of its outputs in order")
    if weights not in WEIGHT_DTYPES:
        raise PipelineError(f"{path}: weights must be stored as one of {', '.join(WEIGHT_DTYPES)}, not {weights}")
    stored = with_policy(with_policy(model, "float32", MIXED_POLICIES), weights, ("float32",))
    with atomic.atomic_path(path) as tmp:
        stored.save(tmp)
    atomic.write_json(path.with_suffix(".json"), {"name": path.stem, **info, "weights": weights})


def with_policy(model: keras.Model, dtype: str, replaced: tuple[str, ...]) -> keras.Model:
    """The same model and weights with every layer whose dtype policy is in `replaced` set to `dtype`
    (itself if it has none): float weights are cast, other variables (seed states) kept."""
    text = json.dumps(model.get_config())
    found = [f'"{policy}"' for policy in replaced if f'"{policy}"' in text]
    if not found:
        return model
    for policy in found:
        text = text.replace(policy, f'"{dtype}"')
    clone = model.__class__.from_config(json.loads(text))
    clone.set_weights([w.astype(dtype) if np.issubdtype(w.dtype, np.floating) else w for w in model.get_weights()])
    return clone


def load_model(path: str | Path) -> keras.Model:
    """A .keras file loaded in safe mode, or one line saying why not."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found: train it first (`dvc repro train@{path.stem}`)")
    if not zipfile.is_zipfile(path):
        raise PipelineError(f"{path} is not a Keras model: a .keras file is a zip archive, this is not")
    import keras

    import pipeline.layers  # noqa: F401  (registers the custom layers for safe-mode loading)
    from pipeline.models import jit_compilable

    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as err:  # Keras raises ValueError, OSError, zipfile and JSON errors for a broken model
        raise PipelineError(f"{path} is not a loadable Keras model: {first_line(err)}") from err
    return jit_compilable(with_policy(model, "float32", ("float16",)))  # float16 weights compute in float32


def read_info(path: str | Path) -> dict[str, Any]:
    """The .json beside a model, checked for the one key every user needs: `classes`."""
    meta_path = Path(path).with_suffix(".json")
    try:
        info = json.loads(meta_path.read_text())
    except FileNotFoundError as err:
        raise PipelineError(f"{meta_path} not found: the class names come from it (the train stage writes it)") from err
    except (OSError, ValueError) as err:
        raise PipelineError(f"{meta_path} is not readable JSON: {first_line(err)}") from err
    classes = info.get("classes") if isinstance(info, dict) else None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise PipelineError(f"{meta_path}: `classes` must be a list of class names")
    return info


def available_models(models_dirs: Path | list[Path]) -> dict[str, Path]:
    """Model name → file over the given folders, leaving out hidden files such as an interrupted atomic write's."""
    dirs = [models_dirs] if isinstance(models_dirs, (str, Path)) else models_dirs
    found = (p for d in dirs for p in sorted(Path(d).glob("*.keras")) if not p.name.startswith("."))
    return {p.stem: p for p in found}


def find_model(ref: str | Path | None, models_dirs: Path | list[Path] = MODELS_DIRS) -> Path:
    """A model name in the models folders, a path to a .keras file, or (None) the default model."""
    if ref is None:
        return default_model(models_dirs)
    path = Path(ref)
    if path.suffix == ".keras" or len(path.parts) > 1:
        if not path.is_file():
            raise PipelineError(f"model file {path} not found")
        return path
    models = available_models(models_dirs)
    if str(ref) not in models:
        have = ", ".join(models) if models else "none: run `dvc repro` first"
        where = models_dirs if isinstance(models_dirs, (str, Path)) else ", ".join(map(str, models_dirs))
        raise PipelineError(f"no model '{ref}' in {where} (available: {have})")
    return models[str(ref)]


def default_model(models_dirs: Path | list[Path] = MODELS_DIRS) -> Path:
    """The shipped model; until it is committed, the pipeline's ensemble, else its first model by name."""
    if SHIPPED_MODEL.is_file():
        return SHIPPED_MODEL
    models = available_models(models_dirs)
    if not models:
        raise PipelineError(
            f"no model to use: {SHIPPED_MODEL} is not there yet and no trained model was found; "
            "run `dvc repro` or name one with --model"
        )
    return models.get("ensemble", next(iter(models.values())))


def first_line(err: Exception) -> str:
    """Library errors run to paragraphs: their first sentence is the part that helps."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split(". ")[0][:200]
