"""Relabel FER2013 images from the FER+ 10-annotator votes.

Each scheme returns hard labels (index into the class set, -1 = dropped), soft targets (N, C) and the
reason each dropped image was dropped, so the report can say what happened to every image.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pipeline.classes import FERPLUS_LABELS

NON_EMOTIONS = ("unknown", "nonface")


class Relabelled(NamedTuple):
    labels: np.ndarray  # int (N,), -1 where dropped
    targets: np.ndarray  # float32 (N, C): one-hot, or the vote distribution
    reasons: np.ndarray  # str (N,): "" where kept


def drop_outlier_votes(votes: np.ndarray) -> np.ndarray:
    """FER+ paper: a label with a single vote is treated as annotator noise."""
    return np.where(votes == 1, 0, votes)


def relabel_by_majority(votes: np.ndarray, classes: tuple[str, ...]) -> Relabelled:
    """FER+ majority rule: after dropping single votes, keep a label only with more than half the remaining votes."""
    cleaned = drop_outlier_votes(votes)
    winner = cleaned.argmax(axis=1)
    passes = cleaned.max(axis=1) * 2 > cleaned.sum(axis=1)
    return _from_winners(winner, passes, classes)


def relabel_by_plurality(votes: np.ndarray, classes: tuple[str, ...], min_agreement: float) -> Relabelled:
    """Keep the most-voted label when it is unique and has at least `min_agreement` of all votes."""
    top = votes.max(axis=1)
    unique = (votes == top[:, None]).sum(axis=1) == 1
    passes = unique & (top >= min_agreement * votes.sum(axis=1)) & (top > 0)
    return _from_winners(votes.argmax(axis=1), passes, classes)


def vote_distribution(votes: np.ndarray, classes: tuple[str, ...]) -> Relabelled:
    """Soft targets: the share of votes each class got (FER+ 'probability' training).

    Images whose plurality vote is unknown / non-face, or with no vote in the class set, are dropped.
    """
    targets = vote_shares(votes, classes)
    non_emotion = np.isin(np.array(FERPLUS_LABELS)[votes.argmax(axis=1)], NON_EMOTIONS)
    reasons = np.where(non_emotion, "unknown_or_nonface", np.where(targets.sum(axis=1) == 0, "outside_classes", ""))
    labels = np.where(reasons == "", targets.argmax(axis=1), -1)
    return Relabelled(labels, targets, reasons)


def blend_votes_into_labels(votes: np.ndarray, labels: list[str] | np.ndarray, classes: tuple[str, ...]) -> Relabelled:
    """Soft targets for FER2013's own task: half its label, half the FER+ vote shares (the label alone where
    no vote falls in the class set). FER2013's label keeps at least half of each target, never less than
    another class; the ten annotators say which other expressions a face resembles, a cheaper signal than
    a teacher model's."""
    original = keep_original_labels(labels, classes)
    shares = vote_shares(votes, classes)
    voted = shares.sum(axis=1, keepdims=True) > 0
    targets = np.where(voted, blend_targets(original.targets, shares, 0.5), original.targets)
    return Relabelled(original.labels, targets, original.reasons)


def blend_targets(targets: np.ndarray, other: np.ndarray, weight: float) -> np.ndarray:
    """`weight` of `other` mixed into `targets`: the FER+ votes here, a teacher's predictions in `distill`."""
    return ((1 - weight) * targets + weight * other).astype(np.float32)


def vote_shares(votes: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """(N, C) float32: each class's share of the votes that fall in `classes`; a row of zeros where none do."""
    in_set = votes[:, [FERPLUS_LABELS.index(c) for c in classes]].astype(np.float32)
    totals = in_set.sum(axis=1, keepdims=True)
    return np.divide(in_set, totals, out=np.zeros_like(in_set), where=totals > 0)


def keep_original_labels(labels: list[str] | np.ndarray, classes: tuple[str, ...]) -> Relabelled:
    """No relabelling: FER2013 labels, minus those outside the class set (e.g. disgust for fer6)."""
    index = {name: i for i, name in enumerate(classes)}
    hard = np.array([index.get(name, -1) for name in labels], dtype=np.int64)
    reasons = np.where(hard < 0, "outside_classes", "")
    return Relabelled(hard, _one_hot(hard, len(classes)), reasons)


# relabel.scheme -> the scheme, called with (votes, FER2013 labels, classes, min_agreement)
SCHEMES = {
    "none": lambda votes, labels, classes, min_agreement: keep_original_labels(labels, classes),
    "majority": lambda votes, labels, classes, min_agreement: relabel_by_majority(votes, classes),
    "plurality": lambda votes, labels, classes, min_agreement: relabel_by_plurality(votes, classes, min_agreement),
    "distribution": lambda votes, labels, classes, min_agreement: vote_distribution(votes, classes),
    "blend": lambda votes, labels, classes, min_agreement: blend_votes_into_labels(votes, labels, classes),
}


# relabel.scheme -> the scheme that labels the validation and test images. Soft targets are a training device:
# the FER+ paper scores its "probability" training on the majority-vote test labels, and so do we, which keeps
# the val/test scores of every scheme comparable with each other and with published FER+ results.
# `blend` trains for FER2013's labels, so they score it.
SCORED_BY = {"none": "none", "majority": "majority", "plurality": "plurality", "distribution": "majority", "blend": "none"}


def relabel(scheme: str, votes: np.ndarray | None, labels, classes: tuple[str, ...], min_agreement: float) -> Relabelled:
    return SCHEMES[scheme](votes, labels, classes, min_agreement)


def relabel_splits(
    scheme: str, votes: np.ndarray | None, labels, is_train: np.ndarray, classes: tuple[str, ...], min_agreement: float
) -> Relabelled:
    """Training images get `scheme`; validation and test images get the scheme they are scored by (SCORED_BY)."""
    trained = relabel(scheme, votes, labels, classes, min_agreement)
    if SCORED_BY[scheme] == scheme:
        return trained
    scored = relabel(SCORED_BY[scheme], votes, labels, classes, min_agreement)
    return Relabelled(*(np.where(is_train.reshape(-1, *[1] * (a.ndim - 1)), a, b) for a, b in zip(trained, scored)))


def _from_winners(winner: np.ndarray, passes: np.ndarray, classes: tuple[str, ...]) -> Relabelled:
    names = np.array(FERPLUS_LABELS)[winner]
    index = {name: i for i, name in enumerate(classes)}
    hard = np.array([index.get(name, -1) for name in names], dtype=np.int64)
    reasons = np.select(
        [~passes, np.isin(names, NON_EMOTIONS), hard < 0],
        ["ambiguous", "unknown_or_nonface", "outside_classes"],
        default="",
    )
    hard = np.where(reasons == "", hard, -1)
    return Relabelled(hard, _one_hot(hard, len(classes)), reasons)


def _one_hot(labels: np.ndarray, n: int) -> np.ndarray:
    targets = np.zeros((len(labels), n), np.float32)
    kept = labels >= 0
    targets[np.flatnonzero(kept), labels[kept]] = 1.0
    return targets

