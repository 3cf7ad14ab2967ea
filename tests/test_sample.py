"""The built-in sample: the real sources' exact formats, deterministic per seed, with FER2013's quirks planted."""

from __future__ import annotations

import collections
import csv
import io
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.archives import iter_members, read_member
from pipeline.classes import FER2013_LABELS, FERPLUS_LABELS, FERPLUS_VOTE_COLUMNS
from pipeline.errors import PipelineError
from pipeline.params import SampleParams
from pipeline.raw import RAW_FILES
from pipeline.sample import split_counts, write_sample

PARAMS = SampleParams()
SPLITS = ("Training", "PublicTest", "PrivateTest")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, list[Path]]:
    """The sample files of every dataset, each in a folder of its own, written once."""
    out = tmp_path_factory.mktemp("raw")
    return {dataset: write_sample(dataset, out / dataset, PARAMS) for dataset in RAW_FILES}


@pytest.fixture(scope="module")
def raw(written) -> dict[str, Path]:
    return {path.name: path for paths in written.values() for path in paths}


@pytest.fixture(scope="module")
def fer2013(raw) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_member(raw["fer2013.tar.gz"], "fer2013/fer2013.csv").decode())))


@pytest.fixture(scope="module")
def ferplus(raw) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(raw["fer2013new.csv"].read_text())))


def pixels_of(row: dict[str, str]) -> np.ndarray:
    return np.array(row["pixels"].split(), dtype=int).reshape(48, 48)


def votes_of(row: dict[str, str]) -> np.ndarray:
    return np.array([int(row[c]) for c in FERPLUS_VOTE_COLUMNS])


def test_each_dataset_gets_its_canonical_files(written, tmp_path):
    for dataset, names in RAW_FILES.items():
        assert [p.name for p in written[dataset]] == list(names)
        assert sorted(p.name for p in written[dataset][0].parent.iterdir()) == sorted(names)  # no temp files left
    assert written["fer2013"][0].read_bytes() == written["ferplus"][0].read_bytes()  # one sample, several views
    with pytest.raises(PipelineError, match="data.dataset='affectnet' has no sample"):
        write_sample("affectnet", tmp_path, PARAMS)


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path):
    def files(seed: int, where: str) -> dict[str, bytes]:
        params = SampleParams(images_per_class=12, seed=seed)
        paths = write_sample("ferplus", tmp_path / where, params) + write_sample("apollo6", tmp_path / where, params)
        return {p.name: p.read_bytes() for p in paths}

    first, again, other = files(3, "a"), files(3, "b"), files(4, "c")
    assert first == again
    assert all(first[name] != other[name] for name in first)


def test_generation_is_fast(tmp_path):
    start = time.perf_counter()
    write_sample("ferplus", tmp_path, PARAMS)
    assert time.perf_counter() - start < 4  # ~0.4 s here; generous for a loaded 2-core machine


def test_fer2013_archive_holds_only_the_challenge_csv(raw):
    assert [name for name, _ in iter_members(raw["fer2013.tar.gz"])] == ["fer2013/fer2013.csv"]


def test_fer2013_csv_format_and_per_class_counts(fer2013):
    assert list(fer2013[0]) == ["emotion", "pixels", "Usage"]
    for row in fer2013:
        values = row["pixels"].split(" ")
        assert len(values) == 2304 and all(v.isdigit() and int(v) <= 255 for v in values)
    counts = collections.Counter((row["Usage"], FER2013_LABELS[int(row["emotion"])]) for row in fer2013)
    expected = split_counts(PARAMS)
    assert counts == {(split, c): n for split, per_class in expected.items() for c, n in per_class.items()}
    usages = [row["Usage"] for row in fer2013]
    assert usages == sorted(usages, key=SPLITS.index)  # Training rows first, like the real file


def test_counts_follow_fer2013_imbalance():
    train = split_counts(PARAMS)["Training"]
    assert max(train, key=train.get) == "happy"
    others = [n for c, n in train.items() if c != "disgust"]
    assert train["disgust"] <= 0.35 * sum(others) / len(others)
    assert all(
        n >= 2 for per_class in split_counts(SampleParams(images_per_class=4)).values() for n in per_class.values()
    )


def test_ferplus_votes_align_row_by_row(fer2013, ferplus):
    assert list(ferplus[0]) == ["Usage", "Image name", *FERPLUS_VOTE_COLUMNS]
    assert len(ferplus) == len(fer2013)
    for i, (votes, row) in enumerate(zip(ferplus, fer2013, strict=True)):
        assert votes["Usage"] == row["Usage"]
        assert votes["Image name"] in ("", f"fer{i:07d}.png")
        assert votes_of(votes).sum() == 10


def test_image_zip_has_the_msambare_layout(raw):
    members = list(iter_members(raw["msambare-fer2013.zip"]))
    pattern = re.compile(r"(train)/([a-z]+)/Training_\d{8}\.jpg|(test)/([a-z]+)/(PublicTest|PrivateTest)_\d{8}\.jpg")
    counts = collections.Counter()
    for name, data in members:
        match = pattern.fullmatch(name)
        assert match, name
        folder, label = (match[1], match[2]) if match[1] else (match[3], match[4])
        counts[folder, label] += 1
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "L", (48, 48))
    expected = split_counts(PARAMS)
    for label in FER2013_LABELS:
        assert counts["train", label] == expected["Training"][label]
        assert counts["test", label] == expected["PublicTest"][label] + expected["PrivateTest"][label]
    with zipfile.ZipFile(raw["msambare-fer2013.zip"]) as archive:
        assert {"train/", "test/angry/"} <= set(archive.namelist())  # folder entries, as in the real zip


def test_apollo_zip_has_six_capitalised_classes(raw):
    names = [name for name, _ in iter_members(raw["apollo2506-facial-recognition-dataset.zip"])]
    folders = collections.Counter(tuple(name.split("/")[:2]) for name in names)
    classes = ("Angry", "Fear", "Happy", "Neutral", "Sad", "Surprise")
    assert {top for top, _ in folders} == {"Training", "Testing"}
    assert {label for _, label in folders} == set(classes)
    expected = split_counts(PARAMS)
    assert folders["Training", "Happy"] == expected["Training"]["happy"]
    assert len(names) == sum(n for per_class in expected.values() for c, n in per_class.items() if c != "disgust")


def test_planted_duplicates_leaks_blanks_and_nonfaces(fer2013, ferplus):
    train = collections.defaultdict(list)
    test = {}
    for row in fer2013:
        if row["Usage"] == "Training":
            train[row["pixels"]].append(row["emotion"])
        else:
            test[row["pixels"]] = row["emotion"]
    duplicates = [labels for labels in train.values() if len(labels) > 1]
    assert sum(len(labels) - 1 for labels in duplicates) == 4
    assert any(len(set(labels)) > 1 for labels in duplicates)  # one duplicate carries another label
    leaks = [(labels, test[pixels]) for pixels, labels in train.items() if pixels in test]
    assert len(leaks) == 4
    assert sum(test_label not in labels for labels, test_label in leaks) == 2
    blanks = [i for i, row in enumerate(fer2013) if np.ptp(pixels_of(row)) == 0]
    assert len(blanks) == 3
    assert all(ferplus[i]["Image name"] == "" and ferplus[i]["NF"] == "10" for i in blanks)
    assert [i for i, row in enumerate(ferplus) if row["Image name"] == ""] == blanks
    nonfaces = [row for row in ferplus if row["Image name"] and int(row["NF"]) > 5]
    assert len(nonfaces) == 4


def test_ferplus_votes_dispute_some_fer2013_labels(fer2013, ferplus):
    named = [(row, votes_of(v)) for row, v in zip(fer2013, ferplus, strict=True) if v["Image name"]]
    majority = [FERPLUS_LABELS[votes.argmax()] for _, votes in named if votes.max() > 5]
    relabelled = sum(
        FERPLUS_LABELS[votes.argmax()] != FER2013_LABELS[int(row["emotion"])] for row, votes in named if votes.max() > 5
    )
    ambiguous = sum(votes.max() <= 5 for _, votes in named)
    assert 0.03 * len(named) < relabelled < 0.3 * len(named)
    assert 0.03 * len(named) < ambiguous < 0.3 * len(named)
    assert "contempt" in majority


def test_expression_is_in_the_pixels(fer2013):
    """Even a nearest-centroid classifier on 24x24 standardised pixels beats twice chance (1/7) on the test splits."""
    images = np.stack([pixels_of(row) for row in fer2013]).astype(float).reshape(-1, 24, 2, 24, 2).mean(axis=(2, 4))
    x = images.reshape(len(images), -1)
    x = (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-6)
    y = np.array([int(row["emotion"]) for row in fer2013])
    train = np.array([row["Usage"] == "Training" for row in fer2013])
    centroids = np.stack([x[train & (y == c)].mean(axis=0) for c in range(7)])
    predicted = ((x[~train, None, :] - centroids[None]) ** 2).sum(axis=-1).argmin(axis=1)
    assert (predicted == y[~train]).mean() > 2 / 7
