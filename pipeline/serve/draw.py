"""Boxes and labels drawn on a copy of a picture, for the CLI's --annotate and annotated videos.

Labels are laid out first (label_layout, pure and tested): each goes above its box, else below, else inside,
moved along until it overlaps no other label, and always kept inside the canvas.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.serve.detect import Box

GREEN, BLACK, AMBER = (0, 220, 0), (0, 0, 0), (255, 191, 0)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_layout(boxes: list[Box], sizes: list[tuple[int, int]], canvas: tuple[int, int]) -> list[Box]:
    """Rectangles (x, y, w, h) for labels of `sizes` (w, h), one per box, inside `canvas` (w, h), none overlapping
    another (while the canvas has room: past that, the last ones may)."""
    width, height = canvas
    placed: list[Box] = []
    for (x, y, w, h), (lw, lh) in zip(boxes, sizes, strict=True):
        lw, lh = min(lw, width), min(lh, height)
        left = min(max(x, 0), width - lw)
        tops = [y - lh, y + h, y, *range(0, height - lh + 1, max(lh // 2, 1))]
        spots = [(left, min(max(t, 0), height - lh), lw, lh) for t in tops]
        placed.append(next((s for s in spots if not any(_hits(s, p) for p in placed)), spots[0]))
    return placed


def _hits(a: Box, b: Box) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def draw_labels(rgb: np.ndarray, boxes: list[Box], labels: list[str]) -> np.ndarray:
    """Copy of `rgb` with each box outlined and its label on a filled strip that stays inside the picture."""
    out = rgb.copy()
    thick, font_scale = _style(rgb)
    sizes = [_text_size(label, font_scale, thick) for label in labels]
    for (x, y, w, h) in boxes:
        cv2.rectangle(out, (x, y), (x + w, y + h), GREEN, thick)
    for (lx, ly, lw, lh), label in zip(label_layout(boxes, sizes, (rgb.shape[1], rgb.shape[0])), labels, strict=True):
        _strip(out, (lx, ly, lw, lh), label, GREEN, font_scale, thick)
    return out


def draw_notice(rgb: np.ndarray, text: str) -> np.ndarray:
    """Copy of `rgb` with `text` on an amber strip in the top-left corner (e.g. "no face found")."""
    out = rgb.copy()
    thick, font_scale = _style(rgb)
    lw, lh = _text_size(text, font_scale, thick)
    _strip(out, (0, 0, min(lw, rgb.shape[1]), min(lh, rgb.shape[0])), text, AMBER, font_scale, thick)
    return out


def _style(rgb: np.ndarray) -> tuple[int, float]:
    return max(1, round(max(rgb.shape[:2]) / 400)), max(0.4, max(rgb.shape[:2]) / 1000)


def _text_size(text: str, font_scale: float, thick: int) -> tuple[int, int]:
    (tw, th), base = cv2.getTextSize(text, FONT, font_scale, thick)
    return tw + 2 * thick, th + base + 2 * thick


def _strip(out: np.ndarray, rect: Box, text: str, colour: tuple[int, int, int], font_scale: float, thick: int) -> None:
    x, y, w, h = rect
    cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, cv2.FILLED)
    (_, th), _ = cv2.getTextSize(text, FONT, font_scale, thick)
    cv2.putText(out, text, (x + thick, y + th + thick), FONT, font_scale, BLACK, thick, cv2.LINE_AA)
