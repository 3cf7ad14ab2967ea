"""Safe archive reading on real zip/tar files: good ones read, hostile or broken ones refused with one clear line."""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from pipeline.archives import check_archive, iter_members, read_member
from pipeline.errors import PipelineError


def make_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def tar_with_special(path: Path, name: str, kind: bytes) -> Path:
    """A tar.gz holding one regular file and then one link/device member of type `kind`."""
    with tarfile.open(path, "w:gz") as archive:
        ok = tarfile.TarInfo("ok.txt")
        ok.size = 2
        archive.addfile(ok, io.BytesIO(b"ok"))
        special = tarfile.TarInfo(name)
        special.type = kind
        special.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
        archive.addfile(special)
    return path


def zip_with_symlink(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("train/happy/link.jpg")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    return path


def refused(path: Path, **limits) -> str:
    """The message of the PipelineError that both the full read and the cheap check raise."""
    with pytest.raises(PipelineError) as full:
        list(iter_members(path, **limits))
    with pytest.raises(PipelineError) as cheap:
        check_archive(path, **limits)
    assert str(full.value) == str(cheap.value)
    message = str(full.value)
    assert "\n" not in message and str(path) in message
    return message


def test_reads_regular_members_of_zip_and_tar_skipping_folders(tmp_path):
    members = {"train/": b"", "train/happy/a.jpg": b"A" * 100, "test/sad/b.jpg": b"B"}
    zipped = make_zip(tmp_path / "x.zip", members)
    tarred = make_tar(tmp_path / "x.tar.gz", {k: v for k, v in members.items() if not k.endswith("/")})
    expected = [("train/happy/a.jpg", b"A" * 100), ("test/sad/b.jpg", b"B")]
    assert list(iter_members(zipped)) == expected
    assert list(iter_members(tarred)) == expected
    assert check_archive(zipped) == check_archive(tarred) == 2
    assert read_member(tarred, "test/sad/b.jpg") == b"B"


def test_format_is_detected_by_content_not_suffix(tmp_path):
    zipped = make_zip(tmp_path / "really-a-zip.tar.gz", {"a.txt": b"zip"})
    tarred = make_tar(tmp_path / "really-a-tar.zip", {"a.txt": b"tar"}, mode="w")
    assert read_member(zipped, "a.txt") == b"zip"
    assert read_member(tarred, "a.txt") == b"tar"


def test_missing_member_and_missing_archive_name_the_fix(tmp_path):
    archive = make_tar(tmp_path / "fer2013.tar.gz", {"other.csv": b"x"})
    with pytest.raises(PipelineError, match=r"has no member 'fer2013/fer2013.csv'.*run the download stage again"):
        read_member(archive, "fer2013/fer2013.csv")
    with pytest.raises(PipelineError, match="nothing.zip not found: run the download stage"):
        check_archive(tmp_path / "nothing.zip")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.txt", "path traversal"),
        ("train/../../evil.txt", "path traversal"),
        ("..\\evil.txt", "path traversal"),
        ("/etc/passwd", "absolute path"),
        ("C:\\Windows\\evil.dll", "absolute path"),
    ],
)
@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_names_escaping_the_folder_are_refused(tmp_path, name, why, fmt):
    path = tmp_path / f"evil.{fmt}"
    members = {"ok.txt": b"ok", name: b"pwned"}
    make_zip(path, members) if fmt == "zip" else make_tar(path, members)
    message = refused(path)
    assert why in message and f"'{name}'" in message


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_links_and_devices_are_refused(tmp_path, kind):
    message = refused(tar_with_special(tmp_path / "evil.tar.gz", "train/happy/x.jpg", kind))
    assert "'train/happy/x.jpg' is a link or special file" in message


def test_zip_symlink_is_refused(tmp_path):
    assert "is a link or special file" in refused(zip_with_symlink(tmp_path / "evil.zip"))


def test_member_over_the_size_limit_is_refused_from_its_declared_size(tmp_path):
    bomb = make_zip(tmp_path / "bomb.zip", {"small.txt": b"x", "zeros.bin": bytes(2_000_000)})
    assert bomb.stat().st_size < 20_000  # 2 MB of zeros compresses to almost nothing
    message = refused(bomb, max_member_bytes=1_000_000)
    assert "'zeros.bin'" in message and "archive bomb" in message
    assert [name for name, _ in iter_members(bomb, max_member_bytes=2_000_000)] == ["small.txt", "zeros.bin"]


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_total_over_the_limit_is_refused(tmp_path, fmt):
    path = tmp_path / f"many.{fmt}"
    members = {f"part{i}.bin": bytes(400_000) for i in range(3)}
    make_zip(path, members) if fmt == "zip" else make_tar(path, members)
    message = refused(path, max_total_bytes=1_000_000)
    assert "archive total" in message and "'part2.bin'" in message


def test_zip_understating_a_member_size_is_refused_when_read(tmp_path):
    """The declared size passes the check, but the bytes actually read do not match it."""
    path = make_zip(tmp_path / "liar.zip", {"data.bin": b"x" * 5000}, zipfile.ZIP_STORED)
    raw = bytearray(path.read_bytes())
    central = raw.rindex(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 10)  # uncompressed size in the central directory
    struct.pack_into("<I", raw, 22, 10)  # and in the local header
    path.write_bytes(bytes(raw))
    assert check_archive(path, max_member_bytes=100) == 1  # the listing alone looks harmless
    with pytest.raises(PipelineError, match="liar.zip is not a readable zip/tar archive"):
        list(iter_members(path, max_member_bytes=100))


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "tar"])
def test_truncated_archives_are_refused(tmp_path, fmt):
    path = tmp_path / f"partial.{fmt}"
    members = {f"img{i}.bin": bytes(range(256)) * 40 for i in range(5)}
    mode = {"tar.gz": "w:gz", "tar": "w"}.get(fmt)
    make_zip(path, members) if fmt == "zip" else make_tar(path, members, mode)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PipelineError, match=r"partial\.\S+ is not a readable zip/tar archive .*run the download"):
        list(iter_members(path))


@pytest.mark.parametrize("content", [b"", b"not an archive at all\n" * 100, b"PK\x03\x04garbage" * 10])
def test_corrupt_files_are_refused(tmp_path, content):
    path = tmp_path / "broken.zip"
    path.write_bytes(content)
    assert "is not a readable zip/tar archive (" in refused(path)


def test_reads_fer2013_csv_from_the_real_archive_quickly(shared_datasets):
    start = time.perf_counter()
    data = read_member(shared_datasets / "fer2013.tar.gz", "fer2013/fer2013.csv")
    seconds = time.perf_counter() - start
    lines = data.splitlines()
    assert lines[0] == b"emotion,pixels,Usage"
    assert len(lines) - 1 == 35_887
    assert len(lines[1].split(b",")[1].split()) == 48 * 48
    assert seconds < 30, f"reading 301 MB took {seconds:.1f} s: the reader is pathologically slow"


def test_checks_the_real_image_zip_listing(shared_datasets):
    assert check_archive(shared_datasets / "msambare-fer2013.zip") == 28_709 + 7_178
