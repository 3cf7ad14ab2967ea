"""Decode, clean, relabel and balance on small generated data with known answers."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.balance import RESAMPLERS, balance, balanced_class_weights
from pipeline.classes import CLASS_SETS
from pipeline.clean import blank_mask, copied_from, duplicate_mask, image_hashes, leak_mask, nonface_mask
from pipeline.decode import decode_fer2013_csv, decode_image, decode_image_folders, read_ferplus_votes
from pipeline.errors import PipelineError
from pipeline.params import BalanceParams, RelabelParams
from pipeline.relabel import (
    SCHEMES,
    SCORED_BY,
    blend_votes_into_labels,
    keep_original_labels,
    relabel,
    relabel_by_majority,
    relabel_by_plurality,
    relabel_splits,
    vote_distribution,
)

FER7, FERPLUS8 = CLASS_SETS["fer7"], CLASS_SETS["ferplus8"]


def pixels(value: int) -> str:
    return " ".join([str(value)] * 2304)


def votes(**named) -> list[int]:
    """A FER+ vote row from names: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF."""
    order = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
    return [named.get(name, 0) for name in order]


def test_decode_csv_keeps_splits_and_reports_each_bad_row():
    rows = [
        "emotion,pixels,Usage",
        f"3,{pixels(10)},Training",
        f"0,{pixels(20)},PublicTest",
        f"6,{pixels(30)},PrivateTest",
        f"7,{pixels(40)},Training",  # unknown label
        "1,1 2 3,Training",  # wrong pixel count
        f"2,{pixels(5).replace('5', 'x', 1)},Training",  # non-numeric
        f"4,{pixels(256)},Training",  # out of range
        f"4,{pixels(50)},Validation",  # unknown usage
    ]
    decoded = decode_fer2013_csv("\n".join(rows))
    assert decoded.meta["split"].tolist() == ["train", "val", "test"]
    assert decoded.meta["label"].tolist() == ["happy", "angry", "neutral"]
    assert decoded.meta["row"].tolist() == [0, 1, 2]
    assert [int(img.mean()) for img in decoded.images] == [10, 20, 30]
    assert [b.split(": ", 1)[1] for b in decoded.bad] == [
        "unknown emotion label '7'",
        "3 pixels, expected 2304",
        "non-numeric pixels",
        "pixel value outside 0-255",
        "unknown Usage 'Validation'",
    ]
    assert decoded.bad[0].startswith("fer2013.csv row 5")


def test_decode_csv_missing_column_is_one_clear_error():
    with pytest.raises(PipelineError, match="missing column.*pixels"):
        decode_fer2013_csv("emotion,Usage\n1,Training\n")


def jpeg(value: int, size=(48, 48), mode="L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, value if mode == "L" else (value, value, value)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_decode_image_converts_mode_and_size_and_rejects_garbage():
    assert decode_image(jpeg(100, (96, 96), "RGB")).shape == (48, 48)
    with pytest.raises(ValueError, match="unreadable"):
        decode_image(b"not an image")
    with pytest.raises(ValueError, match="empty"):
        decode_image(b"")


def test_decode_image_folders_reads_both_layouts_and_splits_val_stratified():
    members = [(f"train/happy/{i}.jpg", jpeg(100 + i)) for i in range(10)]
    members += [(f"Training/Training/Sad/{i}.jpg", jpeg(50 + i)) for i in range(10)]
    members += [("test/happy/t.jpg", jpeg(1)), ("train/bored/x.jpg", jpeg(2)), ("train/sad/broken.jpg", b"xx")]
    decoded = decode_image_folders(members, "a.zip", val_fraction=0.2, seed=0)
    counts = decoded.meta.groupby(["split", "label"]).size().to_dict()
    assert counts == {("train", "happy"): 8, ("train", "sad"): 8, ("val", "happy"): 2, ("val", "sad"): 2, ("test", "happy"): 1}
    assert decoded.bad == [
        "a.zip:train/bored/x.jpg: not under <train|test>/<emotion>/",
        "a.zip:train/sad/broken.jpg: unreadable image (UnidentifiedImageError)",
        "a.zip:train/sad/: empty class folder (no readable image)",  # its only file is broken
    ]
    again = decode_image_folders(members, "a.zip", val_fraction=0.2, seed=0)
    assert again.meta["split"].tolist() == decoded.meta["split"].tolist()


def test_votes_must_align_with_the_csv():
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
    text = header + "Training,fer0.png,10,0,0,0,0,0,0,0,0,0\n"
    votes, bad = read_ferplus_votes(text, 1)
    assert votes.tolist() == [[10, 0, 0, 0, 0, 0, 0, 0, 0, 0]] and bad == {}
    with pytest.raises(PipelineError, match="1 rows but fer2013.csv has 2"):
        read_ferplus_votes(text, 2)


def test_clean_masks():
    images = np.stack([np.full((48, 48), v, np.uint8) for v in (0, 7, 7, 9, 9, 9)])
    images[1:, 0, 0] = 255  # not blank
    assert blank_mask(images, 3.0).tolist() == [True, False, False, False, False, False]
    hashes = image_hashes(images)
    splits = pd.Series(["train", "train", "train", "train", "val", "test"])
    # image 1 and 2 repeat within train; image 3 (train) = 4 (val) = 5 (test)
    assert duplicate_mask(hashes, splits).tolist() == [False, False, True, False, False, False]
    assert leak_mask(hashes, splits).tolist() == [False, False, False, True, True, False]
    assert copied_from(hashes, splits.to_numpy(), ("val",)).tolist() == [False, False, False, True, True, True]
    assert copied_from(hashes, splits.to_numpy(), ()).tolist() == [False] * 6
    copies = np.array(["a", "b", "c", "a", "d", "b"])
    copy_splits = np.array(["train", "train", "test", "test", "val", "val"])
    assert copied_from(copies, copy_splits, ("train",)).tolist() == [True, True, False, True, False, True]
    nf = np.array([votes(NF=10), votes(NF=5, neutral=5), votes(NF=6, happiness=4)])
    assert nonface_mask(nf).tolist() == [True, False, True]


def test_majority_follows_the_ferplus_rule():
    table = np.array(
        [
            votes(happiness=6, neutral=4),  # clear majority
            votes(happiness=5, neutral=4, sadness=1),  # the 1 is an outlier: 5 of 9 > half
            votes(happiness=4, neutral=4, sadness=2),  # tie: ambiguous
            votes(unknown=8, neutral=2),  # unknown wins: dropped
            votes(contempt=7, neutral=3),  # contempt: outside fer7, kept in ferplus8
        ]
    )
    fer7 = relabel_by_majority(table, FER7)
    assert fer7.labels.tolist() == [FER7.index("happy"), FER7.index("happy"), -1, -1, -1]
    assert fer7.reasons.tolist() == ["", "", "ambiguous", "unknown_or_nonface", "outside_classes"]
    assert relabel_by_majority(table, FERPLUS8).labels[4] == FERPLUS8.index("contempt")
    assert fer7.targets.sum(axis=1).tolist() == [1, 1, 0, 0, 0]


def test_plurality_threshold_and_distribution():
    table = np.array([votes(happiness=4, neutral=3, sadness=3), votes(happiness=3, neutral=3, anger=4), votes(NF=6, anger=4)])
    assert relabel_by_plurality(table, FER7, 0.4).labels.tolist() == [FER7.index("happy"), FER7.index("angry"), -1]
    assert relabel_by_plurality(table, FER7, 0.5).labels.tolist() == [-1, -1, -1]
    soft = vote_distribution(table, FER7)
    assert soft.targets[0, FER7.index("happy")] == pytest.approx(0.4)
    assert soft.targets[0].sum() == pytest.approx(1.0)
    assert soft.labels.tolist()[:2] == [FER7.index("happy"), FER7.index("angry")]
    assert soft.reasons.tolist()[2] == "unknown_or_nonface"


def test_original_labels_respect_the_class_set():
    result = keep_original_labels(["disgust", "happy"], CLASS_SETS["fer6"])
    assert result.labels.tolist() == [-1, CLASS_SETS["fer6"].index("happy")]


def imbalanced_train(counts=(30, 6, 12)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(len(counts)), counts)
    return {
        "x": rng.integers(0, 256, (len(y), 48, 48), dtype=np.uint8),
        "y": y,
        "targets": np.eye(len(counts), dtype=np.float32)[y],
        "source": np.array([f"row{i}" for i in range(len(y))]),
    }


@pytest.mark.parametrize(
    ("method", "expected"),
    [("none", [30, 6, 12]), ("class_weight", [30, 6, 12]), ("oversample", [30, 30, 30]), ("undersample", [6, 6, 6]), ("smote", [30, 30, 30])],
)
def test_balance_methods_give_the_expected_class_counts(method, expected):
    balanced, weights = balance(imbalanced_train(), BalanceParams(method=method, seed=1))
    assert np.bincount(balanced["y"]).tolist() == expected
    assert balanced["x"].dtype == np.uint8 and len(balanced["x"]) == len(balanced["targets"]) == sum(expected)
    assert (balanced["targets"].argmax(axis=1) == balanced["y"]).all()
    if method == "class_weight":
        assert weights == pytest.approx({0: 48 / 90, 1: 48 / 18, 2: 48 / 36})
    else:
        assert set(weights.values()) == {1.0}


def test_class_weights_for_a_class_missing_from_train():
    assert balanced_class_weights(np.array([0, 0, 2, 2]), 3) == {0: 1.0, 1: 1.0, 2: 1.0}


def test_the_relabel_and_balance_registries_are_the_allowed_values():
    from typing import get_args, get_type_hints

    assert set(SCHEMES) == set(SCORED_BY) == set(get_args(get_type_hints(RelabelParams)["scheme"]))
    assert set(SCORED_BY.values()) <= {"none", "majority", "plurality"}  # val/test labels are hard labels
    assert set(RESAMPLERS) == set(get_args(get_type_hints(BalanceParams)["method"]))


def test_each_relabel_scheme_is_its_function():
    votes = np.array([[6, 2, 0, 0, 0, 0, 0, 0, 2, 0], [4, 4, 0, 0, 0, 0, 0, 0, 0, 2]])  # FER+ columns
    labels = np.array(["neutral", "happy"])
    expected = {
        "none": keep_original_labels(labels, FER7),
        "majority": relabel_by_majority(votes, FER7),
        "plurality": relabel_by_plurality(votes, FER7, 0.4),
        "distribution": vote_distribution(votes, FER7),
        "blend": blend_votes_into_labels(votes, labels, FER7),
    }
    for scheme, want in expected.items():
        got = relabel(scheme, votes, labels, FER7, 0.4)
        assert got.labels.tolist() == want.labels.tolist(), scheme
        assert np.array_equal(got.targets, want.targets), scheme


def test_blend_keeps_the_fer2013_label_on_top_and_softens_it_with_the_votes():
    table = np.array([votes(happiness=6, neutral=4), votes(happiness=8, neutral=2), votes(contempt=9, unknown=1), votes(neutral=10)])
    labels = np.array(["neutral", "happy", "angry", "disgust"])
    is_train = np.array([True, True, True, False])
    got = relabel_splits("blend", table, labels, is_train, FER7, 0.5)
    neutral, happy, angry = FER7.index("neutral"), FER7.index("happy"), FER7.index("angry")
    assert got.labels.tolist() == [neutral, happy, angry, FER7.index("disgust")]  # FER2013's labels, none dropped
    assert got.reasons.tolist() == ["", "", "", ""]
    assert got.targets[0, [neutral, happy]].tolist() == pytest.approx([0.7, 0.3])  # the label wins even where the votes disagree
    assert got.targets[1, [neutral, happy]].tolist() == pytest.approx([0.1, 0.9])
    assert got.targets[2].tolist() == np.eye(7)[angry].tolist()  # no vote in the class set: the label alone
    assert got.targets[3].tolist() == np.eye(7)[FER7.index("disgust")].tolist()  # val/test: FER2013's label, one-hot
    assert np.allclose(got.targets.sum(axis=1), 1.0) and (got.targets.argmax(axis=1) == got.labels).all()


def test_a_soft_scheme_labels_validation_and_test_by_the_majority_rule():
    table = np.array([votes(happiness=5, neutral=5), votes(happiness=5, neutral=5), votes(happiness=8, neutral=2), votes(happiness=8, neutral=2)])
    is_train = np.array([True, False, True, False])
    got = relabel_splits("distribution", table, None, is_train, FER7, 0.5)
    neutral, happy = FER7.index("neutral"), FER7.index("happy")
    assert got.labels.tolist() == [happy, -1, happy, happy]  # the tied face trains (hard label: first of the tie), and is ambiguous in val/test
    assert got.reasons.tolist() == ["", "ambiguous", "", ""]
    assert got.targets[0, [neutral, happy]].tolist() == [0.5, 0.5]  # train: the vote shares
    assert got.targets[2, [neutral, happy]].tolist() == pytest.approx([0.2, 0.8])
    assert got.targets[3, [neutral, happy]].tolist() == [0.0, 1.0]  # val/test: one-hot majority label
    hard = relabel_splits("plurality", table, None, is_train, FER7, 0.5)
    assert np.array_equal(hard.labels, relabel_by_plurality(table, FER7, 0.5).labels)
