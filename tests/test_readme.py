"""README is the front door: every command in it is either run by a named test or needs what CI lacks."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Command prefix, exactly as the README writes it → the test file and function that runs it.
COVERED = {
    "bash scripts/install.sh && .venv/bin/dvc repro": "tests/test_day_one.py::test_the_readme_lines_work_verbatim_in_a_clean_shell",
    ".venv/bin/python -m pytest -q": ".ci/run",
    ".venv/bin/dvc repro --downstream": "tests/test_pipeline_dvc.py::test_a_targeted_run_leaves_no_stale_compare_table",
    ".venv/bin/dvc exp run $(.venv/bin/python -m pipeline.preset params-zoo.yaml)": "tests/test_day_one.py::test_the_zoo_preset_holds_every_model",
    ".venv/bin/dvc exp run -S train.lr": "tests/test_pipeline_dvc.py::test_exp_run_with_a_train_param_reruns_only_training_and_after",
    ".venv/bin/dvc exp show --md": "tests/test_pipeline_dvc.py::test_exp_run_with_a_train_param_reruns_only_training_and_after",
    ".venv/bin/dvc exp diff": "tests/test_pipeline_dvc.py::test_comparisons_after_an_experiment",
    ".venv/bin/dvc metrics diff --md; .venv/bin/dvc params diff --md": "tests/test_pipeline_dvc.py::test_comparisons_after_an_experiment",
    ".venv/bin/dvc plots diff -o": "tests/test_pipeline_dvc.py::test_comparisons_after_an_experiment",
    ".venv/bin/dvc exp run --queue": "tests/test_pipeline_dvc.py::test_queued_sweep_runs_every_combination",
    ".venv/bin/dvc queue start": "tests/test_pipeline_dvc.py::test_queued_sweep_runs_every_combination",
    "dvc push": "tests/test_pipeline_dvc.py::test_remote_push_and_pull",
    ".venv/bin/python -m pipeline.report": "tests/test_report.py::test_report_shows_param_metric_and_image_changes",
    ".venv/bin/python -m pipeline.predict --model riv_base photo.jpg": "tests/test_predict.py::test_table_output",
    ".venv/bin/python -m pipeline.predict --model ferplus photo.jpg": "tests/test_predict.py::test_a_shipped_model_is_found_by_name_without_models_dir",
    ".venv/bin/python -m pipeline.predict --model fer2013_fast photo.jpg": "tests/test_predict.py::test_a_shipped_model_is_found_by_name_without_models_dir",
    ".venv/bin/python -m pipeline.predict --ensemble --json": "tests/test_predict.py::test_ensemble_flag_uses_the_ensemble_model",
    "cat photo.jpg | .venv/bin/python -m pipeline.predict": "tests/test_predict.py::test_cli_stdin_json_and_partial_failure",
    ".venv/bin/python -m pipeline.predict --model riv_base --annotate": "tests/test_predict.py::test_annotate_one_image_writes_that_file",
    ".venv/bin/python -m pipeline.app": "tests/test_app.py::test_upload_predict_shows_labels_charts_and_metrics",
}
# Commands that need the network (Kaggle, cloud storage, PyPI extras), a GPU, or hours of training on the
# full data (their download and prepare steps are tested on the real files in test_download / test_real_data).
NOT_HERE = ("dvc exp run -S data.source=kaggle", "dvc exp run -S data.source=mirror", "pip install \"dvc-s3", "dvc remote add -d storage s3://", "KERAS_BACKEND=jax")


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_every_readme_command_is_exercised_or_needs_the_network():
    commands = readme_commands()
    assert len(commands) > 15
    for command in commands:
        covered = [prefix for prefix in COVERED if command.startswith(prefix)]
        assert covered or command.startswith(NOT_HERE), f"README command not run by any test: {command}"


def test_the_tests_named_for_readme_commands_exist():
    for target in set(COVERED.values()):
        path, _, function = target.partition("::")
        text = (ROOT / path).read_text()
        assert not function or f"def {function}(" in text, target
