"""The per-input exports of `vlground ocr --format`: plain text, hOCR, Markdown and a searchable PDF,
each built from the records of one input (an image, or the pages of a document, in page order).
The JSONL records stay the record of truth; these are views of them.

    txt   the text of each page, pages separated by a form feed (as pdftotext does)
    hocr  XHTML with ocr_page / ocr_line / ocrx_word elements, `bbox` in page pixels and `x_wconf`
          (confidence 0-100) on words, which hOCR tools and browsers read
    md    the text in reading order (columns one after the other), paragraphs where the layout
          shows them, table-like rows and short lines kept as lines (hard breaks)
    pdf   an invisible text layer on the words (text render mode 3, a glyphless embedded font), so the
          PDF can be searched, selected and copied: on the original pages of a PDF input, kept as
          they are; on the page images of an image input (`vlground.ocr.text_layer`)"""
from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from vlground.core.records import Record, text_line
from vlground.core.results import Detection

FORMATS = ("txt", "hocr", "md", "pdf")
SUFFIXES = {"txt": ".txt", "hocr": ".hocr", "md": ".md", "pdf": ".pdf"}

# Markdown: lines closer than this many line heights (and in the same column) share a paragraph.
PARAGRAPH_GAP = 0.8
# A gap between two words wider than this many line heights makes a line a table row: a word
# space is about a third of a line height (justified prose stretches it to two thirds), where the
# gutter between a table's cells is wider.
TABLE_GAP = 1.0
# A line ending this far (fraction of the paragraph width) before its right edge ends a line of prose.
SHORT_LINE = 0.15

PageImage = Callable[[Record], Image.Image]


def render(fmt: str, records: Sequence[Record], page_image: PageImage, title: str, original: bytes | None = None) -> bytes:
    """The `fmt` export of one input's records. `page_image` gives a record's page image and
    `original` the bytes of a PDF input (only the PDF export needs them); `title` names the input
    (hOCR and PDF metadata)."""
    if fmt == "txt":
        return to_text(records).encode("utf-8")
    if fmt == "hocr":
        return to_hocr(records, title).encode("utf-8")
    if fmt == "md":
        return to_markdown(records).encode("utf-8")
    if fmt == "pdf":
        return to_pdf(records, page_image, original)
    raise ValueError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")


def _readable(records: Sequence[Record]) -> list[Record]:
    return [record for record in records if record.error is None]


def to_text(records: Sequence[Record]) -> str:
    return "\f".join(record.text + "\n" if record.text else "" for record in records)


def _bounds(item: Detection) -> tuple[float, float, float, float]:
    if item.box is not None:
        return tuple(float(v) for v in item.box)
    points = np.asarray(item.quad, dtype=np.float64)
    return (float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max()))


def _bbox(item: Detection, record: Record) -> str:
    x1, y1, x2, y2 = _bounds(item)
    width, height = record.width or 0, record.height or 0
    clip = lambda v, top: max(0, min(int(round(v)), top))  # noqa: E731 - a local rounding rule
    return f"bbox {clip(x1, width)} {clip(y1, height)} {clip(x2, width)} {clip(y2, height)}"


def _confidence(score: float | None) -> str:
    return "" if score is None else f"; x_wconf {int(round(100 * score))}"


def to_hocr(records: Sequence[Record], title: str) -> str:
    """hOCR 1.2 as Tesseract writes it: per page an ocr_page (bbox in its pixels, ppageno 0-based),
    per paragraph (lines that follow closely in one column) an ocr_carea holding one ocr_par, then
    ocr_line with baseline and font metrics, ocrx_word with x_wconf."""
    body = []
    for number, record in enumerate(_readable(records), 1):
        page_no = (record.page or number) - 1
        size = f"bbox 0 0 {record.width or 0} {record.height or 0}"
        body.append(f'  <div class="ocr_page" id="page_{page_no + 1}" '
                    f'title="image {_xml(_quoted(title))}; {size}; ppageno {page_no}">')
        index = 0
        for block, lines in enumerate(_paragraphs(record.lines), 1):
            area = _bbox_of([_bounds(line) for line in lines], record)
            body.append(f'   <div class="ocr_carea" id="block_{page_no + 1}_{block}" title="{area}">')
            body.append(f'    <p class="ocr_par" id="par_{page_no + 1}_{block}" lang="{HOCR_LANGUAGE}" title="{area}">')
            for line in lines:
                index += 1
                body.append(f'     <span class="ocr_line" id="line_{page_no + 1}_{index}" '
                            f'title="{_bbox(line, record)}{_line_metrics(line)}">')
                words = line.parts or (text_line(line.text, box=line.box, quad=line.quad, score=line.score),)
                for number_in_line, word in enumerate(words, 1):  # an engine without words (Qwen): the line is one
                    body.append(f'      <span class="ocrx_word" id="word_{page_no + 1}_{index}_{number_in_line}" '
                                f'title="{_bbox(word, record)}{_confidence(word.score)}">{_xml(word.text)}</span>')
                body.append("     </span>")
            body.append("    </p>")
            body.append("   </div>")
        body.append("  </div>")
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">',
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">',
        " <head>",
        f"  <title>{_xml(title)}</title>",
        '  <meta http-equiv="Content-Type" content="text/html; charset=utf-8"/>',
        '  <meta name="ocr-system" content="vlground"/>',
        '  <meta name="ocr-capabilities" content="ocr_page ocr_carea ocr_par ocr_line ocrx_word"/>',
        " </head>",
        " <body>",
        *body,
        " </body>",
        "</html>",
        "",
    ])


# The language hOCR readers are told (ocr_par's lang): the built-in recognizer is trained on English
# and Chinese; English is what the look-alike fixes and the word spacing assume.
HOCR_LANGUAGE = "en"
# Letters that reach below the baseline, above the x-height, or neither (hOCR's font metrics are
# measured on the words made of them).
_DESCENDING = set("gjpqy,;()[]{}")
_ASCENDING = set("bdfhiklt0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'\"!?/()[]{}#$%&@")


def _bbox_of(bounds: list[tuple[float, float, float, float]], record: Record) -> str:
    box = (min(b[0] for b in bounds), min(b[1] for b in bounds), max(b[2] for b in bounds), max(b[3] for b in bounds))
    return _bbox(text_line("", box=box), record)


def _line_metrics(line: Detection) -> str:
    """Tesseract's line properties from the words' ink boxes: `baseline` (slope, and offset from the
    bbox's bottom, negative above it), `x_size` (the line's height), `x_descenders` (baseline to the
    lowest ink) and `x_ascenders` (x-height to the highest ink). Level lines only; a tilted one gets
    its baseline slope alone."""
    x1, y1, x2, y2 = _bounds(line)
    if line.box is None:  # tilted: the slope of its top edge
        quad = np.asarray(line.quad, dtype=np.float64)
        dx, dy = quad[1] - quad[0]
        return f"; baseline {dy / dx:.3f} 0" if abs(dx) > abs(dy) else ""
    words = [(word.text, _bounds(word)) for word in line.parts if word.box is not None]
    sitting = [b[3] for text, b in words if text and not set(text) & _DESCENDING]  # words resting on the baseline
    baseline = float(np.median(sitting)) if sitting else y2
    low = [b[3] - b[1] for text, b in words if text.isalpha() and not set(text) & (_DESCENDING | _ASCENDING)]
    x_height = float(np.median(low)) if low else 0.5 * (baseline - y1)
    return (f"; baseline 0 {int(round(baseline - y2))}; x_size {y2 - y1:.0f}; x_descenders {max(y2 - baseline, 0):.0f}; "
            f"x_ascenders {max(baseline - y1 - x_height, 0):.0f}")


# What XML 1.0 does not allow in a document, even escaped: C0 controls but tab and line breaks, lone
# surrogates, U+FFFE and U+FFFF. A file name or a recognised word holding one is written as its escape.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """`text` escaped for XML content and attributes, characters XML cannot hold as `\\xNN`/`\\uNNNN`."""
    return html.escape(_NOT_XML.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|])")
_MD_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+[.)])")


def _md_escape(text: str) -> str:
    text = " ".join(text.splitlines())  # one recognised line stays one Markdown line: a break could start a heading
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), text)


def _is_table_row(line: Detection, height: float) -> bool:
    boxes = [_bounds(word) for word in line.parts]
    return any(b[0] - a[2] > TABLE_GAP * height for a, b in zip(boxes, boxes[1:]))


def _paragraphs(lines: Sequence[Detection]) -> list[list[Detection]]:
    """Lines (in reading order) grouped where they follow closely in the same column."""
    groups: list[list[Detection]] = []
    for line in lines:
        x1, y1, x2, y2 = _bounds(line)
        if groups:
            px1, py1, px2, py2 = _bounds(groups[-1][-1])
            height = max(py2 - py1, 1.0)
            same_column = x1 < px2 and px1 < x2
            if same_column and py1 < y1 and y1 - py2 <= PARAGRAPH_GAP * height:
                groups[-1].append(line)
                continue
        groups.append([line])
    return groups


def _paragraph_text(lines: list[Detection]) -> str:
    left = min(_bounds(line)[0] for line in lines)
    right = max(_bounds(line)[2] for line in lines)
    out = []
    for index, line in enumerate(lines):
        x1, y1, x2, y2 = _bounds(line)
        text = _md_escape(line.text)
        if index < len(lines) - 1:
            short = x2 < right - SHORT_LINE * (right - left)
            if short or _is_table_row(line, y2 - y1):
                text += "\\"  # a hard line break: the line ends here in the document too
        out.append(text)
    return "\n".join(out)


def to_markdown(records: Sequence[Record]) -> str:
    pages = []
    for record in records:
        paragraphs = [_paragraph_text(group) for group in _paragraphs(record.lines)]
        header = [f"<!-- page {record.page} of {record.pages} -->"] if record.page is not None else []
        if record.error is not None:
            paragraphs = [f"<!-- not read: {_xml(record.error)} -->"]
        pages.append("\n\n".join(header + paragraphs))
    return "\n\n".join(page for page in pages if page) + "\n"


def to_pdf(records: Sequence[Record], page_image: PageImage, original: bytes | None = None) -> bytes:
    """A searchable PDF of one input (`original`: its bytes, where they can be had). A PDF input (its
    records have a dpi) keeps its own pages, all of them as they are, with the text layer on top
    (`vlground.ocr.text_layer`). Images get one page per image, made by img2pdf from the file's own
    encoded bytes (a JPEG stays that JPEG, a PNG's data is kept losslessly, EXIF orientation becomes
    the page's /Rotate), with the same layer; where img2pdf cannot show the file as it was read (a
    mirroring EXIF orientation, a format it does not take) or the bytes are not at hand, from the
    image as it was read, as PNG. ValueError when no PDF can be made."""
    from vlground.ocr.text_layer import add_text_layer

    if any(record.dpi is not None for record in records):
        if original is None:
            raise ValueError("the PDF's own bytes are needed to keep its pages")
        return add_text_layer(original, {record.page or 1: record for record in records})
    readable = _readable(records)
    try:
        return add_text_layer(_image_pdf(original, readable), {record.page or 1: record for record in readable}, pack=True)
    except _NotAsRead:
        pages = []
        for record in readable:
            encoded = io.BytesIO()
            page_image(record).save(encoded, format="PNG")
            pages.append(encoded.getvalue())
        return add_text_layer(_image_pdf(pages, readable), dict(enumerate(readable, 1)), pack=True)


class _NotAsRead(ValueError):
    """img2pdf made no PDF of the input, or pages that do not show the images as they were read."""

    def __init__(self, why: str = "img2pdf cannot show the image as it was read") -> None:
        super().__init__(why)


# EXIF orientations a page's /Rotate can show: upright, and turned 180, 90 clockwise, 90 anticlockwise
# (the others mirror the image, which a PDF page cannot undo).
_TURNS = {1, 3, 6, 8}


def _image_pdf(images: bytes | list[bytes] | None, records: Sequence[Record]) -> bytes:
    """img2pdf's PDF of `images` (one file's bytes, or one encoded page each), checked against the
    records: a page for each record's page number, with the record's width:height as shown."""
    import img2pdf
    import pypdfium2 as pdfium

    if images is None:
        raise _NotAsRead("the image's own bytes are not at hand")
    if isinstance(images, bytes) and _exif_orientation(images) not in _TURNS:
        raise _NotAsRead("the image's EXIF orientation mirrors it")
    try:
        made = img2pdf.convert(images, rotation=img2pdf.Rotation.ifvalid)
    except Exception as error:  # img2pdf refuses what it cannot embed as it is, in several types
        raise _NotAsRead(f"img2pdf: {error}") from error
    document = pdfium.PdfDocument(made)
    try:
        numbers = [record.page or 1 for record in records] if isinstance(images, bytes) else range(1, len(records) + 1)
        for number, record in zip(numbers, records):
            if number > len(document):
                raise _NotAsRead("img2pdf made fewer pages than were read")
            width, height = document[number - 1].get_size()
            if abs(width / height - (record.width or 1) / (record.height or 1)) > 0.01 * width / height:
                raise _NotAsRead("img2pdf turned the image another way than it was read")
    finally:
        document.close()
    return made


def _exif_orientation(data: bytes) -> int:
    """The EXIF orientation of the image in `data` (1, upright, when it has none or cannot be opened)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(image.getexif().get(0x0112, 1))
    except Exception:  # not an image Pillow opens: img2pdf decides
        return 1
