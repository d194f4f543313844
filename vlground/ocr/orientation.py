"""Which way up a page is: 0, 90, 180 or 270 degrees, decided per page before its lines are read.

The text detector finds lines whichever way they run, so the shape of its boxes tells a page set
sideways (most of the text in boxes taller than wide) from one upright or upside down (wider than
tall). Which of the two remains is decided by the recognizer: a sample of the longest lines is read
both ways, and text read the right way up comes with a far higher confidence than the same text
upside down, whose "letters" are shapes the recognizer was never trained on.

A page whose vote is close, or whose best reading is still unsure, is read the way the vote says
but gets a warning in its record, so a wrong turn never passes silently. Lines that run across the
page's own direction (a table set sideways on an upright page) are read on their own, each in the
direction of the two that reads it more confidently; they do not turn the page.

Rotations are in degrees clockwise: the angle the image is turned to read it upright (the "Rotate"
of Tesseract's orientation detection; OCRmyPDF's engine interface counts the same turn anticlockwise,
360 minus this, which `vlground.ocrmypdf` converts)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

ROTATIONS = (0, 90, 180, 270)
# A box votes on the page's direction when its long side is at least this many times its short
# side: a word or a line, not one glyph (whose box is about square, or tall for "l" and "1").
ELONGATED = 2.0
# The lines read both ways for the vote: the longest ones (the most characters, the surest vote).
SAMPLE_LINES = 6
# A page's vote is trusted when the winner's confidence is at least CONFIDENT and beats the other
# direction by MARGIN. Measured on 72 rendered pages (signs, labels, receipts, columns; seven
# fonts, 18-44 px, noise, blur, JPEG): read the right way 0.96-1.00, the wrong way 0.60-0.83.
CONFIDENT = 0.8
MARGIN = 0.1
# The first candidate (0, or 90 for a sideways page) read at least this confidently is taken
# without reading the other way: it halves the recognizer's work on the usual, upright, page.
SURE = 0.9


@dataclass(frozen=True)
class Orientation:
    """The turn that makes a page upright, the confidences the vote saw per rotation, and a warning
    (None when the vote was clear)."""

    rotation: int = 0
    scores: dict[int, float] | None = None
    warning: str | None = None


def box_sides(quad: np.ndarray) -> tuple[float, float]:
    """(width, height) of a detector box: top edge and left edge of its 4 corners."""
    return float(np.linalg.norm(quad[1] - quad[0])), float(np.linalg.norm(quad[3] - quad[0]))


def page_direction(quads: Sequence[np.ndarray]) -> tuple[tuple[int, int], list[int]]:
    """The two rotations the box shapes leave, (0, 180) or (90, 270), and the indices of the
    boxes that point that way, longest first (empty when no box is elongated: then all four
    rotations stay candidates, see `decide`)."""
    along, across = [], []
    for index, quad in enumerate(quads):
        width, height = box_sides(quad)
        if max(width, height) >= ELONGATED * max(min(width, height), 1.0):
            (along if width > height else across).append((max(width, height), index))
    weight = lambda boxes: sum(length for length, _ in boxes)  # noqa: E731 - one local sum
    if weight(across) > weight(along):
        return (90, 270), [i for _, i in sorted(across, reverse=True)]
    return (0, 180), [i for _, i in sorted(along, reverse=True)]


def decide(quads: Sequence[np.ndarray], confidence: Callable[[list[int], int], float]) -> Orientation:
    """The page's rotation from its detector boxes (image pixels, 4 corners each).

    `confidence(indices, rotation)` reads the boxes `indices` with the page turned `rotation`
    degrees clockwise and gives the recognizer's mean confidence (characters weighted)."""
    if not len(quads):
        return Orientation()
    candidates, voters = page_direction(quads)
    if not voters:  # only short boxes (single glyphs): no direction to go by, all four are tried
        candidates, voters = ROTATIONS, sorted(range(len(quads)), key=lambda i: -max(box_sides(quads[i])))
    sample = voters[:SAMPLE_LINES]
    scores = {candidates[0]: confidence(sample, candidates[0])}
    if scores[candidates[0]] >= SURE:
        return Orientation(candidates[0], scores)
    scores |= {rotation: confidence(sample, rotation) for rotation in candidates[1:]}
    ranked = sorted(scores, key=lambda r: -scores[r])
    best, runner_up = ranked[0], ranked[1]
    warning = None
    if scores[best] < CONFIDENT or scores[best] - scores[runner_up] < MARGIN:
        warning = (f"orientation uncertain: read turned {best} degrees (recognizer confidence "
                   + ", ".join(f"{scores[r]:.2f} at {r}" for r in ranked) + "); the text may be garbled")
    return Orientation(best, scores, warning)


def turn_points(points: np.ndarray, rotation: int, size: tuple[int, int]) -> np.ndarray:
    """Points (..., 2) of an image `size` (width, height) turned `rotation` degrees clockwise:
    their place in the turned image (pixel edges, so a point on the border stays on it)."""
    width, height = size
    x, y = points[..., 0], points[..., 1]
    if rotation == 0:
        turned = (x, y)
    elif rotation == 90:
        turned = (height - y, x)
    elif rotation == 180:
        turned = (width - x, height - y)
    elif rotation == 270:
        turned = (y, width - x)
    else:
        raise ValueError(f"rotation must be one of {ROTATIONS}, not {rotation}")
    return np.stack(turned, axis=-1).astype(np.float64)


def turned_size(size: tuple[int, int], rotation: int) -> tuple[int, int]:
    return (size[1], size[0]) if rotation in (90, 270) else size


def turn_image(pixels: np.ndarray, rotation: int) -> np.ndarray:
    """An image array (H, W, ...) turned `rotation` degrees clockwise (a lossless copy)."""
    return np.ascontiguousarray(np.rot90(pixels, k=-(rotation // 90)))
