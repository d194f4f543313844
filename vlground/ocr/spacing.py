"""Putting back the spaces PP-OCR's English recognition drops ("TotalDue:$42.17").

The recognizer tells where each character sits along its text line (its per-character boxes); the
pixels tell how much empty paper lies between two neighbours. A word space is a run of empty columns
wider than about a third of the line's height, or, on a line set tight or blurred, about twice its
typical letter gap. The numbers were measured on rendered text in five fonts (proportional,
monospace, oblique, condensed bold, serif) at 18-44 px with noise, blur and JPEG: letter gaps stay
under 0.31 of the box height and word spaces over 0.33, except beside punctuation and between
digits (a narrow "1" on a fixed-width digit cell), which get their own rules."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Empty-column run, as a fraction of the text box height, above which a gap is a word space.
SPACE_GAP = 0.32
# Digits are set on a fixed width in most fonts, so a narrow "1" leaves a wide gap beside it.
DIGIT_SPACE_GAP = 0.45
# A column with at most this fraction of the height in ink counts as empty.
EMPTY_COLUMN_INK = 0.04
# Ink components smaller than this fraction of height squared are noise, not strokes.
SPECK_AREA = 0.01
# Lines with at least MIN_GAPS_TO_ADAPT letter gaps lower the threshold to TYPICAL_GAP_FACTOR times
# their median gap, not below MIN_SPACE_GAP.
MIN_GAPS_TO_ADAPT = 6
TYPICAL_GAP_FACTOR = 2.0
MIN_SPACE_GAP = 0.2
# Where two pieces overlap, characters closer than this (fraction of height) are one character.
DUPLICATE_DISTANCE = 0.35
# English puts no space before these, or after those.
_NO_SPACE_BEFORE = set(".,:;!?)]}%")
_NO_SPACE_AFTER = set("([{$#")
_APOSTROPHES = set("'\u2019")


def _rectified_ink(gray: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The text line warped upright: ink pixels per column, and the warp matrix."""
    top_left, top_right, bottom_right, bottom_left = quad
    width = int(round(max(np.linalg.norm(top_right - top_left), np.linalg.norm(bottom_right - bottom_left))))
    height = int(round(max(np.linalg.norm(bottom_left - top_left), np.linalg.norm(bottom_right - top_right))))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    warp = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    crop = cv2.warpPerspective(gray, warp, (width, height), borderMode=cv2.BORDER_REPLICATE)
    _, binary = cv2.threshold(crop, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if binary.mean() > 0.5:  # ink is the minority class, dark on light or light on dark
        binary = 1 - binary
    # Specks of noise are small components; thin strokes belong to large ones and stay.
    _, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= max(3.0, SPECK_AREA * height * height)
    keep[0] = False
    return keep[labels].sum(axis=0), warp


def _widest_empty_run(empty: np.ndarray) -> int:
    best = run = 0
    for is_empty in empty:
        run = run + 1 if is_empty else 0
        best = max(best, run)
    return best


def _wants_space(earlier: str, before: str, after: str, gap: float, threshold: float) -> bool:
    """Whether a space belongs between `before` and `after` (`earlier` precedes `before`)."""
    if after in _NO_SPACE_BEFORE or before in _NO_SPACE_AFTER:
        return False
    if before in ".," and earlier.isdigit() and after.isdigit():  # 4.99, 1,500
        return False
    if (before in _APOSTROPHES and earlier.isalpha()) or (after in _APOSTROPHES and before.isalpha()):
        return False  # children's, don't
    return gap > (max(DIGIT_SPACE_GAP, threshold) if before.isdigit() and after.isdigit() else threshold)


def join_pieces(gray: np.ndarray, quad: Sequence[Sequence[float]], height: float,
                pieces: Sequence[tuple[str, np.ndarray]]) -> str:
    """The text of one line read as several pieces, joined with spaces where the ink shows word gaps.

    `gray` is the whole image (uint8); `quad` the line's corners clockwise from its top-left; `height`
    the text height in pixels the gaps are measured against; `pieces` left to right, each its text
    and one (x, y) image point per character (spaces included) at the character's centre. Spaces the
    recognizer wrote are kept. Where two pieces overlap, a character the first piece read under the
    second piece's first character is a duplicate (or a fragment of it) and is dropped."""
    ink, warp = _rectified_ink(gray, np.asarray(quad, dtype=np.float32))
    empty = ink <= max(1.0, EMPTY_COLUMN_INK * height)
    chars: list[tuple[str, float]] = []  # (character, x along the line)
    for text, centers in pieces:
        xs = cv2.perspectiveTransform(np.asarray(centers, dtype=np.float32)[None], warp)[0, :, 0]
        visible = [(c, float(x)) for c, x in zip(text, xs) if not c.isspace()]
        for _ in range(2):  # at most a duplicate and a fragment
            if chars and visible and chars[-1][0] != " " and chars[-1][1] >= visible[0][1] - DUPLICATE_DISTANCE * height:
                chars.pop()
        for c, x in zip(text, xs):
            if c.isspace():
                if chars and chars[-1][0] != " ":
                    chars.append((" ", float(x)))
            else:
                chars.append((c, float(x)))
    gaps = [_gap(empty, chars[i - 1][1], chars[i][1]) / height for i in range(1, len(chars))]
    letter_gaps = [g for i, g in enumerate(gaps, 1) if chars[i][0] != " " and chars[i - 1][0] != " "]
    # Tight or blurred type has small gaps everywhere: a word space is then well over the typical gap.
    threshold = SPACE_GAP
    if len(letter_gaps) >= MIN_GAPS_TO_ADAPT:
        threshold = min(SPACE_GAP, max(MIN_SPACE_GAP, TYPICAL_GAP_FACTOR * float(np.median(letter_gaps))))
    out = [chars[0][0]] if chars else []
    for i in range(1, len(chars)):
        before, after = chars[i - 1][0], chars[i][0]
        earlier = chars[i - 2][0] if i >= 2 else " "
        if before != " " and after != " " and _wants_space(earlier, before, after, gaps[i - 1], threshold):
            out.append(" ")
        out.append(after)
    return "".join(out).strip()


def _gap(empty: np.ndarray, left: float, right: float) -> int:
    """Widest run of empty columns between two character centres."""
    lo, hi = int(np.clip(round(left), 0, len(empty) - 1)), int(np.clip(round(right), 0, len(empty) - 1))
    return _widest_empty_run(empty[lo : hi + 1]) if hi > lo else 0
