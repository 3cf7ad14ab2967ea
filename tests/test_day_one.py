"""Day one as a new user lives it: the README's Quick start lines in a clean shell, quiet CLIs, runs that
reproduce, and dvc.yaml deps that follow the code."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import quiet

ROOT = Path(__file__).resolve().parents[1]
CLEAN_PATH = "/usr/bin:/bin:/root/.pyenv/shims"  # a new login shell's PATH here, no venv on it
# What a stage may import without listing it in its deps: the package's own start-up, error messages, how
# files are written and how a run holds the workspace lock, none of which changes what a stage computes.
NOT_DEPS = {"pipeline/__init__.py", "pipeline/errors.py", "pipeline/atomic.py", "pipeline/workspace.py"}
TINY = {
    "sample": {"images_per_class": 12, "seed": 7},
    "train": {"epochs": 1, "batch_size": 32},
    "models": {"lenet_bn": {}, "sodhi_scratch": {}},
    "ensemble": {"members": ["lenet_bn", "sodhi_scratch"], "head_epochs": 1},
}


def quick_start() -> list[str]:
    """The lines of the first code block under `## Quick start`, comments dropped."""
    section = (ROOT / "README.md").read_text().split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_quick_start_opens_with_install_and_run_then_the_tests():
    install_and_run, tests = quick_start()
    assert install_and_run == "bash scripts/install.sh && .venv/bin/dvc repro"
    assert tests.startswith(".venv/bin/python -m pytest")


def test_ci_runs_the_readme_test_command_after_the_readme_install():
    ci = (ROOT / ".ci/run").read_text().splitlines()
    install_and_run, tests = quick_start()
    assert install_and_run.split(" && ")[0] in ci
    assert tests in ci


def _clone_with_tiny_params(tmp_path: Path) -> Path:
    """The committed tree with its tracked files as they are now, the existing venv as its .venv, tiny params."""
    clone = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    for name in ("scripts/py", "params-zoo.yaml", "tests/test_day_one.py"):  # new files, maybe not committed yet
        shutil.copy2(ROOT / name, clone / name)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params |= {k: v if k in ("models", "ensemble") else params[k] | v for k, v in TINY.items()}
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (clone / ".venv").symlink_to(Path(sys.prefix))
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "clone"]):
        subprocess.run(command, cwd=clone, check=True, capture_output=True)
    return clone


def _clean_shell(cwd: Path, line: str) -> subprocess.CompletedProcess[str]:
    env = {"HOME": os.environ["HOME"], "PATH": CLEAN_PATH, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", "-c", line], cwd=cwd, capture_output=True, text=True)


def test_the_readme_lines_work_verbatim_in_a_clean_shell(tmp_path):
    """No venv on PATH, no `python` assumed: the install line (here with the venv already present, so no
    network) and `dvc repro` through the stage launcher; then the test line's interpreter collects the suite."""
    clone = _clone_with_tiny_params(tmp_path)
    install_and_run, tests = quick_start()
    result = _clean_shell(clone, install_and_run)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads((clone / "plots/compare/summary.json").read_text()).keys() == {"acc_lenet_bn", "acc_sodhi_scratch", "acc_ensemble", "acc_ensemble_stacked"}
    collected = _clean_shell(clone, f"{tests} --collect-only tests/test_day_one.py")
    assert collected.returncode == 0, collected.stdout[-3000:]
    assert "test_the_readme_lines_work_verbatim_in_a_clean_shell" in collected.stdout


def test_the_stage_launcher_prefers_the_projects_interpreter(tmp_path):
    launcher = ROOT / "scripts/py"
    found = _clean_shell(tmp_path, f"{launcher} -c 'import sys; print(sys.executable)'")
    assert Path(found.stdout.strip()) == ROOT / ".venv/bin/python"
    assert "python -m pipeline." not in (ROOT / "dvc.yaml").read_text()  # every stage goes through the launcher


def _imports(module: Path) -> set[str]:
    """pipeline/*.py files a module imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "pipeline":
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("pipeline.")}
    return {f"pipeline/{name}.py" for name in names if (ROOT / "pipeline" / f"{name}.py").exists()}


def import_closure(module: str) -> set[str]:
    seen, todo = set(), [module, "pipeline/__init__.py"]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo += _imports(ROOT / path)
    return seen


def test_dvc_yaml_deps_cover_every_module_a_stage_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        module = re.search(r"-m pipeline\.(\w+)", body["cmd"]).group(1)
        missing = import_closure(f"pipeline/{module}.py") - set(body["deps"]) - NOT_DEPS
        assert not missing, f"stage {name} imports {sorted(missing)} but does not list them in its deps"


def test_noise_filter_drops_tensorflow_lines_and_keeps_the_rest():
    noise = [
        b"E0000 00:00:1795551796.760325    7288 node_def_util.cc:680] Unknown attr use_unbounded_threadpool\n",
        b"I0000 00:00:1795551796.760325    7288 port.cc:153] oneDNN custom operations are on.\n",
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        b"2026-11-24 20:00:00.123456: I tensorflow/core/platform/cpu_feature_guard.cc:210] This TensorFlow binary\n",
    ]
    kept = [b"error: params.yaml: train.epochs=-1 is out of range\n", b"Fatal Python error: Segmentation fault\n"]
    assert [line for line in noise + kept if not quiet.is_noise(line)] == kept
    assert quiet.run_as_program(["python", "-m", "pipeline.train", "lenet_bn"])
    assert not quiet.run_as_program(["python", "-m", "pytest", "-q"])


def _tiny_split(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Seven learnable classes: a bright band in one of seven rows of the image."""
    y = np.arange(n) % 7
    x = rng.normal(80, 20, (n, 48, 48))
    for c in range(7):
        x[y == c, 6 * c : 6 * c + 6, :] += 100
    return {"x": np.clip(x, 0, 255).astype(np.uint8), "y": y, "targets": np.eye(7, dtype=np.float32)[y]}


@pytest.fixture(scope="module")
def stage_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stages")
    rng = np.random.default_rng(0)
    for folder in ("data/prepared", "data/balanced"):
        (root / folder).mkdir(parents=True)
    np.savez(root / "data/balanced/train.npz", **_tiny_split(224, rng))
    np.savez(root / "data/prepared/val.npz", **_tiny_split(70, rng))
    np.savez(root / "data/prepared/test.npz", **_tiny_split(70, rng))
    (root / "data/prepared/classes.json").write_text(json.dumps([f"c{i}" for i in range(7)]))
    (root / "data/balanced/class_weights.json").write_text(json.dumps({str(i): 1.0 for i in range(7)}))
    params = {"train": {"epochs": 2, "batch_size": 32}, "models": {"lenet_bn": {}}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert _stage(root, "pipeline.distill").returncode == 0
    return root


def _stage(root: Path, *args: str, prefix: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "ONEDNN_", "FER_"))}
    return subprocess.run(
        [*prefix, sys.executable, "-m", *args], cwd=root, capture_output=True, text=True, env=clean | {"PYTHONPATH": str(ROOT)} | env
    )


def test_train_and_evaluate_print_only_their_own_lines(stage_folder):
    train = _stage(stage_folder, "pipeline.train", "lenet_bn")
    assert train.returncode == 0, train.stderr
    assert all(re.match(r"epoch \d+/\d+", line) for line in train.stderr.splitlines()), train.stderr
    assert train.stdout.startswith("lenet_bn: best val accuracy")
    evaluate = _stage(stage_folder, "pipeline.evaluate", "lenet_bn")
    assert evaluate.returncode == 0, evaluate.stderr
    assert evaluate.stderr == ""
    assert evaluate.stdout.startswith("lenet_bn: accuracy=") and len(evaluate.stdout.splitlines()) == 1


def test_tensorflow_lines_come_back_on_request(stage_folder):
    shown = _stage(stage_folder, "pipeline.evaluate", "lenet_bn", FER_TF_LOGS="1", TF_CPP_MIN_LOG_LEVEL="0")
    assert shown.returncode == 0
    assert any(quiet.is_noise(line.encode() + b"\n") for line in shown.stderr.splitlines()), shown.stderr


def _weights_after_training(root: Path, run: str, prefix: tuple[str, ...] = (), **env: str) -> bytes:
    out = root / run
    args = ("--out", str(out), "--checkpoints", str(out / "ck"), "--live", str(out / "live"))
    result = _stage(root, "pipeline.train", "lenet_bn", *args, prefix=prefix, **env)
    assert result.returncode == 0, result.stderr
    import keras

    model = keras.saving.load_model(out / "lenet_bn.keras")
    return b"".join(np.asarray(w).tobytes() for w in model.get_weights())


def test_training_is_bit_identical_across_cpu_instruction_sets_and_core_counts(stage_folder):
    """What differed between two machines of one kind: the CPU's instruction set (oneDNN picks its kernels by
    it; quiet caps it at AVX2) and the number of cores TensorFlow's thread pools follow (quiet fixes it at 2).
    A real AVX2-only CPU of another generation still trains other weights (README, Reproducibility)."""
    reference = _weights_after_training(stage_folder, "ref")
    assert _weights_after_training(stage_folder, "avx2", ONEDNN_MAX_CPU_ISA="AVX2") == reference
    assert _weights_after_training(stage_folder, "one_core", prefix=("taskset", "-c", "0")) == reference


def test_the_zoo_preset_holds_every_model():
    from pipeline.models import MODELS
    from pipeline.params import parse_params
    from pipeline.preset import apply_preset

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    zoo = parse_params(apply_preset(base, yaml.safe_load((ROOT / "params-zoo.yaml").read_text())))
    assert set(zoo.models) == set(MODELS) and len(zoo.models) == 17
    assert set(zoo.ensemble.members) <= set(zoo.models)
    assert set(parse_params(base).models) < set(zoo.models)
    assert zoo.models["mondal_shallow"] == base["models"]["mondal_shallow"]  # the zoo keeps the default four's overrides


def test_a_write_killed_by_sigkill_leaves_a_hidden_temp_that_the_next_write_sweeps(tmp_path):
    target, folder = tmp_path / "lenet_bn.keras", tmp_path / "prepared"
    killed = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pipeline import atomic\n"
         "with atomic.atomic_path(sys.argv[1]) as f, atomic.atomic_dir(sys.argv[2]) as d:\n"
         "    f.write_text('half'); (d / 'train.npz').write_text('half'); print('in', flush=True); time.sleep(60)",
         str(target), str(folder)],
        stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    assert killed.stdout.readline() == "in\n"
    killed.kill()
    killed.wait()
    orphans = sorted(p.name for p in tmp_path.iterdir())
    assert len(orphans) == 2 and all(name.startswith(".") and ".tmp" in name for name in orphans)
    ignore = (ROOT / ".dvcignore").read_text().splitlines()
    assert ".*.tmp" in ignore and ".*.tmp.*" in ignore

    from pipeline import atomic

    atomic.write_text(target, "model")
    with atomic.atomic_dir(folder) as tmp:
        (tmp / "train.npz").write_text("data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet_bn.keras", "prepared"]
