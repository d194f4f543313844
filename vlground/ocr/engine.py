"""The OCR engines behind `vlground ocr`: PP-OCR embedded (CPU, no download) and the Qwen-VL models.

Both take RGB images from `vlground.imageio.load_image` and return a `PageText` per image: the text
in reading order and its lines, in pixels of the image given."""
from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from vlground.ocr.confusions import fix_confusions
from vlground.ocr.layout import Piece, assemble_lines
from vlground.ocr.records import OcrLine
from vlground.options import GenerationOptions

PPOCR = "ppocr"
MODES = ("text", "lines")


class EngineUnavailableError(RuntimeError):
    """The engine cannot run here (a missing package, unknown model); the message says what to do."""


@dataclass(frozen=True)
class PageText:
    text: str
    lines: list[OcrLine] = field(default_factory=list)


class PPOCREngine:
    """PP-OCRv4 through rapidocr-onnxruntime, whose wheel carries the ONNX models: offline, on CPU.

    On top of the bare engine: lines assembled in reading order (columns too) and word spaces put
    back from the pixels. `threads` caps onnxruntime's threads (1 per process when several worker
    processes share the cores); None lets it use them all."""

    name = PPOCR

    def __init__(self, threads: int | None = None) -> None:
        self.check_available()
        from rapidocr_onnxruntime import RapidOCR

        options = {} if threads is None else {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        self._ocr = RapidOCR(**options)

    @staticmethod
    def check_available() -> None:
        """Raise EngineUnavailableError, saying what to install, when rapidocr cannot be imported."""
        try:
            import rapidocr_onnxruntime  # noqa: F401
        except ImportError as error:
            raise EngineUnavailableError(
                "the built-in OCR engine needs the package rapidocr-onnxruntime (1.4.x, Python < 3.13), "
                f"which is not importable here ({error}). On Python {sys.version_info.major}.{sys.version_info.minor}: "
                + ("pip install 'rapidocr-onnxruntime>=1.4,<1.5'" if sys.version_info < (3, 13)
                   else "use Python 3.10-3.12 for the built-in engine, or --engine with a Qwen model")
            ) from error

    def detect(self, image: Image.Image) -> list[Piece]:
        """The bare engine's pieces (its text as it comes, no spaces restored), image pixels."""
        rgb = np.asarray(_within_aspect(image.convert("RGB")))
        rgb = np.ascontiguousarray(rgb[:, :, ::-1])  # rapidocr wants BGR
        result, _ = self._ocr(rgb, return_word_box=True)
        pieces = []
        for quad, text, score, *word_info in result or []:
            corners = np.asarray(quad, dtype=np.float64)
            centers, widths = _char_geometry(corners, text, word_info)
            pieces.append(Piece(quad=corners, text=text, score=float(score), centers=centers, widths=widths))
        return pieces

    def read_one(self, image: Image.Image) -> PageText:
        lines = [with_confusions_fixed(line) for line in assemble_lines(self.detect(image), np.asarray(image.convert("L")))]
        return PageText(text="\n".join(line.text for line in lines), lines=lines)

    def read(self, images: Sequence[Image.Image]) -> list[PageText]:
        return [self.read_one(image) for image in images]


# rapidocr shrinks the long side to 2000 px and fails once the short side rounds to nothing; its
# detector then scales the short side up to 736 px, so a long strip costs its aspect ratio in time.
MAX_ASPECT = 10


def _within_aspect(image: Image.Image) -> Image.Image:
    """Extreme strips padded (right or bottom, in their border colour) to MAX_ASPECT, so pixel
    coordinates stay those of the original. Text in such a strip is shrunk with it and may be lost."""
    width, height = image.size
    if max(width, height) <= MAX_ASPECT * min(width, height):
        return image
    pixels = np.asarray(image)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    size = (width, -(-width // MAX_ASPECT)) if width > height else (-(-height // MAX_ASPECT), height)
    canvas = Image.new("RGB", size, tuple(int(v) for v in np.median(border, axis=0)))
    canvas.paste(image, (0, 0))
    return canvas


def _char_geometry(quad: np.ndarray, text: str, word_info: list) -> tuple[np.ndarray, np.ndarray | None]:
    """One (x, y) per character and its width along the line: from rapidocr's character boxes
    (`return_word_box`), or, where it gave none, centres evenly along the middle of the piece and
    widths left to the layout (None)."""
    boxes = word_info[0] if word_info else None
    if boxes is not None and len(boxes) == len(text) and len(text) > 0:
        corners = np.asarray(boxes, dtype=np.float64).reshape(len(text), 4, 2)
        widths = (np.linalg.norm(corners[:, 1] - corners[:, 0], axis=1) + np.linalg.norm(corners[:, 2] - corners[:, 3], axis=1)) / 2
        return corners.mean(axis=1), widths
    left, right = (quad[0] + quad[3]) / 2, (quad[1] + quad[2]) / 2
    steps = (np.arange(len(text)) + 0.5) / max(len(text), 1)
    return left + steps[:, None] * (right - left), None


def with_confusions_fixed(line: OcrLine) -> OcrLine:
    """The line with look-alike characters fixed, in its words too (the fixes keep word boundaries)."""
    text = fix_confusions(line.text)
    parts = text.split(" ")
    if len(parts) != len(line.words):
        return replace(line, text=text)
    return replace(line, text=text, words=tuple(replace(w, text=t) for w, t in zip(line.words, parts)))


class QwenEngine:
    """A loaded Qwen-VL `Model` (vlground.tasks) reading text: `mode="text"` asks the family's
    read-text prompt (text only, no lines); `mode="lines"` asks it to spot text and keeps each
    line's box or quad (score null: the model gives no confidence). `options` (GenerationOptions)
    carry the batch size and the token budget."""

    def __init__(self, model, name: str, mode: str = "text", options: GenerationOptions | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        self.name = name
        self.mode = mode
        self.options = options or GenerationOptions()
        self._model = model

    def read(self, images: Sequence[Image.Image]) -> list[PageText]:
        images = list(images)
        if self.mode == "text":
            return [PageText(text=r.text.strip()) for r in self._model.read_text(images, options=self.options)]
        pages = []
        for result in self._model.spot_text(images, options=self.options):
            lines = [OcrLine(text=(d.text or d.label or "").strip(), box=d.box, quad=d.quad)
                     for d in result.detections if d.box is not None or d.quad is not None]
            pages.append(PageText(text="\n".join(line.text for line in lines), lines=lines))
        return pages
