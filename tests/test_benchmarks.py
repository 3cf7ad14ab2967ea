"""The benchmark scripts whose output the README shows, run as the README writes them."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readmes_time_to_accuracy_command_draws_from_committed_files(tmp_path):
    block = next(b for b in re.findall(r"```console\n(.*?)```", (ROOT / "README.md").read_text(), re.S) if "time_to_accuracy" in b)
    command = block.replace("--out plots/time_to_accuracy.png", f"--out {tmp_path}/plot.png")
    assert command != block
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
