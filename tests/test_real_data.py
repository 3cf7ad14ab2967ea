"""The data stages on the real archives in ../shared/datasets (CI always has them)."""

import csv
import io

import numpy as np
import pytest

from pipeline import archives
from pipeline.classes import CLASS_SETS, FER2013_LABELS
from pipeline.decode import decode_fer2013_csv, decode_image_folders, read_ferplus_votes
from pipeline.params import parse_params
from pipeline.prepare import prepare
from pipeline.relabel import relabel_by_majority

# Per-class counts of fer2013.csv as the data's README gives them (classes in `emotion` order).
PUBLISHED_COUNTS = {
    "train": [3995, 436, 4097, 7215, 4830, 3171, 4965],
    "val": [467, 56, 496, 895, 653, 415, 607],
    "test": [491, 55, 528, 879, 594, 416, 626],
}


@pytest.fixture(scope="module")
def fer2013(shared_datasets):
    text = archives.read_member(shared_datasets / "fer2013.tar.gz", "fer2013/fer2013.csv").decode()
    return text, decode_fer2013_csv(text)


@pytest.fixture(scope="module")
def votes_text(shared_datasets):
    return (shared_datasets / "fer2013new.csv").read_text()


def test_decode_matches_the_published_class_counts(fer2013):
    _, decoded = fer2013
    assert decoded.bad == []
    for split, expected in PUBLISHED_COUNTS.items():
        labels = decoded.meta.loc[decoded.meta["split"] == split, "label"]
        assert [int((labels == name).sum()) for name in FER2013_LABELS] == expected


def test_decoded_pixels_equal_the_csv_text(fer2013):
    text, decoded = fer2013
    rows = list(csv.DictReader(io.StringIO(text)))
    for i in (0, 17, 28_708, 35_886):
        assert decoded.images[i].ravel().tolist() == [int(v) for v in rows[i]["pixels"].split()]


def ferplus_majority_by_hand(row: dict, classes: tuple[str, ...]) -> str | None:
    """The FER+ paper's rule written out plainly, as an independent check of the vectorised one."""
    names = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad", "anger": "angry",
             "disgust": "disgust", "fear": "fear", "contempt": "contempt", "unknown": None, "NF": None}
    counts = {column: int(row[column]) for column in names}
    counts = {column: (0 if n == 1 else n) for column, n in counts.items()}
    total = sum(counts.values())
    winner = max(counts, key=counts.get)
    if counts[winner] * 2 <= total or names[winner] not in classes:
        return None
    return names[winner]


@pytest.mark.parametrize("class_set", ["fer7", "ferplus8"])
def test_majority_relabel_on_the_full_vote_file(votes_text, class_set):
    classes = CLASS_SETS[class_set]
    rows = list(csv.DictReader(io.StringIO(votes_text)))
    votes, bad_votes = read_ferplus_votes(votes_text, len(rows))
    assert bad_votes == {}  # the real vote file has no malformed row
    result = relabel_by_majority(votes, classes)
    expected = [ferplus_majority_by_hand(row, classes) for row in rows]
    got = [classes[label] if label >= 0 else None for label in result.labels]
    assert got == expected
    assert len(rows) == 35_887 and 30_000 < sum(g is not None for g in got) < 35_887


def test_prepare_ferplus_keeps_the_official_test_split_and_drops_leaks(fer2013, votes_text):
    _, decoded = fer2013
    votes, _ = read_ferplus_votes(votes_text, len(decoded.meta))
    params = parse_params({"data": {"dataset": "ferplus", "classes": "fer7"}, "relabel": {"scheme": "none"}})
    prepared = prepare(decoded, votes, params)
    dropped = prepared.report["dropped"]
    assert dropped["duplicate"] > 0 and dropped["leak"] > 0 and dropped["nonface"] > 0
    assert len(prepared.splits["test"]["y"]) == 3589  # the official PrivateTest, untouched
    train_hashes = {x.tobytes() for x in prepared.splits["train"]["x"]}
    assert not any(x.tobytes() in train_hashes for x in prepared.splits["test"]["x"])
    assert prepared.report["relabelled"] == 0


def test_image_folder_archive_decodes_a_slice(shared_datasets):
    members = archives.iter_members(shared_datasets / "msambare-fer2013.zip")
    first = [m for _, m in zip(range(400), members)]
    decoded = decode_image_folders(first, "msambare-fer2013.zip", val_fraction=0.1, seed=0)
    assert decoded.images.shape[1:] == (48, 48) and decoded.images.dtype == np.uint8
    assert set(decoded.meta["label"]) <= set(FER2013_LABELS)
    assert decoded.bad == []


def test_soft_label_training_is_scored_on_the_majority_test_labels(fer2013, votes_text):
    """relabel.scheme=distribution changes the training targets only: val and test are the majority run's."""
    _, decoded = fer2013
    votes, _ = read_ferplus_votes(votes_text, len(decoded.meta))
    runs = {
        scheme: prepare(decoded, votes, parse_params({"data": {"dataset": "ferplus", "classes": "ferplus8"}, "relabel": {"scheme": scheme}}))
        for scheme in ("majority", "distribution")
    }
    for split in ("val", "test"):
        majority, soft = runs["majority"].splits[split], runs["distribution"].splits[split]
        assert len(soft["y"]) == len(majority["y"]) > 3000
        assert np.array_equal(soft["y"], majority["y"]) and np.array_equal(soft["targets"], majority["targets"])
        assert np.array_equal(soft["x"], majority["x"])
    soft_train = runs["distribution"].splits["train"]["targets"]
    assert len(soft_train) > len(runs["majority"].splits["train"]["y"])  # the ambiguous faces train too
    assert ((soft_train > 0).sum(axis=1) > 1).mean() > 0.5 and np.allclose(soft_train.sum(axis=1), 1.0)


def test_blend_trains_on_the_fer2013_splits_and_scores_on_fer2013_labels(fer2013, votes_text):
    """relabel.scheme=blend on the FER+ dataset (nonfaces kept) changes only the training targets of plain FER2013."""
    _, decoded = fer2013
    votes, _ = read_ferplus_votes(votes_text, len(decoded.meta))
    plain = prepare(decoded, None, parse_params({"data": {"dataset": "fer2013"}, "relabel": {"scheme": "none"}}))
    blend = prepare(
        decoded, votes, parse_params({"data": {"dataset": "ferplus"}, "relabel": {"scheme": "blend"}, "clean": {"nonfaces": False}})
    )
    for split in ("train", "val", "test"):
        assert np.array_equal(blend.splits[split]["x"], plain.splits[split]["x"]) and np.array_equal(blend.splits[split]["y"], plain.splits[split]["y"])
    for split in ("val", "test"):
        assert np.array_equal(blend.splits[split]["targets"], plain.splits[split]["targets"])
    soft = blend.splits["train"]["targets"]
    label_share = soft[np.arange(len(soft)), plain.splits["train"]["y"]]
    assert len(soft) > 26_000 and (label_share >= 0.5).all() and (label_share == soft.max(axis=1)).all()
    assert ((soft > 0).sum(axis=1) > 1).mean() > 0.5 and np.allclose(soft.sum(axis=1), 1.0)
