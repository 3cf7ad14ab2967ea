"""The download stage as DVC runs it: `python -m pipeline.download` in a project folder, on real files."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from pipeline import download as download_module
from pipeline.download import COMPETITION, NO_CREDENTIALS, SOURCES, download, sha256_of
from pipeline.errors import PipelineError
from pipeline.params import SampleParams, parse_params
from pipeline.sample import write_sample

REPO = Path(__file__).resolve().parents[1]


def params_for(data: dict) -> dict:
    """Params the cross-field rules accept: relabelling needs the FER+ votes, apollo6 has 6 classes."""
    classes = {"classes": "fer6"} if data["dataset"] == "apollo6" else {}
    return {"data": data | classes, "relabel": {"scheme": "majority" if data["dataset"] == "ferplus" else "none"}}


def run_stage(project: Path, data: dict, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Write params.yaml into `project` and run the stage there, importing the code under test."""
    (project / "params.yaml").write_text(yaml.safe_dump(params_for(data) | {"sample": {"images_per_class": 8}}))
    env = {**(env if env is not None else os.environ), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.download"], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )


def assert_failed_cleanly(result: subprocess.CompletedProcess, project: Path) -> str:
    """Exit 1 with one `error:` line, and nothing left behind: no data/raw, no temporary folder."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not (project / "data" / "raw").exists()
    assert not (project / "data").exists() or not any((project / "data").iterdir())
    return lines[0]


def test_sample_source_writes_the_dataset_files_and_replaces_old_output(tmp_path):
    stale = tmp_path / "data" / "raw" / "stale.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier run")
    result = run_stage(tmp_path, {"dataset": "ferplus", "source": "sample"})
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["raw"]
    assert sorted(p.name for p in (tmp_path / "data" / "raw").iterdir()) == ["fer2013.tar.gz", "fer2013new.csv"]
    assert "fer2013.tar.gz" in result.stdout and "2 file(s)" in result.stdout


def test_mirror_copies_and_verifies_the_real_files(tmp_path, shared_datasets):
    result = run_stage(tmp_path, {"dataset": "ferplus", "source": "mirror", "mirror": str(shared_datasets)})
    assert result.returncode == 0, result.stderr
    raw = tmp_path / "data" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == ["fer2013.tar.gz", "fer2013new.csv"]
    for path in raw.iterdir():
        assert sha256_of(path) == SOURCES[path.name].sha256
    assert result.stdout.count("sha256 ok") == 2


def test_known_digests_match_the_shared_checksums(shared_datasets):
    for line in (shared_datasets / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert SOURCES[name].sha256 == digest


def test_mirror_accepts_the_kaggle_names(tmp_path, shared_datasets):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "fer2013.zip").symlink_to(shared_datasets / "msambare-fer2013.zip")  # what the Kaggle API saves
    result = run_stage(tmp_path, {"dataset": "fer2013-images", "source": "mirror", "mirror": "mirror"})
    assert result.returncode == 0, result.stderr
    assert sha256_of(tmp_path / "data" / "raw" / "msambare-fer2013.zip") == SOURCES["msambare-fer2013.zip"].sha256


def test_mirror_apollo_without_known_digest_is_still_safety_checked(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "facial-recognition-dataset.zip", "w") as archive:
        archive.writestr("Training/Happy/1.jpg", b"x")
        archive.writestr("../../escape.jpg", b"x")
    result = run_stage(tmp_path, {"dataset": "apollo6", "source": "mirror", "mirror": "mirror"})
    line = assert_failed_cleanly(result, tmp_path)
    assert "facial-recognition-dataset.zip: member '../../escape.jpg'" in line and "path traversal" in line


def test_missing_mirror_folder_says_what_to_put_there(tmp_path):
    line = assert_failed_cleanly(
        run_stage(tmp_path, {"dataset": "fer2013", "source": "mirror", "mirror": "nowhere"}), tmp_path
    )
    assert line.startswith("error: mirror folder nowhere not found: put fer2013.tar.gz there")


def test_missing_mirror_file_fails_before_copying_anything(tmp_path):
    (tmp_path / "mirror").mkdir()
    line = assert_failed_cleanly(
        run_stage(tmp_path, {"dataset": "ferplus", "source": "mirror", "mirror": "mirror"}), tmp_path
    )
    assert line.startswith("error: mirror/fer2013.tar.gz not found: download fer2013.tar.gz from Kaggle competition")


def test_corrupted_mirror_file_fails_its_checksum(tmp_path, shared_datasets):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with (shared_datasets / "fer2013.tar.gz").open("rb") as real:
        (mirror / "fer2013.tar.gz").write_bytes(real.read(1_000_000))  # a partial download
    line = assert_failed_cleanly(
        run_stage(tmp_path, {"dataset": "fer2013", "source": "mirror", "mirror": "mirror"}), tmp_path
    )
    assert "mirror/fer2013.tar.gz: SHA-256 is " in line
    assert f"expected {SOURCES['fer2013.tar.gz'].sha256}" in line and "get the original from Kaggle" in line


def test_kaggle_without_credentials_stops_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env |= {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config")}
    result = run_stage(tmp_path, {"dataset": "ferplus", "source": "kaggle"}, env)
    assert assert_failed_cleanly(result, tmp_path) == f"error: {NO_CREDENTIALS}"
    assert result.stdout == ""  # the kaggle package's own help text is not let through


def test_kaggle_network_failure_stops_with_one_line(tmp_path):
    """Credentials that pass the offline check, then no route to Kaggle (or, online, a refused fake key)."""
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "kaggle.json").write_text('{"username": "nobody", "key": "0123456789abcdef"}')
    (home / ".kaggle" / "kaggle.json").chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env |= {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    result = run_stage(tmp_path, {"dataset": "fer2013-images", "source": "kaggle"}, env)
    line = assert_failed_cleanly(result, tmp_path)
    assert (
        line.startswith("error: download of Kaggle dataset msambare/fer2013 failed (") and "check your network" in line
    )


class FakeKaggle:
    """Stands in for the Kaggle service, which this machine cannot reach: saves files the way its API does."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def competition_download_file(self, competition: str, file_name: str, path: str, quiet: bool) -> None:
        (Path(path) / f"{file_name}.zip").write_bytes(self.files[competition])

    def dataset_download_files(self, dataset: str, path: str, quiet: bool) -> None:
        (Path(path) / f"{dataset.split('/')[1]}.zip").write_bytes(self.files[dataset])


def test_kaggle_dataset_zip_is_renamed_and_checked(tmp_path, monkeypatch):
    apollo = write_sample("apollo6", tmp_path / "made", SampleParams(images_per_class=8))[0].read_bytes()
    monkeypatch.setattr(
        download_module, "_kaggle_api", lambda: FakeKaggle({"apollo2506/facial-recognition-dataset": apollo})
    )
    paths = download(parse_params(params_for({"dataset": "apollo6", "source": "kaggle"})), tmp_path / "data" / "raw")
    assert [p.name for p in paths] == ["apollo2506-facial-recognition-dataset.zip"]
    assert paths[0].read_bytes() == apollo
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["raw"]


def test_kaggle_competition_file_is_unwrapped_from_its_zip_then_verified(tmp_path, monkeypatch):
    inner = write_sample("fer2013", tmp_path / "made", SampleParams(images_per_class=8))[0]
    wrapped = io.BytesIO()
    with zipfile.ZipFile(wrapped, "w") as archive:
        archive.write(inner, "fer2013.tar.gz")
    monkeypatch.setattr(download_module, "_kaggle_api", lambda: FakeKaggle({COMPETITION: wrapped.getvalue()}))
    with pytest.raises(
        PipelineError, match=f"SHA-256 is {sha256_of(inner)}, expected {SOURCES['fer2013.tar.gz'].sha256}"
    ):
        download(parse_params(params_for({"dataset": "fer2013", "source": "kaggle"})), tmp_path / "data" / "raw")
    assert not (tmp_path / "data" / "raw").exists()
