"""One run at a time per workspace, and a failed experiment that puts the workspace back.

DVC releases its repository lock (`.dvc/tmp/lock`) while a stage's command runs, so a second
`dvc exp run` started then gets in: it writes its `-S` values into params.yaml and resets the
workspace under the running stage. Each stage therefore takes that same lock for its whole life
(`hold`): the second command stops at DVC's own lock check, before it writes anything. DVC takes
the lock back itself between stages. Parallel experiments belong in `dvc exp run --queue` +
`dvc queue start -j N` or `dvc exp run --temp`, each in a copy of the repository with its own lock.

DVC deletes a stage's outputs before its command runs and leaves `-S` values in params.yaml when the
experiment fails. When the params are refused inside a workspace experiment, `undo_failed_experiment`
puts the refused keys back as the baseline commit has them and restores the stage's committed outputs.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
import zc.lockfile

from pipeline.errors import PipelineError

LOCK = Path(".dvc/tmp/lock")
PARALLEL_HINT = (
    "run experiments side by side with `dvc exp run --queue` + `dvc queue start -j N`, or `dvc exp run --temp`"
)
_held: list[zc.lockfile.LockFile] = []  # the lock this process holds, kept open until it exits


def hold() -> None:
    """Inside a DVC stage, hold the workspace's DVC lock until the process exits; refuse if another command has it."""
    if _held or "DVC_STAGE" not in os.environ or not LOCK.parent.parent.is_dir():
        return
    LOCK.parent.mkdir(exist_ok=True)
    try:
        _held.append(zc.lockfile.LockFile(str(LOCK), content_template="{pid}"))
    except zc.lockfile.LockError:
        holder = LOCK.read_text().strip() or "unknown"
        raise PipelineError(
            f"another DVC command (pid {holder}) is running in this workspace and would change params.yaml and "
            f"outputs under this stage: wait for it, or {PARALLEL_HINT}"
        ) from None


def remove_orphans(folder: Path) -> None:
    """Delete the hidden temporaries (pipeline.atomic) a killed run left in `folder`; the workspace lock makes them stale."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name.startswith(".") and (entry.name.endswith(".tmp") or ".tmp." in entry.name):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def release() -> None:
    while _held:
        _held.pop().close()


def in_workspace_experiment() -> bool:
    """`dvc exp run` without --temp/--queue: the stage runs in the user's own checkout (DVC_ROOT)."""
    root = os.environ.get("DVC_ROOT")
    return bool(os.environ.get("DVC_EXP_BASELINE_REV")) and root is not None and Path(root).resolve() == Path.cwd().resolve()


def undo_failed_experiment(params_path: Path, keys: tuple[str, ...]) -> None:
    """Put `keys` back as the experiment's baseline commit has them, and the stage's outputs as dvc.lock records them."""
    from dvc.exceptions import DvcException

    if not in_workspace_experiment():
        return
    release()  # DVC's checkout takes the lock itself
    baseline = os.environ["DVC_EXP_BASELINE_REV"]
    try:
        restore_keys(params_path, _git("show", f"{baseline}:{params_path.as_posix()}"), keys)
        restore_outputs(os.environ["DVC_STAGE"], baseline)
    except (OSError, subprocess.CalledProcessError, yaml.YAMLError, DvcException) as err:
        print(f"warning: could not restore the workspace after the failed experiment: {err}", file=sys.stderr)


def restore_keys(path: Path, committed_text: str, keys: tuple[str, ...]) -> None:
    """Set each dotted key to its committed value, or remove it where the commit has none; comments stay.

    When that makes the file equal to the commit's, the commit's text itself is written back, byte for byte.
    """
    from ruamel.yaml import YAML  # DVC's own round-trip YAML library: what `-S` wrote with

    committed = yaml.safe_load(committed_text) or {}
    rt = YAML()
    data = rt.load(path.read_text())
    for key in keys:
        *parents, leaf = key.split(".")
        node, source = data, committed
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
            source = source.get(part) if isinstance(source, dict) else None
        if not isinstance(node, dict):
            continue
        if isinstance(source, dict) and leaf in source:
            node[leaf] = source[leaf]
        else:
            node.pop(leaf, None)
    text = io.StringIO()
    rt.dump(data, text)
    path.write_text(committed_text if yaml.safe_load(text.getvalue()) == committed else text.getvalue())


def restore_outputs(stage: str, baseline: str) -> None:
    """Cached outputs come back from the DVC cache; `cache: false` ones (metrics, plots) from the baseline commit."""
    from dvc.repo import Repo

    with Repo() as repo:
        repo.checkout(targets=[stage], force=True, allow_missing=True)
        (resolved,) = repo.stage.collect(stage)
        uncached = [str(out) for out in resolved.outs if not out.use_cache]
    tracked = _git("ls-tree", "-r", "--name-only", baseline, "--", *uncached).split() if uncached else []
    if tracked:
        _git("checkout", baseline, "--", *tracked)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout
