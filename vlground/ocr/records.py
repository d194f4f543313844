"""The OCR record: one JSON line per input file, the format `vlground ocr` writes and `vlground eval
ocr` reads.

    {"path", "abspath", "engine", "width", "height", "text",
     "lines": [{"text", "box" | "quad", "score", "words": [{"text", "box" | "quad", "score"}]}], "error"}
    documents add "page" (1-based), "pages" (the document's count) and, for PDFs, "dpi"; the
    built-in engines add "rotation" (degrees clockwise the image was turned to read it upright: 0,
    90, 180 or 270) and, when there is something to say, "warnings" (an orientation it was unsure of).

`path` is the input as given, `abspath` its absolute path (the key `--resume` matches on); names
that are not valid UTF-8 are escaped in both (`vlground.io.sink.escape_path`: byte 0xff -> "\\xff").

Coordinates are pixels of the image as displayed (EXIF orientation applied). `box` is
[x1, y1, x2, y2]; `quad` is four [x, y] corners clockwise from the top-left of the text. `score` is the
engine's confidence in [0, 1], or null where the engine gives none (Qwen). A file that could not be
read has `error` set, width/height null, empty text and no lines."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlground.core.results import Box, Detection, Quad, Result
from vlground.io.sink import encode_line, escape_path
from vlground.ocr.output import absolute_name

if TYPE_CHECKING:
    from vlground.viz import Drawing


def _geometry_dict(box: Box | None, quad: Quad | None) -> dict[str, Any]:
    if quad is not None:
        return {"quad": [[round(float(x), 1), round(float(y), 1)] for x, y in quad]}
    return {"box": [round(float(v), 1) for v in box]}


def _geometry_of(d: dict[str, Any]) -> dict[str, Any]:
    quad = d.get("quad")
    return {"box": tuple(d["box"]) if d.get("box") is not None else None,
            "quad": tuple(tuple(p) for p in quad) if quad is not None else None}


def _score(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


@dataclass(frozen=True)
class OcrWord:
    """One word of a line: its text, `box` (level lines) or `quad` (tilted ones), confidence."""

    text: str
    box: Box | None = None
    quad: Quad | None = None
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, **_geometry_dict(self.box, self.quad), "score": _score(self.score)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OcrWord:
        return cls(text=d["text"], score=d.get("score"), **_geometry_of(d))


@dataclass(frozen=True)
class OcrLine:
    """One line of text; exactly one of `box` and `quad` is set. `words` (the built-in engine's;
    empty for Qwen) join with single spaces into `text`."""

    text: str
    box: Box | None = None
    quad: Quad | None = None
    score: float | None = None
    words: tuple[OcrWord, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text, **_geometry_dict(self.box, self.quad), "score": _score(self.score)}
        if self.words:
            out["words"] = [word.to_dict() for word in self.words]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OcrLine:
        return cls(text=d["text"], score=d.get("score"), words=tuple(OcrWord.from_dict(w) for w in d.get("words") or []),
                   **_geometry_of(d))


@dataclass(frozen=True)
class OcrRecord:
    """The result for one input file."""

    path: str
    engine: str
    width: int | None = None
    height: int | None = None
    text: str = ""
    lines: list[OcrLine] = field(default_factory=list)
    error: str | None = None
    page: int | None = None
    pages: int | None = None
    dpi: int | None = None
    rotation: int | None = None
    warnings: tuple[str, ...] = ()
    reasoning: str | None = None  # a thinking model's reasoning before its answer (written where set)

    @classmethod
    def failed(cls, path: str, engine: str, error: str) -> OcrRecord:
        return cls(path=path, engine=engine, error=error)

    def to_dict(self) -> dict[str, Any]:
        out = {"path": escape_path(self.path), "abspath": absolute_name(self.path)}
        if self.page is not None:
            out.update(page=self.page, pages=self.pages)
        if self.dpi is not None:
            out["dpi"] = self.dpi
        if self.rotation is not None:
            out["rotation"] = self.rotation
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.reasoning:
            out["reasoning"] = self.reasoning
        return {
            **out,
            "engine": self.engine,
            "width": self.width,
            "height": self.height,
            "text": self.text,
            "lines": [line.to_dict() for line in self.lines],
            "error": self.error,
        }

    def drawing(self) -> Drawing:
        """The record as `vlground.viz` draws it: its lines captioned with their text, their words
        as grey outlines, on the file it names (not for a page of a document: the path names the
        PDF or TIFF); a grid tile titled with the file name."""
        if self.error or self.width is None:
            raise ValueError(f"{self.path}: the OCR record has no page to draw ({self.error})")
        detections = [Detection(label=None, box=line.box, quad=line.quad, text=line.text) for line in self.lines]
        detections += [
            Detection(label=None, box=word.box, quad=word.quad, attributes={"word": True})
            for line in self.lines for word in line.words
        ]
        drawing = Result(detections, self.text, (self.width, self.height)).drawing()
        return replace(drawing, image=self.path if self.page is None else None, title=Path(self.path).name)

    def _repr_png_(self) -> bytes | None:
        """Jupyter shows the record drawn on its image (None: the image cannot be read)."""
        from vlground.viz import png_of

        return png_of(self)

    def to_json(self) -> str:
        """One line of JSON (no newline inside, non-ASCII text kept readable)."""
        return encode_line(self.to_dict()).decode("utf-8").rstrip("\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OcrRecord:
        return cls(
            path=d["path"],
            engine=d["engine"],
            width=d.get("width"),
            height=d.get("height"),
            text=d.get("text") or "",
            lines=[OcrLine.from_dict(line) for line in d.get("lines") or []],
            error=d.get("error"),
            page=d.get("page"),
            pages=d.get("pages"),
            dpi=d.get("dpi"),
            rotation=d.get("rotation"),
            warnings=tuple(d.get("warnings") or ()),
            reasoning=d.get("reasoning"),
        )
