"""The built-in sample dataset (`data.source: sample`): small, seeded stand-ins for the real downloads.

The files have exactly the names and formats the real sources deliver, so every later stage runs the
same code on them as on real data. The images are drawn faces whose expression follows the class,
jittered enough not to be trivial, with FER2013's quirks planted on purpose (class imbalance, exact
duplicates, train/test leaks, blank images, non-faces, FER2013 labels that FER+ annotators dispute)
so that the cleaning and relabelling stages have something to find.
"""

from __future__ import annotations

import csv
import gzip
import io
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.atomic import atomic_path
from pipeline.classes import FER2013_LABELS, FERPLUS_LABELS, FERPLUS_VOTE_COLUMNS
from pipeline.errors import PipelineError
from pipeline.params import SampleParams
from pipeline.raw import APOLLO_ARCHIVE, FER2013_ARCHIVE, FERPLUS_VOTES, MSAMBARE_ARCHIVE, RAW_FILES

SPLITS = ("Training", "PublicTest", "PrivateTest")
# Training images per class relative to `images_per_class`: FER2013's imbalance, rounded.
CLASS_WEIGHTS = {"angry": 0.8, "disgust": 0.25, "fear": 0.8, "happy": 1.4, "sad": 1.0, "surprise": 0.65, "neutral": 1.0}
# Expressions people confuse: where disputed FER+ votes and mislabelled FER2013 rows go.
CONFUSED = {
    "angry": ("disgust", "sad", "neutral"),
    "disgust": ("angry", "sad"),
    "fear": ("surprise", "sad"),
    "happy": ("neutral", "surprise"),
    "sad": ("neutral", "fear", "angry"),
    "surprise": ("fear", "happy"),
    "neutral": ("sad", "contempt", "happy"),
    "contempt": ("neutral", "happy", "disgust"),
}
LABEL_NOISE = 0.08  # share of rows whose FER2013 label is a confusable neighbour of the drawn expression
CONTEMPT_SHARE = 0.1  # share of `neutral` rows that FER+ annotators see as contempt (FER2013 has no contempt)
SIZE = 48
_CANVAS = 96  # drawn at 2x, then downsampled, so that thin features are antialiased instead of aliased
_MTIME = 1_356_998_400  # 2013-01-01: fixed archive timestamps make the files byte-identical per seed
_ZIP_TIME = (2013, 1, 1, 0, 0, 0)


@dataclass
class _Sample:
    """Every image of the sample in fer2013.csv order; each file format is one view of it."""

    usage: list[str]
    emotion: np.ndarray  # FER2013 label (index into FER2013_LABELS)
    drawn: list[str]  # the expression actually in the pixels ("nonface"/"blank" for the planted oddities)
    pixels: np.ndarray  # (n, 48, 48) uint8
    votes: np.ndarray  # (n, 10) FER+ votes in FERPLUS_VOTE_COLUMNS order
    named: np.ndarray  # False: FER+ left the row out (empty Image name)
    ids: np.ndarray  # unique 8-digit ids for the image-folder file names


def write_sample(dataset: str, out_dir: str | Path, params: SampleParams) -> list[Path]:
    """Write the raw files of `dataset` into `out_dir` (the same for every dataset with one seed)."""
    if dataset not in RAW_FILES:
        raise PipelineError(f"data.dataset={dataset!r} has no sample (have: {', '.join(RAW_FILES)})")
    sample = _generate(params)
    paths = []
    for name in RAW_FILES[dataset]:
        path = Path(out_dir) / name
        with atomic_path(path) as tmp:
            tmp.write_bytes(_WRITERS[name](sample))
        paths.append(path)
    return paths


def _generate(params: SampleParams) -> _Sample:
    """Draw the whole sample: per-class rows per split, shuffled, then the planted oddities."""
    rng = np.random.default_rng(params.seed)
    usage, emotion, drawn = [], [], []
    for split in SPLITS:
        rows = [(label, face) for label in FER2013_LABELS for face in _expressions(label, split, params, rng)]
        for i in rng.permutation(len(rows)):
            usage.append(split)
            emotion.append(FER2013_LABELS.index(rows[i][0]))
            drawn.append(rows[i][1])
    pixels = np.stack([_face(expression, rng) for expression in drawn])
    votes = np.stack([_votes(expression, rng) for expression in drawn])
    sample = _Sample(
        usage=usage,
        emotion=np.array(emotion),
        drawn=drawn,
        pixels=pixels,
        votes=votes,
        named=np.ones(len(drawn), bool),
        ids=rng.choice(90_000_000, len(drawn), replace=False) + 10_000_000,
    )
    _plant_oddities(sample, rng)
    return sample


def split_counts(params: SampleParams) -> dict[str, dict[str, int]]:
    """Rows per split and FER2013 label: FER2013's imbalance; each test split is ~1/8 of Training."""
    train = {c: max(2, round(params.images_per_class * w)) for c, w in CLASS_WEIGHTS.items()}
    test = {c: max(2, round(n / 8)) for c, n in train.items()}
    return {"Training": train, "PublicTest": test, "PrivateTest": test}


def _expressions(label: str, split: str, params: SampleParams, rng: np.random.Generator) -> list[str]:
    """The expressions drawn for the rows labelled `label`: mostly the label, a fixed share disputed."""
    n = split_counts(params)[split][label]
    n_noisy = round(n * LABEL_NOISE)
    neighbours = [c for c in CONFUSED[label] if c in FER2013_LABELS]
    expressions = [label] * (n - n_noisy) + [neighbours[i % len(neighbours)] for i in range(n_noisy)]
    if label == "neutral":
        n_contempt = max(1, round(n * CONTEMPT_SHARE))
        expressions[:n_contempt] = ["contempt"] * n_contempt
    return [expressions[i] for i in rng.permutation(n)]


def _plant_oddities(s: _Sample, rng: np.random.Generator) -> None:
    """Overwrite a few rows with FER2013's known defects, keeping the per-class counts unchanged.

    Training gets 4 exact copies of other Training images (1 under another label), 4 copies of test
    images (2 PublicTest, 2 PrivateTest; 1 of each under another label), 2 blanks and 3 non-faces;
    PublicTest gets 1 blank, PrivateTest 1 non-face. The blanks (black, white, grey) differ, so they
    are not duplicates as well. FER+ votes follow what the pixels show.
    """
    usage = np.array(s.usage)
    train, public, private = (list(rng.permutation(np.flatnonzero(usage == split))) for split in SPLITS)
    copies = [(train, True)] * 3 + [(train, False), (public, True), (public, False), (private, True), (private, False)]
    for sources, same_label in copies:
        target, source = _pair(train, sources, same_label, s.emotion)
        s.pixels[target] = s.pixels[source]
        s.drawn[target] = s.drawn[source]
        s.votes[target] = _votes(s.drawn[source], rng)
    for rows, value in zip((train, train, public), rng.permutation([0, 255, int(rng.integers(1, 255))]), strict=True):
        _make_blank(s, rows.pop(), int(value))
    for rows in (train, train, train, private):
        _make_nonface(s, rows.pop(), rng)


def _pair(targets: list[int], sources: list[int], same_label: bool, emotion: np.ndarray) -> tuple[int, int]:
    """Take the first target/source rows (from shuffled pools) whose labels agree, or differ."""
    target, source = next(
        (t, u) for t in targets for u in sources if u != t and (emotion[t] == emotion[u]) == same_label
    )
    targets.remove(target)
    sources.remove(source)
    return target, source


def _make_blank(s: _Sample, row: int, value: int) -> None:
    """A constant image that FER+ left out (empty Image name, all ten votes NF), as in the real file."""
    s.pixels[row] = value
    s.drawn[row] = "blank"
    s.votes[row] = 0
    s.votes[row, FERPLUS_VOTE_COLUMNS.index("NF")] = 10
    s.named[row] = False


def _make_nonface(s: _Sample, row: int, rng: np.random.Generator) -> None:
    """A smooth random texture; most FER+ annotators vote it NF, the rest unknown or a random emotion."""
    coarse = Image.fromarray(rng.integers(0, 256, (6, 6), dtype=np.uint8)).resize((SIZE, SIZE), Image.BICUBIC)
    texture = np.asarray(coarse, float) + rng.normal(0, 25, (SIZE, SIZE))
    s.pixels[row] = np.clip(texture, 0, 255).astype(np.uint8)
    s.drawn[row] = "nonface"
    nf = int(rng.integers(6, 11))
    others = np.full(len(FERPLUS_VOTE_COLUMNS) - 1, 0.05)
    others[FERPLUS_VOTE_COLUMNS.index("unknown")] = 0.6
    s.votes[row] = np.append(rng.multinomial(10 - nf, others / others.sum()), nf)  # NF is the last column


def _votes(expression: str, rng: np.random.Generator) -> np.ndarray:
    """Ten FER+ annotators: most pick the drawn expression, the rest confusable ones or `unknown`."""
    p = np.zeros(len(FERPLUS_VOTE_COLUMNS))
    agreement = rng.uniform(0.55, 1.0)
    p[FERPLUS_LABELS.index(expression)] = agreement
    for other in CONFUSED[expression]:
        p[FERPLUS_LABELS.index(other)] = (1 - agreement) * 0.9 / len(CONFUSED[expression])
    p[FERPLUS_LABELS.index("unknown")] = (1 - agreement) * 0.1
    return rng.multinomial(10, p / p.sum())


def _face(expression: str, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 grayscale face showing `expression`, with random pose, size, lighting and noise."""
    u = rng.uniform(1.25, 1.5) * _CANVAS / 96  # face unit: the head is 60u wide, cropped like FER2013's faces
    cx, cy = _CANVAS / 2 + rng.uniform(-4, 4), _CANVAS / 2 + 2 + rng.uniform(-4, 4)
    skin = int(rng.integers(160, 230))
    background = int(rng.integers(10, 90)) if rng.random() < 0.6 else int(rng.integers(200, 256))
    image = Image.new("L", (_CANVAS, _CANVAS), background)
    ink = max(0, skin - int(rng.integers(120, 170)))
    face = _Face(ImageDraw.Draw(image), cx, cy, u, ink, skin, intensity=rng.uniform(0.7, 1.0))
    face.draw.ellipse(face.box(0, 0, 30, 38), fill=skin)
    face.eyes(expression)
    face.brows(expression)
    face.nose(expression)
    face.mouth(expression, side=1 if rng.random() < 0.5 else -1, open_smile=rng.random() < 0.7)
    image = image.rotate(rng.uniform(-6, 6), Image.BILINEAR, center=(cx, cy), fillcolor=background)
    pixels = np.asarray(image.resize((SIZE, SIZE), Image.BOX), float)
    pixels = (pixels - pixels.mean()) * rng.uniform(0.7, 1.2) + pixels.mean() + rng.uniform(-25, 25)
    pixels += rng.normal(0, rng.uniform(2, 8), pixels.shape)
    return np.clip(pixels, 0, 255).round().astype(np.uint8)


@dataclass(frozen=True)
class _Face:
    """Draws the features of one face; coordinates are in face units from the head centre (y down)."""

    draw: ImageDraw.ImageDraw
    cx: float
    cy: float
    u: float
    ink: int
    skin: int
    intensity: float  # 0.7-1: how far the expression departs from relaxed

    def at(self, x: float, y: float) -> tuple[float, float]:
        return self.cx + x * self.u, self.cy + y * self.u

    def box(self, x: float, y: float, rx: float, ry: float) -> tuple[float, float, float, float]:
        return (*self.at(x - rx, y - ry), *self.at(x + rx, y + ry))

    def line(self, points: list[tuple[float, float]], width: float) -> None:
        self.draw.line(
            [self.at(x, y) for x, y in points], fill=self.ink, width=max(2, round(width * self.u)), joint="curve"
        )

    def eyes(self, expression: str) -> None:
        """Wide open with white showing (surprise, fear), narrowed (angry, disgust, happy), or relaxed."""
        wide = {"surprise": 3.5, "fear": 3.5, "angry": -1.7, "disgust": -1.7, "happy": -1.4}.get(expression, 0.0)
        height = 3 + wide * self.intensity
        for x in (-12, 12):
            if height > 4:
                self.draw.ellipse(
                    self.box(x, -8, 6, height),
                    fill=min(255, self.skin + 60),
                    outline=self.ink,
                    width=max(1, round(1.5 * self.u)),
                )
                self.draw.ellipse(self.box(x, -8, 2.5, 2.5), fill=self.ink)
            else:
                self.draw.ellipse(self.box(x, -8, 4.5, height), fill=self.ink)

    def brows(self, expression: str) -> None:
        """Raised (surprise, fear), slanted down inward (angry), inner ends raised (sad); contempt: one up."""
        inner, outer = {
            "surprise": (-8, -8),
            "fear": (-8, -4),
            "angry": (7, -4),
            "sad": (-7, 3),
            "disgust": (4, 0),
        }.get(expression, (0, 0))
        k = self.intensity
        for side in (-1, 1):
            lift = -4 if expression == "contempt" and side == 1 else 0
            self.line([(side * 5, -18 + inner * k + lift), (side * 19, -18 + outer * k + lift)], 3.4)

    def nose(self, expression: str) -> None:
        self.line([(0, -4), (-3, 7), (2, 8)], 1.8)
        if expression == "disgust":  # wrinkled bridge
            for y in (-6, -3):
                self.line([(-5, y), (5, y - 1)], 1.8)

    def mouth(self, expression: str, side: int, open_smile: bool) -> None:
        y, k, xs = 19, self.intensity, np.linspace(-1, 1, 9)
        if expression in ("happy", "sad"):  # corners up or down
            lift = (-9 if expression == "happy" else 8) * k
            curve = [(x * 15, y + lift * (x * x - 0.5)) for x in xs]
            self.line(curve, 3.6)
            if expression == "happy" and open_smile:
                lower = [(x * 15, y + lift * (x * x - 0.5) + 6 * k * (1 - x * x)) for x in xs[::-1]]
                self.draw.polygon([self.at(*p) for p in curve + lower], fill=self.ink)
        elif expression == "surprise":  # round, open
            self.draw.ellipse(self.box(0, y, 7, 9 * k), fill=self.ink)
        elif expression == "fear":  # wide, open, stretched flat
            points = [(-15, y + 2), (-9, y - 4 * k), (9, y - 4 * k), (15, y + 2), (9, y + 5 * k), (-9, y + 5 * k)]
            self.draw.polygon([self.at(*p) for p in points], fill=self.ink)
        elif expression == "angry":  # short, tight, pressed
            self.line([(-9, y + 1), (9, y + 1)], 5)
        elif expression == "disgust":  # upper lip raised on one side
            self.line([(-side * 13, y + 3), (-side * 2, y - 1), (side * 5, y - 7 * k), (side * 13, y - 1)], 3.6)
        elif expression == "contempt":  # one-sided smile
            self.line([(-side * 13, y), (side * 3, y), (side * 13, y - 8 * k)], 3.6)
        else:  # neutral
            self.line([(-13, y), (13, y)], 3.6)


def _fer2013_tar_gz(s: _Sample) -> bytes:
    """fer2013.tar.gz holding fer2013/fer2013.csv (emotion,pixels,Usage), like the Kaggle competition file."""
    digits = [str(v) for v in range(256)]
    lines = ["emotion,pixels,Usage"] + [
        f"{e},{' '.join([digits[v] for v in p.ravel().tolist()])},{usage}"
        for e, p, usage in zip(s.emotion, s.pixels, s.usage, strict=True)
    ]
    csv_bytes = ("\n".join(lines) + "\n").encode()
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="fer2013.tar", mode="wb", fileobj=buffer, mtime=0, compresslevel=1) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            info = tarfile.TarInfo("fer2013/fer2013.csv")
            info.size, info.mtime, info.mode, info.uname, info.gname = len(csv_bytes), _MTIME, 0o644, "root", "root"
            tar.addfile(info, io.BytesIO(csv_bytes))
    return buffer.getvalue()


def _fer2013new_csv(s: _Sample) -> bytes:
    """fer2013new.csv: FER+ votes, one row per fer2013.csv row; empty Image name where FER+ left it out."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["Usage", "Image name", *FERPLUS_VOTE_COLUMNS])
    for i, (usage, votes) in enumerate(zip(s.usage, s.votes, strict=True)):
        writer.writerow([usage, f"fer{i:07d}.png" if s.named[i] else "", *votes.tolist()])
    return text.getvalue().encode()


def _msambare_zip(s: _Sample) -> bytes:
    """msambare/fer2013: train/<class>/Training_<id>.jpg and test/<class>/{Public,Private}Test_<id>.jpg."""
    folder = {"Training": "train", "PublicTest": "test", "PrivateTest": "test"}
    return _image_zip(s, lambda i: f"{folder[s.usage[i]]}/{FER2013_LABELS[s.emotion[i]]}/{s.usage[i]}_{s.ids[i]}.jpg")


def _apollo_zip(s: _Sample) -> bytes:
    """apollo2506/facial-recognition-dataset: Training|Testing/<Class>/*.jpg, 6 classes (no disgust)."""
    folder = {"Training": "Training", "PublicTest": "Testing", "PrivateTest": "Testing"}

    def name(i: int) -> str | None:
        label = FER2013_LABELS[s.emotion[i]]
        return None if label == "disgust" else f"{folder[s.usage[i]]}/{label.capitalize()}/{s.usage[i]}_{s.ids[i]}.jpg"

    return _image_zip(s, name)


def _image_zip(s: _Sample, member_name: Callable[[int], str | None]) -> bytes:
    """A deterministic zip of 48x48 grayscale JPEGs (stored, like the Kaggle zips), with folder entries."""
    files = sorted((name, i) for i in range(len(s.usage)) if (name := member_name(i)) is not None)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        folders: set[str] = set()
        for name, i in files:
            for depth in (1, 2):
                folder = "/".join(name.split("/")[:depth]) + "/"
                if folder not in folders:
                    folders.add(folder)
                    archive.writestr(_zip_info(folder, 0o40755), b"")
            jpeg = io.BytesIO()
            Image.fromarray(s.pixels[i]).save(jpeg, "JPEG", quality=95)
            archive.writestr(_zip_info(name, 0o100644), jpeg.getvalue())
    return buffer.getvalue()


def _zip_info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, _ZIP_TIME)
    info.create_system, info.external_attr = 3, mode << 16
    return info


_WRITERS: dict[str, Callable[[_Sample], bytes]] = {
    FER2013_ARCHIVE: _fer2013_tar_gz,
    FERPLUS_VOTES: _fer2013new_csv,
    MSAMBARE_ARCHIVE: _msambare_zip,
    APOLLO_ARCHIVE: _apollo_zip,
}
