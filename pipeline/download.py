"""Stage `download`: put the raw files of `data.dataset` into data/raw, from the sample, a mirror or Kaggle.

Real files are checked against their known SHA-256 and every archive against the safety rules before
any stage reads them. data/raw is built in a temporary folder beside it and renamed into place at
the end, so a failed run leaves no half-written output behind.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import io
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pipeline.archives import check_archive, read_member
from pipeline.atomic import atomic_dir
from pipeline.errors import PipelineError, run_cli
from pipeline.params import Params, load_params
from pipeline.workspace import remove_orphans
from pipeline.raw import APOLLO_ARCHIVE, FER2013_ARCHIVE, FERPLUS_VOTES, MSAMBARE_ARCHIVE, RAW_FILES

if TYPE_CHECKING:
    from kaggle.api.kaggle_api_extended import KaggleApi

COMPETITION = "challenges-in-representation-learning-facial-expression-recognition-challenge"
FERPLUS_URL = "https://raw.githubusercontent.com/microsoft/FERPlus/master/fer2013new.csv"
NO_CREDENTIALS = (
    "no Kaggle credentials: save your API token to ~/.kaggle/access_token or set KAGGLE_API_TOKEN "
    "(https://www.kaggle.com/settings/api), or set data.source=mirror with data.mirror=<folder with the files>"
)


@dataclass(frozen=True)
class Source:
    """Where one raw file comes from, the other names it goes by, and its digest where the file is fixed."""

    kind: Literal["competition", "dataset", "url"]
    ref: str  # competition name, owner/dataset or URL
    sha256: str | None = None  # None: no published digest to hold it to
    aliases: tuple[str, ...] = ()  # what the Kaggle API names the same file

    @property
    def origin(self) -> str:
        return {"competition": "Kaggle competition ", "dataset": "Kaggle dataset ", "url": ""}[self.kind] + self.ref


SOURCES = {
    FER2013_ARCHIVE: Source(
        "competition", COMPETITION, "179031c58098ea5207ac311df0b5c8e1946b85ea1bf592af5730e11bb7ce867b"
    ),
    FERPLUS_VOTES: Source("url", FERPLUS_URL, "9206e20d62f56475939f516847d61753e4860caeac9718b560129541b776fc2c"),
    MSAMBARE_ARCHIVE: Source(
        "dataset",
        "msambare/fer2013",
        "42976c8f28cd39290f8f37e54ccc8f54fee20dea3e331d159633e4759526a238",
        ("fer2013.zip",),
    ),
    APOLLO_ARCHIVE: Source(
        "dataset", "apollo2506/facial-recognition-dataset", aliases=("facial-recognition-dataset.zip",)
    ),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch the raw files of data.dataset into data/raw.")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument(
        "--out", default="data/raw", type=Path, help="output folder, replaced whole (default: data/raw)"
    )
    args = parser.parse_args(argv)
    params = load_params(args.params)
    start = time.perf_counter()
    paths = download(params, args.out)
    real = params.data.source != "sample"
    print(f"download: {params.data.dataset} from {params.data.source} into {args.out}")
    for path in paths:
        checked = "sha256 ok" if real and SOURCES[path.name].sha256 else ""
        print(f"  {path.name:<42} {path.stat().st_size / 1e6:8.1f} MB  {checked}".rstrip())
    print(f"  {len(paths)} file(s) in {time.perf_counter() - start:.1f} s")


def download(params: Params, out_dir: Path) -> list[Path]:
    """Fetch and check every raw file of the dataset in a temporary folder that then replaces `out_dir`."""
    names = RAW_FILES[params.data.dataset]
    remove_orphans(out_dir.parent)  # a run killed mid-download leaves its hidden staging folder beside data/raw
    with atomic_dir(out_dir) as staging:
        if params.data.source == "sample":
            from pipeline.sample import write_sample  # numpy + Pillow: only the sample needs them

            for path in write_sample(params.data.dataset, staging, params.sample):
                check_file(path, path.name, real=False)
        elif params.data.source == "mirror":
            _copy_from_mirror(names, Path(params.data.mirror), staging)
        else:
            _fetch_from_kaggle(names, staging)
    return [out_dir / name for name in names]


def check_file(path: Path, name: str, real: bool) -> None:
    """Hold a real file `name` to its known digest, and refuse an unsafe archive, before any stage reads it."""
    source = SOURCES[name]
    if real and source.sha256:
        actual = sha256_of(path)
        if actual != source.sha256:
            raise PipelineError(
                f"{path}: SHA-256 is {actual}, expected {source.sha256} for {name} (corrupt, partial or a "
                f"different file): get the original from {source.origin} and run the download stage again"
            )
    if name.endswith((".zip", ".tar.gz")):
        check_archive(path)


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _copy_from_mirror(names: tuple[str, ...], mirror: Path, staging: Path) -> None:
    """Find every file first, so that a missing one fails before any copying; check each one in place."""
    if not mirror.is_dir():
        raise PipelineError(
            f"mirror folder {mirror} not found: put {', '.join(names)} there, set data.mirror to the folder "
            "that has them, or set data.source=sample"
        )
    found = [_find_in_mirror(name, mirror) for name in names]
    for name, path in zip(names, found, strict=True):
        check_file(path, name, real=True)
        shutil.copyfile(path, staging / name)


def _find_in_mirror(name: str, mirror: Path) -> Path:
    for candidate in (name, *SOURCES[name].aliases):
        if (mirror / candidate).is_file():
            return mirror / candidate
    raise PipelineError(
        f"{mirror / name} not found: download {name} from {SOURCES[name].origin} into {mirror}, or set data.mirror"
    )


def _fetch_from_kaggle(names: tuple[str, ...], staging: Path) -> None:
    """Download with the Kaggle API (plain HTTPS for the FER+ votes), authenticating before any transfer."""
    api = _kaggle_api()
    for name in names:
        source, target = SOURCES[name], staging / name
        if source.kind == "url":
            _fetch_url(source.ref, target)
        else:
            _fetch_kaggle_file(api, name, target)
        check_file(target, name, real=True)


def _kaggle_api() -> KaggleApi:
    """An authenticated KaggleApi; the package's long help text is swallowed in favour of one line."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            from kaggle.api.kaggle_api_extended import KaggleApi  # importing kaggle already tries to authenticate

            api = KaggleApi()
            api.authenticate()
        except ImportError as err:
            raise PipelineError(f"the kaggle package is not installed ({err}): pip install kaggle") from err
        except SystemExit:  # what authenticate() does when it finds no credentials
            raise PipelineError(NO_CREDENTIALS) from None
        except Exception as err:  # a token is checked online: network or HTTP errors of several libraries
            raise PipelineError(
                f"Kaggle sign-in failed ({_brief(err)}): check your network and your API token, "
                "or set data.source=mirror with data.mirror=<folder with the files>"
            ) from err
    return api


def _fetch_kaggle_file(api: KaggleApi, name: str, target: Path) -> None:
    """Download a competition file or dataset zip into a folder of its own, then move it to `target`."""
    source = SOURCES[name]
    folder = target.parent / f".kaggle-{name}"
    folder.mkdir()
    try:
        if source.kind == "competition":
            api.competition_download_file(source.ref, name, path=str(folder), quiet=True)
        else:
            api.dataset_download_files(source.ref, path=str(folder), quiet=True)
    except (Exception, SystemExit) as err:  # the API raises HTTP errors of several libraries, or exits
        rules = f" and that you accepted the rules at https://www.kaggle.com/c/{COMPETITION}/rules"
        rules = rules if source.kind == "competition" else ""
        raise PipelineError(f"download of {source.origin} failed ({_brief(err)}): check your network{rules}") from err
    files = [p for p in folder.iterdir() if not p.name.endswith(".kaggle-partial")]
    if len(files) != 1:
        raise PipelineError(
            f"download of {source.origin} left {len(files)} files instead of one: run the download stage again"
        )
    with files[0].open("rb") as f:
        wrapped = f.read(2) == b"PK" and not name.endswith(".zip")
    if wrapped:  # the competition API may deliver fer2013.tar.gz inside a zip
        target.write_bytes(read_member(files[0], name))
    else:
        files[0].replace(target)
    shutil.rmtree(folder)


def _brief(err: BaseException) -> str:
    """The exception's kind and the start of its first line: network errors can run to several hundred characters."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:150]}" if lines else type(err).__name__


def _fetch_url(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
    except (OSError, http.client.HTTPException) as err:  # URLError, HTTPError and timeouts are OSErrors
        raise PipelineError(
            f"download of {url} failed ({_brief(err)}): check your network, or set data.source=mirror"
        ) from err


if __name__ == "__main__":
    run_cli(main)
