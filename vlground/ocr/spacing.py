"""Putting back the spaces PP-OCR's English recognition drops ("TotalDue:$42.17").

The recognizer tells where each character sits along its text line (its per-character boxes); the
pixels tell how much empty paper lies between two neighbours. A word space is a run of empty columns
wider than about a third of the line's height, or, on a line set tight or blurred, about twice its
typical letter gap. The numbers were measured on rendered text in five fonts (proportional,
monospace, oblique, condensed bold, serif) at 18-44 px with noise, blur and JPEG: letter gaps stay
under 0.31 of the box height and word spaces over 0.33, except beside punctuation and between
digits (a narrow "1" on a fixed-width digit cell), which get their own rules."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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
# Inside a piece whose recognizer wrote spaces (PP-OCRv6 does), a gap adds a space only when it
# is this wide (fraction of the box height): no letter gap of a monospace font comes near it.
SPACED_PIECE_GAP = 0.6
# Where two pieces overlap, characters closer than this (fraction of height) are one character.
DUPLICATE_DISTANCE = 0.35
# English puts no space before these, or after those.
_NO_SPACE_BEFORE = set(".,:;!?)]}%")
_NO_SPACE_AFTER = set("([{$#")
_APOSTROPHES = set("'\u2019")


def _rectified_ink(gray: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The text line warped upright: its ink (a boolean mask, specks removed) and the warp matrix."""
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
    return keep[labels], warp


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


@dataclass(frozen=True)
class WordSpan:
    """One word of a joined line: its text, its corners (image pixels, clockwise from the top-left,
    tight around its ink) and the confidence of the pieces its characters came from."""

    text: str
    quad: np.ndarray
    score: float


@dataclass(frozen=True)
class PieceChars:
    """What `join_pieces` needs of one piece: its text, one (x, y) image point per character at the
    character's centre, each character's width along the line (None: from the spacing of the
    centres) and the recognizer's confidence."""

    text: str
    centers: np.ndarray
    widths: np.ndarray | None = None
    score: float = 1.0


def join_pieces(gray: np.ndarray, quad: Sequence[Sequence[float]], height: float,
                pieces: Sequence[PieceChars]) -> tuple[str, list[WordSpan]]:
    """The text of one line read as several pieces, joined with spaces where the ink shows word gaps,
    and its words (the text is the words joined by single spaces).

    `gray` is the whole image (uint8); `quad` the line's corners clockwise from its top-left; `height`
    the text height in pixels the gaps are measured against; `pieces` left to right. Spaces the
    recognizer wrote are kept. Where two pieces overlap, a character the first piece read under the
    second piece's first character is a duplicate (or a fragment of it): of the two readings the one
    of the less confident piece is dropped (the first's when they tie: the later reading stands)."""
    ink, warp = _rectified_ink(gray, np.asarray(quad, dtype=np.float32))
    empty = ink.sum(axis=0) <= max(1.0, EMPTY_COLUMN_INK * height)
    chars = _line_chars(pieces, warp, height)
    gaps = [_gap(empty, chars[i - 1].x, chars[i].x) / height for i in range(1, len(chars))]
    letter_gaps = [g for i, g in enumerate(gaps, 1) if chars[i].c != " " and chars[i - 1].c != " "]
    # Tight or blurred type has small gaps everywhere: a word space is then well over the typical gap.
    threshold = SPACE_GAP
    if len(letter_gaps) >= MIN_GAPS_TO_ADAPT:
        threshold = min(SPACE_GAP, max(MIN_SPACE_GAP, TYPICAL_GAP_FACTOR * float(np.median(letter_gaps))))
    words: list[list[_Char]] = [[]]
    for i, char in enumerate(chars):
        before = chars[i - 1].c if i else " "
        earlier = chars[i - 2].c if i >= 2 else " "
        # Inside a piece whose recognizer writes spaces itself, only a gap no letter leaves adds one:
        # a monospace "r" or "i" sits in a cell as wide as an "m", with as much paper beside it as a space.
        within = i and char.spaced and chars[i - 1].piece == char.piece
        if char.c == " " or (before != " " and _wants_space(earlier, before, char.c, gaps[i - 1],
                                                            max(threshold, SPACED_PIECE_GAP) if within else threshold)):
            words.append([])
        if char.c != " ":
            words[-1].append(char)
    words = [word for word in words if word]
    # Each word owns the columns up to halfway to its neighbours; its box is the ink found there.
    bounds = [0.0] + [(a[-1].x + b[0].x) / 2 for a, b in zip(words, words[1:])] + [float(ink.shape[1])]
    spans = [_word_span(word, warp, ink, bounds[i], bounds[i + 1]) for i, word in enumerate(words)]
    return " ".join(span.text for span in spans), spans


@dataclass(frozen=True)
class _Char:
    c: str
    x: float  # centre along the upright line
    half: float  # half its width
    score: float
    piece: int = 0  # which piece read it
    spaced: bool = False  # whether that piece's recognizer wrote spaces itself


def _line_chars(pieces: Sequence[PieceChars], warp: np.ndarray, height: float) -> list[_Char]:
    """The characters of the pieces along the upright line, recognizer spaces as single " "."""
    chars: list[_Char] = []
    for number, piece in enumerate(pieces):
        spaced = " " in piece.text.strip()
        xs = cv2.perspectiveTransform(np.asarray(piece.centers, dtype=np.float32)[None], warp)[0, :, 0]
        halves = _half_widths(xs, piece.widths)
        visible = [i for i, c in enumerate(piece.text) if not c.isspace()]
        dropped = None  # the new piece's first character, when the earlier reading of it is surer
        for _ in range(2):  # at most a duplicate and a fragment
            if chars and visible and chars[-1].c != " " and chars[-1].x >= xs[visible[0]] - DUPLICATE_DISTANCE * height:
                if chars[-1].score > piece.score:
                    dropped = visible[0]
                    break
                chars.pop()
        for i, (c, x, half) in enumerate(zip(piece.text, xs, halves)):
            if i == dropped:
                continue
            if not c.isspace():
                chars.append(_Char(c, float(x), float(half), piece.score, number, spaced))
            elif chars and chars[-1].c != " ":
                chars.append(_Char(" ", float(x), 0.0, piece.score, number, spaced))
    return chars


def _half_widths(xs: np.ndarray, widths: np.ndarray | None) -> np.ndarray:
    if widths is not None and len(widths) == len(xs):
        return np.asarray(widths, dtype=np.float64) / 2
    step = float(np.median(np.diff(xs))) if len(xs) > 1 else 0.0
    return np.full(len(xs), abs(step) / 2)


def _word_span(word: list[_Char], warp: np.ndarray, ink: np.ndarray, low: float, high: float) -> WordSpan:
    """The word's box: tight around its ink between the columns `low` and `high` of the upright
    line, or, with no ink there, its characters' extent over the line's height."""
    left, right = min(c.x - c.half for c in word), max(c.x + c.half for c in word)
    top, bottom = 0.0, float(ink.shape[0])
    lo, hi = max(0, int(math.floor(low))), min(ink.shape[1], int(math.ceil(high)))
    columns = np.flatnonzero(ink[:, lo:hi].any(axis=0)) if hi > lo else np.zeros(0, dtype=int)
    if len(columns):
        left, right = float(lo + columns[0]), float(lo + columns[-1] + 1)
        rows = np.flatnonzero(ink[:, int(left) : int(right)].any(axis=1))
        top, bottom = float(rows[0]), float(rows[-1] + 1)
    upright = np.array([[[left, top], [right, top], [right, bottom], [left, bottom]]], dtype=np.float32)
    quad = cv2.perspectiveTransform(upright, np.linalg.inv(warp))[0].astype(np.float64)
    return WordSpan("".join(c.c for c in word), quad, float(np.mean([c.score for c in word])))


def _gap(empty: np.ndarray, left: float, right: float) -> int:
    """Widest run of empty columns between two character centres."""
    lo, hi = int(np.clip(round(left), 0, len(empty) - 1)), int(np.clip(round(right), 0, len(empty) - 1))
    return _widest_empty_run(empty[lo : hi + 1]) if hi > lo else 0
