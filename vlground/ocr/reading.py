"""Driving PP-OCR's two networks: text detection at a resolution chosen per image, recognition
batched, each character placed by the recognizer's own output columns.

rapidocr's pipeline scales every image so that its short side is 736 px before detection: a 300 x
160 px sign is blown up 21 times in area, and the detector's time grows with the area. Here an image
is detected at its own size, shrunk only when its long side passes DETECT_SIDE (a 300 dpi A5 page's
9 pt table is still 15 px high at 1280 px; at 960 px the cells of a scanned table ran together and
it was read column by column), and detected again at a finer
scale only when the boxes it found are too small for the detector to have found them all. The
recognizer reads each crop at its own width (batched only with crops of the same width, so
nothing is padded); its output
columns say where along the crop each character sits, which gives the characters' places without
the per-character box fitting rapidocr does afterwards."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from vlground.ocr import orientation
from vlground.ocr.layout import Piece

# The long side an image is detected at, at most (smaller images: their own size).
DETECT_SIDE = 1280
# Boxes whose median height (detector pixels) is below this were found at too coarse a scale:
# the image is detected again, scaled so that they would be FINE_TEXT high, up to its own size.
SMALL_TEXT = 9.0
FINE_TEXT = 16.0
# Below this side an image is scaled up before detection (the detector's smallest useful input).
MIN_SIDE = 32
# The recognizer's input height, and how many crops it reads in one run.
REC_HEIGHT = 48
REC_BATCH = 8
# The narrowest input (pixels): a glyph or two still gets a few output columns.
REC_MIN_WIDTH = 32
# Lines read below this confidence are dropped, as rapidocr drops them (noise read as text).
MIN_LINE_SCORE = 0.5


@dataclass(frozen=True)
class Networks:
    """What a rapidocr generation hands over: the detection network (a normalised (1, 3, H, W)
    BGR batch -> (1, 1, H, W) text probability), its box extraction (DB post-processing:
    probability map, original (height, width) -> quads, scores), the normalisation it was trained
    with, and the recognition network ((N, 3, 48, W) -> (N, W/8, classes) probabilities) with its
    class list (blank first)."""

    detector: Callable[[np.ndarray], np.ndarray]
    boxes: Callable[[np.ndarray, tuple[int, int]], tuple]
    mean: np.ndarray
    std: np.ndarray
    recognizer: Callable[[np.ndarray], np.ndarray]
    classes: Sequence[str]


def _detect_at(nets: Networks, bgr: np.ndarray, scale: float) -> np.ndarray:
    height, width = bgr.shape[:2]
    size = (max(32, round(width * scale / 32) * 32), max(32, round(height * scale / 32) * 32))
    resized = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    batch = ((resized.astype(np.float32) / 255.0 - nets.mean) / nets.std).transpose(2, 0, 1)[None]
    quads, _ = nets.boxes(nets.detector(np.ascontiguousarray(batch, dtype=np.float32)), (height, width))
    return np.asarray(quads, dtype=np.float64).reshape(-1, 4, 2)


def detect_lines(nets: Networks, bgr: np.ndarray) -> np.ndarray:
    """The text boxes of an image (N, 4, 2), image pixels, corners clockwise from the top-left."""
    height, width = bgr.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(height, width))
    scale = max(scale, MIN_SIDE / min(height, width))
    quads = _detect_at(nets, bgr, scale)
    if len(quads) and scale < 1:
        text_height = float(np.median([min(orientation.box_sides(q)) for q in quads])) * scale
        if text_height < SMALL_TEXT:
            finer = min(1.0, scale * FINE_TEXT / max(text_height, 1.0))
            if finer > scale * 1.2:
                quads = _detect_at(nets, bgr, finer)
    return quads


def crop_line(bgr: np.ndarray, quad: np.ndarray, rotation: int) -> np.ndarray:
    """The box `quad` cut out and straightened, read as if the page were turned `rotation`
    degrees clockwise (its corners taken from the one that is then the top-left)."""
    corners = upright_corners(quad, rotation).astype(np.float32)
    width = max(1, int(round(max(np.linalg.norm(corners[1] - corners[0]), np.linalg.norm(corners[2] - corners[3])))))
    height = max(1, int(round(max(np.linalg.norm(corners[3] - corners[0]), np.linalg.norm(corners[2] - corners[1])))))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    warp = cv2.getPerspectiveTransform(corners, target)
    return cv2.warpPerspective(bgr, warp, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)


def upright_corners(quad: np.ndarray, rotation: int) -> np.ndarray:
    """The corners of a box listed from the one that is the text's top-left once the page is
    turned `rotation` degrees clockwise (a page turned 90 degrees: its bottom-left corner)."""
    return np.roll(np.asarray(quad, dtype=np.float64), rotation // 90, axis=0)


@dataclass(frozen=True)
class Reading:
    """The recognizer's reading of one cropped line: its text, confidence (mean over its
    characters), and each character's centre along the crop (fraction of its width)."""

    text: str
    score: float
    places: np.ndarray


def recognize(nets: Networks, crops: Sequence[np.ndarray]) -> list[Reading]:
    """Each crop read, in the order given, as if read alone: scaled to the recognizer's height
    (its width to the next multiple of 8) and batched only with crops of the same input width, so
    that nothing is padded: on one core the recognizer's time grows with its input's width
    whatever the batch size (padding was 20% of it on the quality images), and padding would
    change what its attention layers see."""
    widths = [max(REC_MIN_WIDTH, -(-math.ceil(REC_HEIGHT * crop.shape[1] / max(crop.shape[0], 1)) // 8) * 8) for crop in crops]
    readings: list[Reading | None] = [None] * len(crops)
    for width in sorted(set(widths)):
        same = [index for index, w in enumerate(widths) if w == width]
        for start in range(0, len(same), REC_BATCH):
            group = same[start : start + REC_BATCH]
            batch = np.stack([cv2.resize(crops[index], (width, REC_HEIGHT), interpolation=cv2.INTER_LINEAR) for index in group])
            probabilities = nets.recognizer(np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) / 127.5 - 1.0)
            for row, index in enumerate(group):
                readings[index] = _decode(probabilities[row], nets.classes)
    return readings


def _decode(probabilities: np.ndarray, classes: Sequence[str]) -> Reading:
    """CTC decoding of one line: the best class per column, repeats merged, blanks dropped; a
    character sits at the middle of its run of columns."""
    best = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    steps = len(best)
    starts = (best != 0) & np.r_[True, best[1:] != best[:-1]]
    kept = best != 0
    if not starts.any():
        return Reading("", 0.0, np.zeros(0))
    run = np.cumsum(starts) - 1
    columns = np.arange(steps, dtype=np.float64)
    counts = np.bincount(run[kept], minlength=int(starts.sum()))
    middles = np.bincount(run[kept], weights=columns[kept], minlength=len(counts)) / np.maximum(counts, 1)
    places = np.clip((middles + 0.5) / steps, 0.0, 1.0)
    text = "".join(classes[i] if i < len(classes) else "" for i in best[starts])
    return Reading(text, float(confidence[starts].mean()), places)


def piece(quad: np.ndarray, rotation: int, reading: Reading) -> Piece:
    """The reading as a layout piece in image pixels: its box's corners from the text's top-left,
    each character's centre on the box's middle line at its place."""
    corners = upright_corners(quad, rotation)
    left, right = (corners[0] + corners[3]) / 2, (corners[1] + corners[2]) / 2
    centers = left + reading.places[:, None] * (right - left)
    return Piece(quad=corners, text=reading.text, score=reading.score, centers=centers)


@dataclass
class PageReader:
    """One image's boxes, read on demand at any rotation and remembered, so the orientation vote
    and the final reading share their work."""

    nets: Networks
    bgr: np.ndarray
    quads: np.ndarray
    each_line_both_ways: bool = False
    _cache: dict[tuple[int, int], Reading] = field(default_factory=dict)

    def read(self, indices: Sequence[int], rotation: int) -> list[Reading]:
        missing = [i for i in indices if (i, rotation) not in self._cache]
        if missing:
            found = recognize(self.nets, [crop_line(self.bgr, self.quads[i], rotation) for i in missing])
            self._cache.update(((i, rotation), reading) for i, reading in zip(missing, found))
        return [self._cache[(i, rotation)] for i in indices]

    def confidence(self, indices: Sequence[int], rotation: int) -> float:
        """Mean confidence of the boxes read at `rotation`, weighted by their characters."""
        readings = self.read(indices, rotation)
        weights = [max(len(r.text), 1) for r in readings]
        return float(np.average([r.score for r in readings], weights=weights)) if readings else 0.0

    def pieces(self, rotation: int) -> list[Piece]:
        """Every box read with the page turned `rotation`; a box running across the page's
        direction (a table set sideways on an upright page) read each way across, whichever reads
        more confidently, and with `each_line_both_ways` every box read upside down too (lines
        turned on their own); unsure readings dropped."""
        turns_of = []
        for quad in self.quads:
            width, height = orientation.box_sides(upright_corners(quad, rotation))
            turns = [rotation]
            if height >= orientation.ELONGATED * max(width, 1.0):
                turns = [(rotation + 90) % 360, (rotation + 270) % 360]
            if self.each_line_both_ways:
                turns += [(turn + 180) % 360 for turn in turns]
            turns_of.append(turns)
        for turn in orientation.ROTATIONS:  # the boxes read together (batched), not one run per box
            self.read([i for i, turns in enumerate(turns_of) if turn in turns], turn)
        out = []
        for index, quad in enumerate(self.quads):
            best = max(((self.read([index], turn)[0], turn) for turn in turns_of[index]), key=lambda pair: pair[0].score)
            if best[0].score >= MIN_LINE_SCORE and best[0].text.strip():
                out.append(piece(quad, best[1], best[0]))
        return out
