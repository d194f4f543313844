"""The invisible text layer of a searchable PDF, added to the pages of an existing PDF.

A PDF input keeps its own pages: the words are written over them in a new content stream, and the
page's images, vector drawings and earlier content streams stay the same objects with the same bytes
(the original content is only wrapped in q ... Q so it cannot change the text's coordinates). The
file grows by the text and one small font, not by re-rendered pages.

Libraries: pikepdf (qpdf) edits the document: pages, resources and streams are added as objects and
the file is written with its streams left encoded as they were, which a PDF library does better than
hand-written file syntax; pikepdf also serialises the content-stream operators. The font program is
built by fontTools. pypdfium2, which rendered the page images that were read, gives each page's
geometry (its /Rotate and the crop box it showed), so a word lands where it was seen.

The font is glyphless, as Tesseract's and OCRmyPDF's text layers are: one glyph that paints nothing,
with an advance of half an em, embedded as a CID-keyed TrueType font (Type0, Identity-H). Its outline
is a single contour of no area from the em box's bottom left to its top right: nothing to fill under
any render mode, yet a bounding box of the em, which pdfium (Chrome's reader) needs to keep a
character of turned text (with an empty glyph it drops every character not set horizontally). Each
distinct character of the document gets a 2-byte code; the code-to-glyph map sends every code to
that glyph, and a ToUnicode map gives each code its character, so copy, search and text extraction
return the words.
Text render mode 3 (neither filled nor stroked) keeps it invisible.

Each word is placed by its own text matrix: its baseline along the line's reading direction, the
font's ascent-to-descent (0.8 + 0.2 em) filling the height of the line's ink and its advance widths
stretched over the word's own ink-tight extent, so a reader's box of the word covers its ink and the
words of a line share a baseline (see `_placements`)."""
from __future__ import annotations

import functools
import io
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from vlground.core.records import Record, text_line
from vlground.core.results import Detection

FONT_NAME = "VlgroundGlyphless"
UNITS_PER_EM = 1000
ADVANCE = 500  # every character half an em wide; words are stretched to their boxes anyway
ASCENT, DESCENT = 800, -200  # ascent - descent = one em: a word's box height is its font size


@functools.cache
def glyphless_font() -> bytes:
    """A TrueType font whose one glyph (besides an empty .notdef) paints nothing and spans the em
    box (see the module docstring), built with fontTools."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib.tables._g_l_y_f import Glyph

    pen = TTGlyphPen(None)
    pen.moveTo((0, DESCENT))
    pen.lineTo((ADVANCE, ASCENT))  # there and back: a contour with no inside
    pen.closePath()

    builder = FontBuilder(UNITS_PER_EM, isTTF=True)
    builder.setupGlyphOrder([".notdef", "blank"])
    builder.setupCharacterMap({0x20: "blank"})  # unused under Identity-H; some checkers want a cmap
    builder.setupGlyf({".notdef": Glyph(), "blank": pen.glyph()})
    builder.setupHorizontalMetrics({".notdef": (ADVANCE, 0), "blank": (ADVANCE, 0)})
    builder.setupHorizontalHeader(ascent=ASCENT, descent=DESCENT)
    builder.setupNameTable({"familyName": FONT_NAME, "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=ASCENT, sTypoDescender=DESCENT, usWinAscent=ASCENT, usWinDescent=-DESCENT)
    builder.setupPost()
    out = io.BytesIO()
    builder.save(out)
    return out.getvalue()


def _to_unicode_cmap(characters: Sequence[str]) -> bytes:
    """The ToUnicode CMap of codes 1..n -> `characters` (PDF 32000 9.10.3; 100 entries a block)."""
    entries = [f"<{code:04X}> <{char.encode('utf-16-be').hex().upper()}>" for code, char in enumerate(characters, 1)]
    blocks = [f"{len(chunk)} beginbfchar\n" + "\n".join(chunk) + "\nendbfchar"
              for chunk in (entries[i:i + 100] for i in range(0, len(entries), 100))]
    return "\n".join([
        "/CIDInit /ProcSet findresource begin", "12 dict begin", "begincmap",
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
        "/CMapName /Adobe-Identity-UCS def", "/CMapType 2 def",
        "1 begincodespacerange", "<0000> <FFFF>", "endcodespacerange",
        *blocks,
        "endcmap", "CMapName currentdict /CMap defineresource pop", "end", "end", "",
    ]).encode("ascii")


def _stream(pdf, data: bytes, **entries):
    """A new stream of `data`, Flate-compressed here (the file is saved with its streams as they are)."""
    from pikepdf import Name

    stream = pdf.make_stream(b"", **entries)
    stream.write(zlib.compress(data, 9), filter=Name.FlateDecode)
    return stream


def _font(pdf, characters: Sequence[str]):
    """The Type0 font dictionary (an indirect object of `pdf`) whose codes 1..n are `characters`."""
    from pikepdf import Array, Dictionary, Name

    program = glyphless_font()
    descriptor = pdf.make_indirect(Dictionary(
        Type=Name.FontDescriptor, FontName=Name("/" + FONT_NAME), Flags=4,
        FontBBox=Array([0, DESCENT, ADVANCE, ASCENT]), ItalicAngle=0, Ascent=ASCENT, Descent=DESCENT,
        CapHeight=ASCENT, StemV=80, FontFile2=_stream(pdf, program, Length1=len(program))))
    glyphs = b"\x00\x00" + b"\x00\x01" * len(characters)  # code 0 -> .notdef, every other code -> the blank glyph
    descendant = pdf.make_indirect(Dictionary(
        Type=Name.Font, Subtype=Name.CIDFontType2, BaseFont=Name("/" + FONT_NAME),
        CIDSystemInfo=Dictionary(Registry="Adobe", Ordering="Identity", Supplement=0),
        FontDescriptor=descriptor, DW=ADVANCE, CIDToGIDMap=_stream(pdf, glyphs)))
    return pdf.make_indirect(Dictionary(
        Type=Name.Font, Subtype=Name.Type0, BaseFont=Name("/" + FONT_NAME), Encoding=Name("/Identity-H"),
        DescendantFonts=Array([descendant]), ToUnicode=_stream(pdf, _to_unicode_cmap(characters))))


@dataclass(frozen=True)
class PageFrame:
    """Where a page image's pixels lie on the PDF page: the box pdfium showed (crop box within the
    media box, PDF points), the page's /Rotate (clockwise) and the image's size in pixels (as read);
    `has_text` when the page has text of its own already."""

    box: tuple[float, float, float, float]
    rotate: int
    size: tuple[int, int]
    has_text: bool = False

    def matrix(self) -> list[float]:
        """The PDF matrix [a b c d e f] from image pixels (origin top left, y down, the page as shown
        turned by /Rotate) to the page's default user space (points, y up, unrotated)."""
        x0, y0, x1, y1 = self.box
        turned = self.rotate % 180 == 90
        shown_width, shown_height = (y1 - y0, x1 - x0) if turned else (x1 - x0, y1 - y0)
        kx, ky = shown_width / self.size[0], shown_height / self.size[1]  # points per pixel across, down
        return {0: [kx, 0, 0, -ky, x0, y1], 90: [0, kx, ky, 0, x0, y0],
                180: [-kx, 0, 0, ky, x1, y0], 270: [0, -kx, -ky, 0, x1, y1]}[self.rotate % 360]


def page_frames(pdf_bytes: bytes, sizes: Mapping[int, tuple[int, int]]) -> dict[int, PageFrame]:
    """The frame of each page number (1-based) in `sizes` (its image's width and height), as
    pypdfium2 shows the page."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(pdf_bytes)
    try:
        frames = {}
        for number, size in sizes.items():
            page = document[number - 1]
            text = page.get_textpage()
            try:
                frames[number] = PageFrame(tuple(page.get_bbox()), page.get_rotation(), size,
                                           bool(text.get_text_range().strip()))
            finally:
                text.close()
                page.close()
        return frames
    finally:
        document.close()


def _corners(item: Detection) -> np.ndarray:
    """The item's four corners (top left, top right, bottom right, bottom left as read), pixels."""
    if item.box is not None:
        x1, y1, x2, y2 = (float(v) for v in item.box)
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    return np.asarray(item.quad, dtype=np.float64)


def _placements(record: Record) -> list[tuple[str, list[float]]]:
    """(text to write, its text matrix in image pixels at font size 1) for every word of the record.
    A word spans its own ink along the line and its line's ink across it (all its words' top to
    bottom), so the words of a line share a baseline and a size: text extractors that gather a line
    by its baseline (Ghostscript, pdftotext) keep it one line. Each word but a line's last is followed
    by a space, so copied text keeps its spaces; a line without words (a Qwen engine) is one word."""
    placed = []
    for line in record.lines:
        words = [w for w in (line.parts or (text_line(line.text, box=line.box, quad=line.quad, score=line.score),))
                 if w.text.strip()]
        if not words:
            continue
        reference = _corners(line)
        along = reference[1] - reference[0]
        if not np.any(along):
            continue
        along /= np.linalg.norm(along)
        up = np.array([along[1], -along[0]])  # a quarter turn from the reading direction, towards the top
        corners = [_corners(word) for word in words]
        heights = np.concatenate(corners) @ up
        bottom, height = heights.min(), heights.max() - heights.min()
        for index, (word, points) in enumerate(zip(words, corners)):
            start, end = (points @ along).min(), (points @ along).max()
            advance = len(word.text) * ADVANCE / UNITS_PER_EM
            if height <= 0 or end <= start:
                continue
            origin = start * along + (bottom + height * -DESCENT / UNITS_PER_EM) * up  # the baseline, a descent up
            matrix = [*(along * (end - start) / advance), *(up * height), *origin]
            placed.append((word.text + (" " if index < len(words) - 1 else ""), [float(v) for v in matrix]))
    return placed


def add_text_layer(pdf_bytes: bytes, pages: Mapping[int, Record], *, pack: bool = False) -> bytes:
    """`pdf_bytes` with the words of each record in `pages` (page number, 1-based -> record) written
    invisibly on that page, the record's pixels spread over the page as pdfium shows it.
    With `pack`, the objects that are not streams go into compressed object streams (PDF 1.5), which
    saves a kilobyte or two: for PDFs made here, not for a user's PDF, whose structure is kept.
    Pages without a readable record, and everything already on every page, stay as they are; so do
    pages that have text of their own (born-digital, or searchable already, as OCRmyPDF's
    --skip-text leaves them): a second layer would make every word found twice.
    ValueError when pikepdf cannot open the PDF."""
    import pikepdf
    from pikepdf import Name, Operator

    readable = {number: record for number, record in pages.items() if record.error is None}
    frames = page_frames(pdf_bytes, {number: (record.width, record.height) for number, record in readable.items()})
    placed = {number: _placements(record) for number, record in readable.items() if not frames[number].has_text}
    characters = sorted({char for words in placed.values() for text, _ in words for char in text})
    code = {char: index for index, char in enumerate(characters, 1)}
    try:
        pdf = pikepdf.open(io.BytesIO(pdf_bytes))
    except pikepdf.PdfError as error:
        raise ValueError(f"pikepdf cannot open the PDF to add the text layer ({error})") from None
    font = _font(pdf, characters)
    for number, words in placed.items():
        page = pdf.pages[number - 1]
        name = page.add_resource(font, Name.Font, prefix="VlgOCR")
        operations = [([], Operator("Q")), ([], Operator("q")), (frames[number].matrix(), Operator("cm")),
                      ([], Operator("BT")), ([name, 1], Operator("Tf")), ([3], Operator("Tr"))]
        for text, matrix in words:
            encoded = b"".join(code[char].to_bytes(2, "big") for char in text)
            operations += [(matrix, Operator("Tm")), ([pikepdf.String(encoded)], Operator("Tj"))]
        operations += [([], Operator("ET")), ([], Operator("Q"))]
        page.contents_add(_stream(pdf, b"q\n"), prepend=True)  # the page's own content keeps its state to itself
        page.contents_add(_stream(pdf, pikepdf.unparse_content_stream(operations)))
    out = io.BytesIO()
    # Streams are written as they were read (neither decoded nor compressed again): the pages keep their bytes.
    pdf.save(out, stream_decode_level=pikepdf.StreamDecodeLevel.none, compress_streams=False,
             object_stream_mode=pikepdf.ObjectStreamMode.generate if pack else pikepdf.ObjectStreamMode.preserve)
    return out.getvalue()
