"""The record: one JSON line per input (an image, or one page of a document) that every batch
command writes, and the one reader of those files.

A record says which input it is (`path` as given, `abspath` its absolute form, `page` of a document),
what read it (`model` for detect and label, `engine` for ocr), the image's displayed size, and what
was found (`detections`, `text`) or why nothing was (`error`). Two JSON shapes, kept as the commands
have always written them:

    detect, label: {"path", "model", "width", "height", "detections": [parse's detections], "text", "error",
                    ["reasoning"], ["reasoning_cut_short"], ["clipped"], "abspath"}
    ocr:           {"path", "abspath", ["page", "pages"], ["dpi"], ["rotation"], ["warnings"], ["reasoning"],
                    "engine", "width", "height", "text",
                    "lines": [{"text", "box" | "quad", "score", "words": [{"text", "box" | "quad", "score"}]}],
                    "error"}

Fields in brackets are written only where set: a document's page, a PDF's dpi, the quarter turn an
OCR page was read at and what was noticed reading it, a thinking model's reasoning (as `Result` has
it: `reasoning`, `reasoning_cut_short`, `clipped`).

An OCR line is a Detection with its `text`, a `score` and its words as `parts`; its coordinates and
scores are written rounded (0.1 pixel, 4 digits). Coordinates are pixels of the image as displayed
(EXIF orientation applied). Names that are not valid UTF-8 are escaped (`vlground.io.sink.escape_path`).

`read_records(path)` reads either shape back into Records that draw themselves (`vlground.show`,
Jupyter), convert to `sv.Detections` and COCO, and keep one record per input: the latest, as the
sink does when a run is resumed or retried."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlground.core.results import REASONING_FIELDS, Box, Detection, Quad, Result
from vlground.io.sink import encode_line, escape_path
from vlground.io.sources import absolute_name

if TYPE_CHECKING:
    import supervision as sv

    from vlground.viz import Drawing


def input_key(abspath: str, page: int | None = None) -> str:
    """The identity of one input (one page of a document) across runs."""
    return abspath if page is None else f"{abspath}\x00page {page}"


def record_key(record: dict[str, Any]) -> str:
    """The input a record (a JSON object, as a sink reads it back) is of: its "abspath", else its
    path taken from the current folder, and its page. The one key of resume, --retry-failed and
    `read_records`: the latest record of a key is the one that counts."""
    abspath = record.get("abspath")
    return input_key(abspath if isinstance(abspath, str) else absolute_name(record["path"]), record.get("page"))


def with_abspath(record: dict[str, Any]) -> dict[str, Any]:
    """A detect or label record (a JSON object) with its "abspath", set in the process that names
    the inputs: a Ray worker elsewhere has another working directory."""
    abspath = record.get("abspath")
    return {**record, "abspath": abspath if isinstance(abspath, str) else absolute_name(record["path"])}


@dataclass(frozen=True)
class Record:
    """The record of one input. `model` is set on detect and label records, `engine` on OCR records;
    an input that could not be read or answered has `error` set, no size and nothing found."""

    path: str
    model: str | None = None
    engine: str | None = None
    width: int | None = None
    height: int | None = None
    detections: list[Detection] = field(default_factory=list)
    text: str = ""
    error: str | None = None
    page: int | None = None
    pages: int | None = None
    dpi: int | None = None
    rotation: int | None = None
    warnings: tuple[str, ...] = ()
    reasoning: str | None = None
    reasoning_cut_short: bool = False
    clipped: int = 0
    abspath: str | None = None  # as read back; None: taken from `path` (from the current folder)

    @classmethod
    def from_result(cls, path: str, result: Result, **fields: Any) -> Record:
        """The record of `path` answered with `result` (`fields`: model or engine, page, ...)."""
        width, height = result.image_size
        return cls(path=path, width=width, height=height, detections=list(result.detections), text=result.text,
                   reasoning=result.reasoning, reasoning_cut_short=result.reasoning_cut_short, clipped=result.clipped,
                   **fields)

    @classmethod
    def failed(cls, path: str, error: str, **fields: Any) -> Record:
        return cls(path=path, error=error, **fields)

    @property
    def lines(self) -> list[Detection]:
        """An OCR record's lines (its detections)."""
        return self.detections

    @property
    def key(self) -> str:
        """The input this record is of, across runs and working folders (`record_key`)."""
        return input_key(self.abspath or absolute_name(self.path), self.page)

    @property
    def result(self) -> Result | None:
        """What was found, as a Result on the image (None for an error record)."""
        if self.error is not None or self.width is None or self.height is None:
            return None
        return Result(list(self.detections), self.text, (self.width, self.height), image=self.image,
                      reasoning=self.reasoning, reasoning_cut_short=self.reasoning_cut_short, clipped=self.clipped)

    @property
    def image(self) -> str | None:
        """The image file the record is of: `abspath` where that file exists (a record read back
        from another folder), else `path`; None for a page of a document (the path names the PDF
        or TIFF, not the page) and for a URL or stdin."""
        if self.page is not None or self.path == "-" or "://" in self.path:
            return None
        if self.abspath and Path(self.abspath).is_file():
            return self.abspath
        return self.path

    def to_supervision(self) -> sv.Detections:
        """`supervision.Detections` of what was found (empty for an error record); see
        `Result.to_supervision`."""
        from vlground.extras import require

        require("supervision", "to_supervision()")
        import supervision as sv

        result = self.result
        return sv.Detections.empty() if result is None else result.to_supervision()

    def to_coco(self, image_id: int, category_ids: dict[str, int] | None = None, score: float = 1.0) -> list[dict]:
        """COCO result entries of what was found (none for an error record); see `Result.to_coco`."""
        result = self.result
        return [] if result is None else result.to_coco(image_id, category_ids, score)

    def drawing(self) -> Drawing:
        """The record as `vlground.viz` draws it: its detections (OCR lines with their words) on
        its image, found by `abspath`; a grid tile titled with the file name."""
        result = self.result
        if result is None:
            raise ValueError(f"{self.path}: the record has no image to draw ({self.error})")
        return replace(result.drawing(), title=Path(self.path).name)

    def _repr_png_(self) -> bytes | None:
        """Jupyter shows the record drawn on its image (None: the image is not known)."""
        from vlground.viz import png_of

        return png_of(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the record, in the shape of the command that wrote it (module docstring)."""
        if self.engine is None:
            out = {"path": self.path, "model": self.model, "width": self.width, "height": self.height,
                   "detections": [d.to_dict() for d in self.detections], "text": self.text, "error": self.error}
            out.update((name, getattr(self, name)) for name in REASONING_FIELDS if getattr(self, name))
            if self.abspath is not None:
                out["abspath"] = self.abspath
            return out
        out: dict[str, Any] = {"path": escape_path(self.path), "abspath": self.abspath or absolute_name(self.path)}
        if self.page is not None:
            out.update(page=self.page, pages=self.pages)
        for name in ("dpi", "rotation"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.reasoning:
            out["reasoning"] = self.reasoning
        return {**out, "engine": self.engine, "width": self.width, "height": self.height, "text": self.text,
                "lines": [_line_dict(line) for line in self.detections], "error": self.error}

    def to_json(self) -> str:
        """One line of JSON (no newline inside, non-ASCII text kept readable)."""
        return encode_line(self.to_dict()).decode("utf-8").rstrip("\n")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        """A record from its JSON object, either shape."""
        if "engine" in d:
            return cls(path=d["path"], engine=d["engine"], width=d.get("width"), height=d.get("height"),
                       detections=[_line(line) for line in d.get("lines") or []], text=d.get("text") or "",
                       error=d.get("error"), page=d.get("page"), pages=d.get("pages"), dpi=d.get("dpi"),
                       rotation=d.get("rotation"), warnings=tuple(d.get("warnings") or ()), reasoning=d.get("reasoning"),
                       abspath=d.get("abspath"))
        return cls(path=d["path"], model=d.get("model") or "", width=d.get("width"), height=d.get("height"),
                   detections=[Detection.from_dict(x) for x in d.get("detections") or []], text=d.get("text") or "",
                   error=d.get("error"), reasoning=d.get("reasoning"), reasoning_cut_short=bool(d.get("reasoning_cut_short")),
                   clipped=int(d.get("clipped") or 0), abspath=d.get("abspath"))


def read_records(path: str | Path) -> list[Record]:
    """The records of a JSONL file that detect, label or ocr wrote, one per input: the latest
    record of an input (resumed and retried runs append), in the order inputs first appear. A
    damaged line (a run killed mid-write) is skipped."""
    records: dict[str, Record] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = Record.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        records[record.key] = record
    return list(records.values())


def text_line(text: str, box: Box | None = None, quad: Quad | None = None, score: float | None = None,
              words: tuple[Detection, ...] = ()) -> Detection:
    """An OCR line (or, without `words`, a word): a Detection with its text, score and words."""
    return Detection(label=None, box=box, quad=quad, text=text, score=score, parts=tuple(words))


def _geometry_dict(d: Detection) -> dict[str, Any]:
    if d.quad is not None:
        return {"quad": [[round(float(x), 1), round(float(y), 1)] for x, y in d.quad]}
    return {"box": [round(float(v), 1) for v in d.box]}


def _score(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _line_dict(line: Detection) -> dict[str, Any]:
    out: dict[str, Any] = {"text": line.text, **_geometry_dict(line), "score": _score(line.score)}
    if line.parts:
        out["words"] = [{"text": w.text, **_geometry_dict(w), "score": _score(w.score)} for w in line.parts]
    return out


def _line(d: dict[str, Any]) -> Detection:
    quad = d.get("quad")
    return text_line(d["text"], box=tuple(d["box"]) if d.get("box") is not None else None,
                     quad=tuple(tuple(p) for p in quad) if quad is not None else None, score=d.get("score"),
                     words=tuple(_line(w) for w in d.get("words") or ()))
