"""Safe, in-memory reading of the downloaded zip/tar archives.

Nothing is ever extracted to disk: stages read members straight from the archive, so a hostile or
broken download (path traversal, links, devices, archive bombs, truncation) is refused here, with a
one-line error that names the archive and the member, before any stage trusts its contents.
"""

from __future__ import annotations

import contextlib
import lzma
import posixpath
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

MAX_MEMBER_BYTES = 1 << 30  # fer2013/fer2013.csv alone is 301 MB uncompressed
MAX_TOTAL_BYTES = 4 << 30

# What zipfile/tarfile and the decompressors raise on a corrupt or truncated archive (gzip/bz2 raise OSError;
# zipfile raises NotImplementedError for a compression method it cannot read).
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError)

# Either separator counts: a name made on Windows is extracted with backslashes as folders there.
_ABSOLUTE = re.compile(r"^([/\\]|[A-Za-z]:)")
_PARENT = re.compile(r"(^|[/\\])\.\.([/\\]|$)")


@dataclass(frozen=True)
class _Entry:
    """A regular-file member that passed the safety checks; `read(n)` returns at most n bytes of it."""

    name: str
    size: int
    read: Callable[[int], bytes]


def iter_members(
    path: str | Path, max_member_bytes: int = MAX_MEMBER_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES
) -> Iterator[tuple[str, bytes]]:
    """Yield (name, content) of every regular file in a zip or tar(.gz) archive, in archive order."""
    path = Path(path)
    total = 0
    for entry in _entries(path, max_member_bytes, max_total_bytes):
        data = entry.read(max_member_bytes + 1)
        if len(data) > max_member_bytes:
            raise _too_big(path, entry.name, len(data), max_member_bytes, "member")
        total += len(data)
        if total > max_total_bytes:
            raise _too_big(path, entry.name, total, max_total_bytes, "archive total")
        yield entry.name, data


def read_member(path: str | Path, name: str, max_member_bytes: int = MAX_MEMBER_BYTES) -> bytes:
    """Return the content of member `name` (e.g. `fer2013/fer2013.csv`) without reading the others."""
    path = Path(path)
    for entry in _entries(path, max_member_bytes, MAX_TOTAL_BYTES):
        if entry.name == name:
            data = entry.read(max_member_bytes + 1)
            if len(data) > max_member_bytes:
                raise _too_big(path, name, len(data), max_member_bytes, "member")
            return data
    raise PipelineError(
        f"{path} has no member '{name}' (wrong file or partial download?): delete it and run the download stage again"
    )


def folder_names(path: str | Path) -> set[str]:
    """Directory entries of a zip or tar(.gz) archive (normalised, no trailing slash): empty folders have no files to show them."""
    path = Path(path)
    with path.open("rb") as f:
        is_zip = f.read(2) == b"PK"
    with _corrupt_as_error(path):
        if is_zip:
            with zipfile.ZipFile(path) as archive:
                names = [info.filename for info in archive.infolist() if info.is_dir()]
        else:
            with tarfile.open(path, "r:*") as archive:
                names = [member.name for member in archive if member.isdir()]
    return {_safe_name(path, name.rstrip("/")) for name in names if name.rstrip("/")}


def check_archive(
    path: str | Path, max_member_bytes: int = MAX_MEMBER_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES
) -> int:
    """Apply the safety rules to the listing only (cheap: no member is read); return the number of files."""
    return sum(1 for _ in _entries(Path(path), max_member_bytes, max_total_bytes))


def _entries(path: Path, max_member_bytes: int, max_total_bytes: int) -> Iterator[_Entry]:
    """Walk the listing, refusing unsafe members and declared sizes over the limits; skip directories."""
    if not path.is_file():
        raise PipelineError(f"{path} not found: run the download stage first")
    with path.open("rb") as f:
        is_zip = f.read(2) == b"PK"
    walk = _zip_entries if is_zip else _tar_entries
    declared = 0
    for entry in walk(path):
        if entry.size > max_member_bytes:
            raise _too_big(path, entry.name, entry.size, max_member_bytes, "member")
        declared += entry.size
        if declared > max_total_bytes:
            raise _too_big(path, entry.name, declared, max_total_bytes, "archive total")
        yield entry


def _zip_entries(path: Path) -> Iterator[_Entry]:
    with _corrupt_as_error(path), zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            mode = info.external_attr >> 16
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                raise _unsafe(path, info.filename, "is a link or special file, not a regular file")
            if info.flag_bits & 0x1:
                raise _unsafe(path, info.filename, "is encrypted")
            yield _Entry(_safe_name(path, info.filename), info.file_size, _reader(path, archive.open, info))


def _tar_entries(path: Path) -> Iterator[_Entry]:
    with _corrupt_as_error(path), tarfile.open(path, "r:*") as archive:
        for member in archive:
            if member.isdir():
                continue
            if not member.isfile():
                raise _unsafe(path, member.name, "is a link or special file, not a regular file")
            yield _Entry(_safe_name(path, member.name), member.size, _reader(path, archive.extractfile, member))


def _reader(path: Path, open_member: Callable, member: object) -> Callable[[int], bytes]:
    """Bind a member's reader so that corruption found while reading still becomes a PipelineError."""

    def read(limit: int) -> bytes:
        with _corrupt_as_error(path), open_member(member) as stream:
            return stream.read(limit)

    return read


def _safe_name(path: Path, name: str) -> str:
    """Refuse names that would escape a folder if anyone extracted them; return the normalised name."""
    if _ABSOLUTE.match(name):
        raise _unsafe(path, name, "has an absolute path")
    if _PARENT.search(name):
        raise _unsafe(path, name, "has a '..' path component (path traversal)")
    return posixpath.normpath(name)


@contextlib.contextmanager
def _corrupt_as_error(path: Path) -> Iterator[None]:
    try:
        yield
    except _CORRUPT as err:
        raise PipelineError(
            f"{path} is not a readable zip/tar archive ({type(err).__name__}: corrupt or partial download?): "
            "delete it and run the download stage again"
        ) from err


def _unsafe(path: Path, name: str, why: str) -> PipelineError:
    return PipelineError(
        f"{path}: member '{name}' {why}: refusing an unsafe archive; "
        "delete it and get the file from its original source"
    )


def _too_big(path: Path, name: str, size: int, limit: int, what: str) -> PipelineError:
    return PipelineError(
        f"{path}: {what} size reaches {size} bytes at member '{name}' (limit {limit}): refusing a possible archive "
        "bomb; delete it and get the file from its original source"
    )
