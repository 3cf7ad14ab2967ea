"""Malformed and hostile data files: every one becomes a listed bad row with its reason, or one error line.

Table-driven cases for each input class (CSV structure, encoding, size limits and decompression bombs,
bit depth, empty class folders, FER+ votes), property-based ones for what no table can list.
"""

import io
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.archives import folder_names, iter_members
from pipeline.decode import decode_fer2013_csv, decode_image, decode_image_folders, read_ferplus_votes, text_of
from pipeline.errors import PipelineError

ROOT = Path(__file__).resolve().parents[1]
HEADER = "emotion,pixels,Usage"
VOTES_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def pixels(value: int) -> str:
    return " ".join([str(value)] * 2304)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` pixels in its header: what a decompression bomb looks like to a reader."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


CSV_ROWS = [  # (row text, reason listed for it)
    (f"3,{pixels(10)},Training,extra", "4 fields, expected 3"),
    (f"3,{pixels(10)}", "2 fields, expected 3"),
    (f"3.0,{pixels(10)},Training", "unknown emotion label '3.0'"),
    (f"²,{pixels(10)},Training", "unknown emotion label '²'"),
    (f"3,{pixels(10)},Training\ufffd", "bytes that are not UTF-8 text"),
    (f"-1,{pixels(10)},Training", "unknown emotion label '-1'"),
    (f"3,{pixels(10)[:-1]}-1,Training", "non-numeric pixels"),
]


@pytest.mark.parametrize(("row", "reason"), CSV_ROWS)
def test_a_malformed_csv_row_is_listed_with_its_reason_and_the_rest_kept(row, reason):
    decoded = decode_fer2013_csv("\n".join([HEADER, f"0,{pixels(1)},Training", row, f"6,{pixels(2)},PrivateTest"]))
    assert decoded.bad == [f"fer2013.csv row 3: {reason}"]
    assert decoded.meta["row"].tolist() == [0, 2]  # row numbers still line up with the FER+ votes


def test_undecodable_bytes_only_cost_their_own_row():
    data = "\n".join([HEADER, f"0,{pixels(1)},Training", f"1,{pixels(2)},Training"]).encode()
    data = b"\xef\xbb\xbf" + data.replace(b"1,2 2", b"1,\xff\xfe 2", 1)  # a BOM, and two stray bytes in row 3
    decoded = decode_fer2013_csv(text_of(data))
    assert decoded.bad == ["fer2013.csv row 3: bytes that are not UTF-8 text"]
    assert decoded.meta["label"].tolist() == ["angry"]


def test_an_unmatched_quote_stops_with_one_line_naming_file_and_row():
    with pytest.raises(PipelineError, match=r"^fer2013.csv row \d+: .*the file is damaged") as err:
        decode_fer2013_csv(f'{HEADER}\n0,{pixels(1)},Training\n1,"{pixels(2)},Training\0\n')
    assert "\n" not in str(err.value)


def test_a_non_numeric_ferplus_vote_is_a_listed_row():
    rows = [VOTES_HEADER, "Training,fer0.png,10,0,0,0,0,0,0,0,0,0", "Training,fer1.png,5,x,0,0,0,0,0,0,0,0", "Training,fer2.png,1,2"]
    votes, bad = read_ferplus_votes("\n".join(rows), 3)
    assert bad == {1: "vote 'x' for 'happiness' is not a non-negative integer", 2: "4 fields, expected 12"}
    assert votes[0].tolist() == [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]


IMAGES = [  # (file bytes, reason)
    (b"", "empty file"),
    (b"GIF89a garbage", "unreadable image (UnidentifiedImageError)"),
    (png(np.zeros((48, 48), np.uint8))[:60], "unreadable image (OSError)"),
    (png_header_only(100_000, 100_000), "decompression bomb: Image size (10000000000 pixels) exceeds limit of 178956970 pixels"),
    (png_header_only(5_000, 5_000), "5000x5000 pixels, over the 16,777,216-pixel limit (decompression bomb?)"),
    (b"\x89PNG" + b"\0" * (20 << 20), "20,971,524 bytes, over the 20,971,520-byte limit for one image"),
]


@pytest.mark.parametrize(("data", "reason"), IMAGES, ids=lambda v: v if isinstance(v, str) else None)
def test_a_bad_image_file_gets_its_reason(data, reason):
    with pytest.raises(ValueError) as err:
        decode_image(data)
    assert str(err.value) == reason


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped():
    wide = np.zeros((48, 48), np.uint16)
    wide[0, :6] = [0, 257, 32768, 65535, 25700, 1000]
    decoded = decode_image(png(wide))
    assert decoded.dtype == np.uint8
    assert decoded[0, :6].tolist() == [0, 1, 128, 255, 100, 4]


def test_32_bit_integer_pixels_are_refused_with_a_reason():
    buffer = io.BytesIO()
    Image.fromarray(np.full((48, 48), 70_000, np.int32)).save(buffer, "TIFF")
    with pytest.raises(ValueError, match="I-mode .32-bit integer. pixels have no known range"):
        decode_image(buffer.getvalue())


def test_an_empty_class_folder_is_listed(tmp_path):
    archive = tmp_path / "a.zip"
    face = png(np.arange(48 * 48, dtype=np.uint16).reshape(48, 48).astype(np.uint8))
    with zipfile.ZipFile(archive, "w") as z:
        for split in ("train", "test"):
            z.writestr(f"{split}/happy/1.png", face)
            z.writestr(f"{split}/happy/2.png", face)
        z.writestr("train/disgust/", b"")  # a folder with nothing in it
    decoded = decode_image_folders(iter_members(archive), "a.zip", 0.5, 0, folder_names(archive))
    assert decoded.bad == ["a.zip:train/disgust/: empty class folder (no readable image)"]


@given(st.binary(max_size=2048))
@settings(max_examples=300)
def test_any_bytes_decode_to_a_face_or_a_value_error(data):
    try:
        image = decode_image(data)
    except ValueError as err:
        assert str(err) and "\n" not in str(err)
    else:
        assert image.shape == (48, 48) and image.dtype == np.uint8


VALID_PNG = png(np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8))


@given(st.lists(st.tuples(st.integers(0, len(VALID_PNG) - 1), st.integers(0, 255)), min_size=1, max_size=8))
@settings(max_examples=300)
def test_a_corrupted_png_decodes_or_is_refused(edits):
    data = bytearray(VALID_PNG)
    for offset, value in edits:
        data[offset] = value
    try:
        assert decode_image(bytes(data)).shape == (48, 48)
    except ValueError as err:
        assert "\n" not in str(err)


CSV_FIELD = st.text(alphabet=st.sampled_from('0123456789 ,"\n\r-.x²\ufffdTrainingPublic'), max_size=12)


@given(st.lists(st.tuples(CSV_FIELD, CSV_FIELD, CSV_FIELD), max_size=6))
@settings(max_examples=300)
def test_any_csv_gives_listed_rows_or_one_error_line(rows):
    text = "\n".join([HEADER, f"0,{pixels(1)},Training"] + [",".join(row) for row in rows])
    try:
        decoded = decode_fer2013_csv(text)
    except PipelineError as err:
        assert "\n" not in str(err)
    else:
        assert all(line.startswith("fer2013.csv row ") for line in decoded.bad)
        assert len(decoded.images) == len(decoded.meta) and decoded.images.dtype == np.uint8


@given(st.lists(st.text(alphabet=st.sampled_from("0123456789 -.xe,"), max_size=4), min_size=10, max_size=10))
@settings(max_examples=200)
def test_any_vote_cells_give_votes_or_a_listed_row(cells):
    votes, bad = read_ferplus_votes(f"{VOTES_HEADER}\nTraining,fer0.png,{','.join(cells)}\n", 1)
    if bad:
        assert list(bad) == [0] and votes[0].tolist() == [0] * 10
    else:
        assert votes[0].tolist() == [int(cell) for cell in cells]


def fer2013_raw(raw: Path, rows: list[str]) -> None:
    """data/raw/fer2013.tar.gz holding the given CSV rows, as the download stage leaves it."""
    raw.mkdir(parents=True)
    data = "\n".join([HEADER, *rows]).encode()
    with tarfile.open(raw / "fer2013.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("fer2013/fer2013.csv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("bad_row", "line"),
    [
        (f"3,{pixels(30)},Training,extra", "fer2013.csv row 4: 4 fields, expected 3"),
        (f"x,{pixels(30)},Training", "fer2013.csv row 4: unknown emotion label 'x'"),
    ],
)
def test_prepare_with_on_bad_error_stops_with_one_line(tmp_path, bad_row, line):
    rng = np.random.default_rng(1)
    good = [f"{i % 7},{' '.join(map(str, rng.integers(0, 256, 2304)))},{u}" for i, u in enumerate(["Training", "PublicTest"] * 7)]
    fer2013_raw(tmp_path / "data" / "raw", good[:2] + [bad_row] + good[2:])
    params = {"data": {"dataset": "fer2013"}, "relabel": {"scheme": "none"}, "clean": {"on_bad": "error"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.prepare"], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 1
    assert result.stderr == f"error: 1 bad rows/images, first: {line} (set clean.on_bad=drop to skip them)\n"
    assert not (tmp_path / "data" / "prepared").exists()
