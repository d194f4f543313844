"""What every OCR engine behind `vlground ocr` gives, and the Qwen-VL models as one.

Engines take RGB images from `vlground.io.images.load_image` and return a `PageText` per image: the
text in reading order and its lines, in pixels of the image given. The built-in PP-OCR engines are
in `vlground.ocr.ppocr`."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from vlground.core.options import GenerationOptions
from vlground.core.records import text_line
from vlground.core.results import Detection

MODES = ("text", "lines")


class EngineUnavailableError(RuntimeError):
    """The engine cannot run here (a missing package, unknown model); the message says what to do."""


@dataclass(frozen=True)
class PageText:
    """One image read: its text, its lines, the turn (degrees clockwise) it was read at (None:
    the engine does not turn pages), warnings about the reading (an orientation it was unsure of,
    reasoning cut short) and a thinking model's reasoning before it answered."""

    text: str
    lines: list[Detection] = field(default_factory=list)
    rotation: int | None = None
    warnings: tuple[str, ...] = ()
    reasoning: str | None = None


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
            return [PageText(text=r.text.strip(), warnings=_cut_short(r), reasoning=r.reasoning)
                    for r in self._model.read_text(images, options=self.options)]
        pages = []
        for result in self._model.spot_text(images, options=self.options):
            lines = [text_line((d.text or d.label or "").strip(), box=d.box, quad=d.quad)
                     for d in result.detections if d.box is not None or d.quad is not None]
            pages.append(PageText(text="\n".join(line.text for line in lines), lines=lines, warnings=_cut_short(result),
                                  reasoning=result.reasoning))
        return pages


def _cut_short(result) -> tuple[str, ...]:
    """The warning of an answer whose reasoning never ended (no text read), else none."""
    if not result.reasoning_cut_short:
        return ()
    return ("the model's reasoning was cut short before it answered: no text (raise --max-thinking-tokens)",)
