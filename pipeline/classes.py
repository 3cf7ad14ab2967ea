"""Label taxonomies: the canonical emotion names and the class sets the pipeline can train on."""

from __future__ import annotations

# FER2013 `emotion` column order (0-6).
FER2013_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# FER+ vote columns of fer2013new.csv, mapped to canonical names; the last two are not emotions.
FERPLUS_VOTE_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)
FERPLUS_LABELS = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt", "unknown", "nonface")

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "fer7": FER2013_LABELS,
    "fer6": ("angry", "fear", "happy", "sad", "surprise", "neutral"),
    "ferplus8": FERPLUS_LABELS[:8],
}


def class_names(class_set: str) -> tuple[str, ...]:
    return CLASS_SETS[class_set]
