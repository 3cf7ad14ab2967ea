"""Shipping a trained model: `pipeline.ship` writes models/<name>.keras with the .json a model card needs,
and the committed models load and recognise real faces."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import yaml

from benchmarks.vs_fer_package import private_test
from pipeline import modelfiles
from pipeline.ensemble import as_member, average_ensemble
from pipeline.classes import FER2013_LABELS
from pipeline.errors import PipelineError
from pipeline.tta import predict_probs
from pipeline.models import build_model
from pipeline.ship import MAX_FILE_BYTES

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def _validation_record(root: Path, record: dict) -> None:
    """What evaluate@lenet_bn recorded: its views and, under `evaluate.tta: auto`, each view's validation accuracy."""
    (root / "metrics" / "speed" / "lenet_bn.json").write_text(json.dumps({"ms_per_image": 1.0} | record))


def _workspace(root: Path, source: str) -> Path:
    (root / "data" / "models").mkdir(parents=True)
    (root / "data" / "prepared").mkdir()
    (root / "metrics").mkdir()
    params = {"data": {"dataset": "fer2013", "source": source, "classes": "fer7"}, "relabel": {"scheme": "none"}, "evaluate": {"tta": "flip"},
              "models": {"lenet_bn": {"epochs": 2}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    history = [{"epoch": 1, "minutes": 1.5, "val_accuracy": 0.4}, {"epoch": 2, "minutes": 3.0, "val_accuracy": 0.5}]
    data = {"source": source, "dataset": "fer2013", "classes": "fer7", "relabel": "none", "balance": "class_weight", "train_images": 20}
    info = {
        "data": data, "classes": CLASSES, "input_shape": [48, 48, 1], "parameters": 1, "epochs_run": 1.98765, "best_epoch": 2,
        "best_val_accuracy": 0.5, "train_minutes": 3.0, "device": "AMD EPYC (family 26, model 2), 2 cores", "backend": "tensorflow", "precision": "float32", "history": history,
    }  # fmt: skip
    modelfiles.save_model(build_model("lenet_bn", 7), root / "data" / "models" / "lenet_bn.keras", info)
    (root / "metrics" / "lenet_bn.json").write_text(json.dumps({"accuracy": 0.61234, "macro_f1": 0.5}))
    (root / "metrics" / "speed").mkdir()
    _validation_record(root, {"tta": "flip_shift", "tta_val_accuracy": {"none": 0.512345, "flip_shift": 0.54321}})
    y = np.arange(10) % 7
    np.savez(root / "data" / "prepared" / "test.npz", x=np.zeros((10, 48, 48), np.uint8), y=y)
    return root


def _ship(root: Path, model: str = "lenet_bn", name: str = "fer2013", *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipeline.ship", model, "--as", name, "--command", "dvc exp run -n x", *options]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_ship_writes_the_model_and_its_card_facts(tmp_path):
    root = _workspace(tmp_path, "mirror")
    result = _ship(root)
    assert result.returncode == 0, result.stderr
    info = json.loads((root / "models" / "fer2013.json").read_text())
    assert info["classes"] == CLASSES
    assert info["data"] == {"source": "mirror", "dataset": "fer2013", "classes": "fer7", "relabel": "none", "balance": "class_weight", "train_images": 20}
    assert info["splits"] == {"train": "Training", "val": "PublicTest", "test": "PrivateTest", "test_images": 10}
    assert info["test"] == {"tta": "flip_shift", "accuracy": 0.6123, "macro_f1": 0.5}  # the views evaluate used
    assert info["val_accuracy"] == {"none": 0.5123, "flip_shift": 0.5432}  # what models/README.md selects by
    assert info["command"] == "dvc exp run -n x"
    assert info["architecture"] == "lenet_bn" and info["options"] == {}  # `epochs` is a training key, not an option
    assert info["train_minutes"] == 3.0 and info["epochs"] == 1.99 and len(info["history"]) == 2
    assert info["device"] == "AMD EPYC (family 26, model 2), 2 cores (tensorflow, float32)"  # where it trained, not shipped
    assert info["weights"] == "float32"
    model = modelfiles.load_model(root / "models" / "fer2013.keras")
    assert model.output_shape == (None, 7)
    assert result.stdout.startswith("models/fer2013.keras: lenet_bn, test accuracy 0.6123")


def test_a_shipped_model_is_replaced_only_by_one_better_on_validation(tmp_path):
    root = _workspace(tmp_path, "mirror")
    assert _ship(root).returncode == 0  # shipped: 54.32 % on PublicTest with flip_shift
    path = root / "models" / "fer2013.keras"
    shipped = path.read_bytes()
    for worse in (0.5, 0.5432):
        _validation_record(root, {"tta": "flip", "tta_val_accuracy": {"none": 0.4, "flip": worse}})
        result = _ship(root)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"error: models/fer2013.keras scores 54.32 % on PublicTest (flip_shift), this model {100 * worse:.2f} % (flip): "
            "the higher on validation ships, so it stays (--replace replaces it anyway)"
        ]
        assert path.read_bytes() == shipped
    assert _ship(root, "lenet_bn", "fer2013", "--replace").returncode == 0
    assert modelfiles.read_info(path)["val_accuracy"] == {"none": 0.4, "flip": 0.5432}
    _validation_record(root, {"tta": "flip", "tta_val_accuracy": {"none": 0.4, "flip": 0.5433}})
    result = _ship(root)
    assert result.returncode == 0, result.stderr
    assert modelfiles.read_info(path)["val_accuracy"] == {"none": 0.4, "flip": 0.5433}


def test_without_validation_figures_to_compare_only_replace_replaces(tmp_path):
    root = _workspace(tmp_path, "mirror")
    assert _ship(root).returncode == 0
    card = root / "models" / "fer2013.json"
    shipped = json.loads(card.read_text())
    card.write_text(json.dumps({k: v for k, v in shipped.items() if k != "val_accuracy"}))  # a card from before val_accuracy
    result = _ship(root)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: models/fer2013.keras records no accuracy on PublicTest to compare this model with: pass --replace to replace it anyway"
    ]
    card.write_text(json.dumps(shipped))
    _validation_record(root, {"tta": "flip"})  # evaluate.tta: flip scores no validation
    result = _ship(root)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: this model has no accuracy on PublicTest to compare with models/fer2013.keras's (`evaluate.tta: auto` records it): "
        "pass --replace to replace that file anyway"
    ]
    assert json.loads(card.read_text()) == shipped
    assert _ship(root, "lenet_bn", "fer2013", "--replace").returncode == 0
    assert json.loads(card.read_text())["val_accuracy"] == {}


def test_ship_refuses_a_sample_trained_model(tmp_path):
    root = _workspace(tmp_path, "sample")
    result = _ship(root)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: data/models/lenet_bn.keras was trained on the synthetic sample: ship only models trained on real data"
    ]
    assert not (root / "models").exists()


def _over_the_cap(root: Path) -> Path:
    """The workspace's model replaced by one of 5.1 M parameters: 20.3 MB in float32, over the cap."""
    big = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(2200), keras.layers.Dense(7)])
    info = modelfiles.read_info(root / "data" / "models" / "lenet_bn.keras")
    modelfiles.save_model(big, root / "data" / "models" / "lenet_bn.keras", {k: v for k, v in info.items() if k != "name"})
    return root


def test_ship_refuses_a_model_over_the_size_cap_before_writing(tmp_path):
    root = _over_the_cap(_workspace(tmp_path, "mirror"))
    result = _ship(root)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: fer2013: 5,086,407 float32 parameters make a 20.3 MB file, over the 20 MB a shipped model may be: "
        "store its weights in half the bytes (--weights float16), or ship a smaller model (an ensemble: fewer or smaller members)"
    ]
    assert not (root / "models").exists()


def test_ship_stores_float16_weights_in_half_the_bytes(tmp_path):
    root = _over_the_cap(_workspace(tmp_path, "mirror"))
    result = _ship(root, "lenet_bn", "fer2013", "--weights", "float16")
    assert result.returncode == 0, result.stderr
    path = root / "models" / "fer2013.keras"
    assert stored_weights(path) == ({"float16"}, 5_086_407)
    assert 10_000_000 < path.stat().st_size < MAX_FILE_BYTES
    assert modelfiles.read_info(path)["weights"] == "float16"


def test_float16_weights_load_computing_in_float32_with_the_same_predictions(tmp_path):
    model = build_model("lenet_bn", 7)
    info = {"classes": CLASSES, "input_shape": [48, 48, 1]}
    modelfiles.save_model(model, tmp_path / "f32.keras", info)
    modelfiles.save_model(model, tmp_path / "f16.keras", info, weights="float16")
    assert stored_weights(tmp_path / "f16.keras") == ({"float16"}, model.count_params())
    loaded = modelfiles.load_model(tmp_path / "f16.keras")
    assert {variable.dtype for variable in loaded.weights} == {"float32"}
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    x = np.random.default_rng(0).integers(0, 256, (64, 48, 48, 1)).astype("float32")
    expected, probs = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    np.testing.assert_allclose(probs, expected, atol=5e-3)
    assert (probs.argmax(1) == expected.argmax(1)).mean() >= 0.95
    with pytest.raises(PipelineError, match="weights must be stored as one of float32, float16, not bfloat16"):
        modelfiles.save_model(model, tmp_path / "bf16.keras", info, weights="bfloat16")


def test_a_mixed_precision_model_is_saved_computing_in_float32(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_model("lenet_bn", 7)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    modelfiles.save_model(model, tmp_path / "m.keras", {"classes": CLASSES, "input_shape": [48, 48, 1]})
    assert stored_weights(tmp_path / "m.keras") == ({"float32"}, model.count_params())
    loaded = modelfiles.load_model(tmp_path / "m.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}


def _ensemble_workspace(root: Path, second_source: str) -> Path:
    """The single-model workspace plus a second member (distilled, so its data has a teacher) and their
    average ensemble in data/ensemble, scored as the ensemble stage scores it."""
    _workspace(root, "mirror")
    first = root / "data" / "models" / "lenet_bn.keras"
    info = json.loads(first.with_suffix(".json").read_text())
    info["data"] = info["data"] | {"source": second_source, "distilled_from": {"teacher": "fer2013", "weight": 0.5}}
    modelfiles.save_model(build_model("lenet_bn", 7), root / "data" / "models" / "lenet_bn_kd.keras", info)
    members = [as_member(modelfiles.load_model(root / "data" / "models" / f"{name}.keras"), name) for name in ("lenet_bn", "lenet_bn_kd")]
    ensemble_info = {"members": ["lenet_bn", "lenet_bn_kd"], "classes": CLASSES, "input_shape": [48, 48, 1]}
    modelfiles.save_model(average_ensemble(members), root / "data" / "ensemble" / "ensemble.keras", ensemble_info)
    (root / "metrics" / "ensemble.json").write_text(json.dumps({"accuracy": 0.65, "macro_f1": 0.55}))
    record = {"tta": "flip", "tta_val_accuracy": {"none": 0.6, "flip": 0.62}, "ms_per_image": 2.0}
    (root / "metrics" / "speed" / "ensemble.json").write_text(json.dumps(record))
    return root


def test_ship_an_ensemble_with_its_members_cards(tmp_path):
    root = _ensemble_workspace(tmp_path, "mirror")
    result = _ship(root, "ensemble", "fer2013_ensemble")
    assert result.returncode == 0, result.stderr
    info = json.loads((root / "models" / "fer2013_ensemble.json").read_text())
    assert info["architecture"] == "ensemble" and sorted(info["members"]) == ["lenet_bn", "lenet_bn_kd"]
    assert info["members"]["lenet_bn_kd"]["data"]["distilled_from"]["teacher"] == "fer2013"
    assert info["data"] == {"source": "mirror", "dataset": "fer2013", "classes": "fer7", "relabel": "none", "balance": "class_weight", "train_images": 20}
    assert info["test"] == {"tta": "flip", "accuracy": 0.65, "macro_f1": 0.55}
    assert info["val_accuracy"] == {"none": 0.6, "flip": 0.62}
    assert info["train_minutes"] == 6.0 and info["splits"]["test"] == "PrivateTest"
    model = modelfiles.load_model(root / "models" / "fer2013_ensemble.keras")
    assert model.count_params() == info["parameters"] == 2 * build_model("lenet_bn", 7).count_params()


def test_ship_refuses_an_ensemble_with_a_sample_trained_member(tmp_path):
    root = _ensemble_workspace(tmp_path, "sample")
    result = _ship(root, "ensemble", "fer2013_ensemble")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: data/models/lenet_bn_kd.keras was trained on the synthetic sample: ship only models trained on real data"
    ]
    assert not (root / "models").exists()


# The committed models and their number of classes: what the two tests below hold the repository to.
SHIPPED = {"fer2013": 7, "fer2013_fast": 7, "ferplus": 8}


def test_every_shipped_file_is_under_the_size_cap():
    shipped = sorted((REPO / "models").glob("*.keras"))
    assert [path.stem for path in shipped] == sorted(SHIPPED)
    assert [path.name for path in shipped if path.stat().st_size >= MAX_FILE_BYTES] == []


def stored_weights(path: Path) -> tuple[set[str], int]:
    """The dtypes and the number of values of every array in a .keras file's weights."""
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as weights:
        arrays = []
        weights.visititems(lambda _, item: arrays.append(item) if isinstance(item, h5py.Dataset) else None)
        return {str(array.dtype) for array in arrays}, sum(array.size for array in arrays)


@pytest.fixture(scope="module")
def private_test_slice(shared_datasets) -> tuple[np.ndarray, np.ndarray]:
    """Every 6th PrivateTest face (599): enough to tell a real model from a bad one in seconds."""
    x, y = private_test(shared_datasets)
    return x[::6], y[::6]


@pytest.mark.parametrize("name, classes", SHIPPED.items())
def test_shipped_models_load_and_recognise_real_faces(name, classes, private_test_slice):
    path = REPO / "models" / f"{name}.keras"
    info = modelfiles.read_info(path)
    model = modelfiles.load_model(path)
    assert model.input_shape == (None, 48, 48, 1)
    assert model.output_shape == (None, classes) and len(info["classes"]) == classes
    assert stored_weights(path) == ({info["weights"]}, info["parameters"])  # as the card says, no optimizer state
    assert info["data"]["source"] != "sample"
    x, y = private_test_slice
    probs = predict_probs(model, x, info["test"]["tta"], 256)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-3)
    if info["data"]["dataset"] == "fer2013":  # the FER2013 labels are its own: its accuracy on a slice is near its card's
        accuracy = float((probs.argmax(1) == y).mean())
        assert abs(accuracy - info["test"]["accuracy"]) < 0.05
    else:  # FER+ relabelled many faces, but the clear ones agree: happy and surprise stay happy and surprise
        for label in ("happy", "surprise"):
            rows = y == FER2013_LABELS.index(label)
            assert (np.array(info["classes"])[probs[rows].argmax(1)] == label).mean() > 0.7
