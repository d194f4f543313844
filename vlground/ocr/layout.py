"""From detected text pieces to lines in reading order.

A detector returns pieces: one line of text often comes back as several boxes, in no useful order,
and a page set in two columns interleaves its columns when read row by row. Here pieces are deskewed
by the page's dominant angle, split recursively at the widest empty band (XY-cut: across the page
between blocks, down the page between columns of prose), and the pieces of each row are joined
into one line, left to right.

A vertical cut is taken only where both sides hold prose, so that a receipt's right-aligned prices
stay on the same line as their items and a table is read row by row, its cells left to right. What
tells prose from a table is not the alignment of rows across the gutter (two columns set with the
same leading share their baselines row for row just as a table does) but what a row is made of: a
row of prose is one long run of text, words a space apart, while a row of a table is short cells
with gutters between them. A side is prose when its rows' longest runs are wide, measured in line
heights; a receipt's item and price, or a table's cells, are each far too short."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from vlground.core.records import text_line
from vlground.core.results import Detection
from vlground.ocr.spacing import PieceChars, join_pieces

# Both sides of a column gutter hold rows whose longest run of text is at least this many line
# heights wide (median over the rows): a column of prose. Table cells and receipt items are shorter.
PROSE_ROW_WIDTH = 8.0
# Pieces of a row less than this many line heights apart are one run of text: a word space (about
# a third of a line height, wider in justified text) when a detector splits a line, where a gutter
# between the columns of a table is wider.
RUN_GAP = 1.5
# How a page is cut into lines (`vlground ocr --layout`, as Tesseract's page-segmentation modes):
# auto (columns found and read one after another), block (one block: rows across the whole page),
# line (the image is one line of text), sparse (scattered labels: each run of text its own line,
# top to bottom, no reading order forced on them).
LAYOUTS = ("auto", "block", "line", "sparse")
# Rows whose vertical extents overlap by this fraction of the smaller height are one row.
ROW_OVERLAP = 0.5
# Below this tilt (degrees) lines get an axis-aligned box, above it a quad, unless the tilt moves
# the widest piece by less than LEVEL_DRIFT of its height end to end: detectors' quads of level
# text are off by a pixel or two, which is a degree or more on a short word.
AXIS_ALIGNED_DEGREES = 1.0
LEVEL_DRIFT = 0.1


@dataclass(frozen=True)
class Piece:
    """One detected text piece: `quad` (4 corners clockwise from the text's top-left, image pixels),
    its text, the recognizer's confidence, `centers` one (x, y) image point per character of `text`,
    `widths` each character's width along the line (None: estimated from the centres), and its box
    (x1, y1, x2, y2) in the deskewed frame (set by the layout)."""

    quad: np.ndarray
    text: str
    score: float
    centers: np.ndarray
    widths: np.ndarray | None = None
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


def _angle(quad: np.ndarray) -> float:
    """Tilt of the text's baseline direction, radians, positive clockwise (image y points down)."""
    dx, dy = quad[1] - quad[0]
    return math.atan2(dy, dx)


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(-angle), math.sin(-angle)
    return np.array([[c, -s], [s, c]])


def _directions(pieces: list[Piece]) -> list[list[Piece]]:
    """Pieces grouped by the way their text runs (right, down, left, up: the nearest quarter turn),
    the group with the most text first: a table set sideways beside upright prose is laid out on
    its own instead of cutting across the prose's rows."""
    groups: dict[int, list[Piece]] = {}
    for piece in pieces:
        groups.setdefault(round(_angle(piece.quad) / (math.pi / 2)) % 4, []).append(piece)
    weight = lambda group: sum(np.linalg.norm(p.quad[1] - p.quad[0]) for p in group)  # noqa: E731
    return sorted(groups.values(), key=lambda group: -weight(group))


def _deskew(pieces: list[Piece]) -> tuple[list[Piece], float]:
    """Pieces (running the same way) with boxes in a frame rotated so their text runs left to
    right, and that rotation's angle."""
    centre = round(_angle(pieces[0].quad) / (math.pi / 2)) * (math.pi / 2)
    # Angles about the group's quarter turn, so that text running left (about +-180 degrees) has no seam.
    angles = np.array([centre + math.remainder(_angle(p.quad) - centre, 2 * math.pi) for p in pieces])
    weights = np.array([max(np.linalg.norm(p.quad[1] - p.quad[0]), 1.0) for p in pieces])
    order = np.argsort(angles)
    cumulative = np.cumsum(weights[order])
    angle = float(angles[order][np.searchsorted(cumulative, cumulative[-1] / 2)])  # weighted median
    rotate = _rotation(angle)
    out = []
    for piece in pieces:
        points = piece.quad @ rotate.T
        out.append(replace(piece, box=(points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max())))
    return out, angle


def _rows(pieces: list[Piece]) -> list[list[Piece]]:
    """Pieces grouped into rows by vertical overlap, rows top to bottom, pieces left to right."""
    rows: list[list[Piece]] = []
    for piece in sorted(pieces, key=lambda p: (p.box[1] + p.box[3]) / 2):
        for row in rows:
            top = min(p.box[1] for p in row)
            bottom = max(p.box[3] for p in row)
            overlap = min(bottom, piece.box[3]) - max(top, piece.box[1])
            if overlap >= ROW_OVERLAP * min(piece.height, bottom - top):
                row.append(piece)
                break
        else:
            rows.append([piece])
    rows.sort(key=lambda row: min(p.box[1] for p in row))
    return [sorted(row, key=lambda p: p.box[0]) for row in rows]


def _gaps(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Empty stretches (start, end) between the union of 1-D intervals."""
    gaps = []
    intervals = sorted(intervals)
    reach = intervals[0][1]
    for start, end in intervals[1:]:
        if start > reach:
            gaps.append((reach, start))
        reach = max(reach, end)
    return gaps


def _longest_run(row: list[Piece], line_height: float) -> float:
    """Width of the widest stretch of the row (pieces left to right) with no gap over RUN_GAP."""
    longest, start, reach = 0.0, row[0].box[0], row[0].box[2]
    for piece in row[1:]:
        if piece.box[0] - reach > RUN_GAP * line_height:
            longest, start = max(longest, reach - start), piece.box[0]
        reach = max(reach, piece.box[2])
    return max(longest, reach - start)


def _is_prose(pieces: list[Piece], line_height: float) -> bool:
    """Rows (at least two) of long runs of text: a column of prose, not a table's cells."""
    rows = _rows(pieces)
    widths = [_longest_run(row, line_height) for row in rows]
    return len(rows) >= 2 and float(np.median(widths)) >= PROSE_ROW_WIDTH * line_height


def _reading_order(pieces: list[Piece]) -> list[list[Piece]]:
    """Rows in reading order, by recursive cuts at the widest empty band."""
    if len(pieces) < 2:
        return [pieces] if pieces else []
    line_height = float(np.median([p.height for p in pieces]))
    cuts = []  # (width of the empty band, axis, position)
    for start, end in _gaps([(p.box[1], p.box[3]) for p in pieces]):
        cuts.append((end - start, 1, (start + end) / 2))
    for start, end in _gaps([(p.box[0], p.box[2]) for p in pieces]):
        cuts.append((end - start, 0, (start + end) / 2))
    for _, axis, position in sorted(cuts, key=lambda cut: -cut[0]):
        first = [p for p in pieces if (p.box[axis] + p.box[axis + 2]) / 2 < position]
        second = [p for p in pieces if (p.box[axis] + p.box[axis + 2]) / 2 >= position]
        if axis == 0 and not (_is_prose(first, line_height) and _is_prose(second, line_height)):
            continue
        return _reading_order(first) + _reading_order(second)
    return _rows(pieces)


def _row_quad(row: list[Piece], angle: float) -> np.ndarray:
    """The row's deskewed box as 4 corners in image pixels, clockwise from the top-left."""
    x1, y1 = min(p.box[0] for p in row), min(p.box[1] for p in row)
    x2, y2 = max(p.box[2] for p in row), max(p.box[3] for p in row)
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]) @ _rotation(angle)


def _geometry(quad: np.ndarray, level: bool) -> dict:
    """An axis-aligned box (x1, y1, x2, y2) for level text, the tilted quad otherwise."""
    if level:
        return {"box": (float(quad[:, 0].min()), float(quad[:, 1].min()), float(quad[:, 0].max()), float(quad[:, 1].max()))}
    return {"quad": tuple((float(x), float(y)) for x, y in quad)}


def assemble_lines(pieces: list[Piece], gray: np.ndarray, layout: str = "auto") -> list[Detection]:
    """One line per row of text (`text_line`: a Detection, its words as `parts`), in reading order,
    its pieces joined with the word spaces the pixels of `gray` (the whole image, uint8) show. `score`
    is the pieces' confidence weighted by their number of characters; a word's is that of its characters."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; layouts: {', '.join(LAYOUTS)}")
    pieces = [p for p in pieces if p.text.strip()]
    return [line for group in _directions(pieces) for line in _group_lines(group, gray, layout)]


def _runs(row: list[Piece], line_height: float) -> list[list[Piece]]:
    """A row (left to right) cut where its pieces stand more than RUN_GAP line heights apart."""
    runs = [[row[0]]]
    for piece in row[1:]:
        if piece.box[0] - max(p.box[2] for p in runs[-1]) > RUN_GAP * line_height:
            runs.append([])
        runs[-1].append(piece)
    return runs


def _cut(pieces: list[Piece], layout: str) -> list[list[Piece]]:
    """The rows of deskewed pieces that become lines, in order, under `layout` (see LAYOUTS)."""
    if layout == "line":
        return [sorted(pieces, key=lambda p: p.box[0])]
    if layout == "block":
        return _rows(pieces)
    if layout == "sparse":
        line_height = float(np.median([p.height for p in pieces]))
        return [run for row in _rows(pieces) for run in _runs(row, line_height)]
    return _reading_order(pieces)


def _group_lines(pieces: list[Piece], gray: np.ndarray, layout: str = "auto") -> list[Detection]:
    """The lines of pieces that run the same way (see assemble_lines)."""
    deskewed, angle = _deskew(pieces)
    widest = max(deskewed, key=lambda p: p.width)
    level = (abs(math.degrees(angle)) < AXIS_ALIGNED_DEGREES
             or abs(math.tan(angle)) * widest.width < LEVEL_DRIFT * widest.height)
    lines = []
    for row in _cut(deskewed, layout):
        quad = _row_quad(row, angle)
        height = float(np.median([p.height for p in row]))
        text, spans = join_pieces(gray, quad, height, [PieceChars(p.text, p.centers, p.widths, p.score) for p in row])
        score = float(np.average([p.score for p in row], weights=[max(len(p.text), 1) for p in row]))
        words = tuple(text_line(w.text, score=w.score, **_geometry(w.quad, level)) for w in spans)
        outline = np.concatenate([p.quad for p in row]) if level else quad
        lines.append(text_line(text, score=score, words=words, **_geometry(outline, level)))
    return lines
