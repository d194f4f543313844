"""Documents in `vlground ocr`: PDFs and multi-page TIFFs page by page, --pages, bad documents, resume
per page, words, and the txt / hOCR / Markdown / searchable-PDF exports (the PDF's text read back)."""
from __future__ import annotations

import ctypes
import os
import random
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image
from reportlab.pdfgen.canvas import Canvas
from typer.testing import CliRunner

from ocr_app import ocr_app, read_records
from vlground.core.records import Record, text_line
from vlground.core.results import Detection
from vlground.eval.ocr import edit_counts, pooled_rates
from vlground.io.documents import PageJob, PageSelection, load_page, parse_pages
from vlground.ocr.formats import to_hocr, to_markdown
from vlground.ocr.synthetic import Document, Style, render

FONT = str(Path(__file__).parent / "fonts" / "DejaVuSansCondensed-Bold.ttf")
PAGES = ["Invoice 4411", "Total due 42.17", "Paid in full"]




def _pdf(path: Path, texts: list[str], size=(216, 72), **options) -> Path:
    """A PDF of one short line per page (3 x 1 inch pages: 900 x 300 px at 300 dpi)."""
    canvas = Canvas(str(path), pagesize=size, **options)
    for text in texts:
        canvas.setFont("Helvetica-Bold", 20)
        canvas.drawString(14, 28, text)
        canvas.showPage()
    canvas.save()
    return path


def _tiff(path: Path, texts: list[str]) -> Path:
    pages = [render(Document("sign", [[[(t, "center")]]]), Style(font=FONT, size=40)) for t in texts]
    pages[0].save(path, save_all=True, append_images=pages[1:], compression="tiff_deflate")
    return path


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scans")
    _pdf(folder / "invoice.pdf", PAGES)
    _tiff(folder / "fax.tif", ["Urgent memo", "Second sheet"])
    return folder


def test_pdfs_and_tiffs_give_one_record_per_page_with_words_and_exports(scans, tmp_path):
    out = tmp_path / "text.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(scans), "--out", str(out), "--workers", "1",
                                         "-f", "hocr", "-f", "md", "-f", "pdf", "-f", "txt"])
    assert result.exit_code == 0, result.stderr
    records = {(Path(r["path"]).name, r["page"]): r for r in read_records(out)}
    assert sorted(records) == [("fax.tif", 1), ("fax.tif", 2), ("invoice.pdf", 1), ("invoice.pdf", 2), ("invoice.pdf", 3)]
    for page, text in enumerate(PAGES, 1):
        record = records[("invoice.pdf", page)]
        assert record["text"] == text and record["pages"] == 3 and record["dpi"] == 300
        assert record["width"] == pytest.approx(900, abs=1) and record["height"] == pytest.approx(300, abs=1)
        (line,) = record["lines"]
        assert [w["text"] for w in line["words"]] == text.split(" ")
        for word in line["words"]:
            x1, y1, x2, y2 = word["box"]
            assert line["box"][0] - 2 <= x1 < x2 <= line["box"][2] + 2 and 0.5 < word["score"] <= 1
    assert [records[("fax.tif", p)]["text"] for p in (1, 2)] == ["Urgent memo", "Second sheet"]
    assert records[("fax.tif", 1)]["pages"] == 2 and "dpi" not in records[("fax.tif", 1)]

    exports = tmp_path / "text"  # OUT without its suffix
    assert (exports / "invoice.pdf.txt").read_text() == "\f".join(t + "\n" for t in PAGES)
    _check_hocr(exports / "invoice.pdf.hocr", [records[("invoice.pdf", p)] for p in (1, 2, 3)])
    markdown = (exports / "invoice.pdf.md").read_text()
    assert markdown == "\n\n".join(f"<!-- page {p} of 3 -->\n\n{t}" for p, t in enumerate(PAGES, 1)) + "\n"
    _check_searchable_pdf(exports / "invoice.pdf.pdf", [records[("invoice.pdf", p)] for p in (1, 2, 3)])
    _check_searchable_pdf(exports / "fax.tif.pdf", [records[("fax.tif", p)] for p in (1, 2)])


def _check_hocr(path: Path, records: list[dict]) -> None:
    root = ET.parse(path).getroot()  # well-formed XHTML
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    pages = root.findall(".//h:div[@class='ocr_page']", ns)
    assert len(pages) == len(records)
    for page, record in zip(pages, records):
        assert f"bbox 0 0 {record['width']} {record['height']}" in page.get("title")
        assert f"ppageno {record['page'] - 1}" in page.get("title")
        words = page.findall(".//h:span[@class='ocrx_word']", ns)
        expected = [w for line in record["lines"] for w in line["words"]]
        assert [w.text for w in words] == [w["text"] for w in expected]
        for element, word in zip(words, expected):
            bbox, conf = element.get("title").split("; ")
            assert [int(v) for v in bbox.split()[1:]] == [round(v) for v in word["box"]]
            assert conf == f"x_wconf {round(100 * word['score'])}"


def _check_searchable_pdf(path: Path, records: list[dict]) -> None:
    document = pdfium.PdfDocument(str(path))
    try:
        assert len(document) == len(records)
        for page, record in zip(document, records):
            text = page.get_textpage().get_text_range()
            assert text.split() == record["text"].split()  # the text layer says what the record says
            width, height = page.get_size()
            scale = 72 / record["dpi"] if "dpi" in record else width / record["width"]  # an image: its page's own size
            assert (width, height) == pytest.approx((record["width"] * scale, record["height"] * scale), abs=0.5)
            rendered = page.render(scale=1 / scale).to_pil().convert("L")  # the page image is there, text invisible
            assert rendered.size == pytest.approx((record["width"], record["height"]), abs=1)
            line = record["lines"][0]
            corners = [line["box"][:2], line["box"][2:]] if "box" in line else line["quad"]
            (x1, y1), (x2, y2) = [min(c[0] for c in corners), min(c[1] for c in corners)], [max(c[0] for c in corners), max(c[1] for c in corners)]
            assert rendered.crop((int(x1), int(y1), int(x2), int(y2))).getextrema()[0] < 100
            _check_words_sit_on_their_ink(page, record, np.asarray(rendered))
    finally:
        document.close()


def _check_words_sit_on_their_ink(page, record: dict, gray: np.ndarray) -> None:
    """Each word of the text layer, its box read back from the PDF by pdfium (points, y up) and put in
    page pixels, covers the ink of that word: the dark pixels under the word's box in the record."""
    text_page = page.get_textpage()
    boxes = []  # one pixel box per visible character of the text layer, in text order
    for index in range(text_page.count_chars()):
        if text_page.get_text_range(index, 1).strip():
            left, bottom, right, top = text_page.get_charbox(index, loose=True)
            corners = [_page_to_pixels(page, x, y, gray.shape) for x in (left, right) for y in (bottom, top)]
            boxes.append((min(c[0] for c in corners), min(c[1] for c in corners), max(c[0] for c in corners), max(c[1] for c in corners)))
    words = [w for line in record["lines"] for w in (line.get("words") or [line])]
    assert len(boxes) == sum(len(w["text"].replace(" ", "")) for w in words)
    for word in words:
        chars, boxes = boxes[: len(word["text"].replace(" ", ""))], boxes[len(word["text"].replace(" ", "")):]
        found = (min(b[0] for b in chars), min(b[1] for b in chars), max(b[2] for b in chars), max(b[3] for b in chars))
        corners = np.asarray([word["box"][:2], word["box"][2:]] if "box" in word else word["quad"], dtype=float)
        x1, y1 = np.floor(corners.min(axis=0)).astype(int)
        x2, y2 = np.ceil(corners.max(axis=0)).astype(int)
        ys, xs = np.nonzero(gray[max(y1, 0):y2, max(x1, 0):x2] < 128)
        assert len(xs), word
        ink = np.stack([xs + max(x1, 0), ys + max(y1, 0)], axis=1)
        inside = ((ink[:, 0] >= found[0] - 2) & (ink[:, 0] <= found[2] + 2) & (ink[:, 1] >= found[1] - 2) & (ink[:, 1] <= found[3] + 2))
        centre_x, centre_y = ink.mean(axis=0)
        assert found[0] <= centre_x <= found[2] and found[1] <= centre_y <= found[3], (word["text"], found, (x1, y1, x2, y2))
        assert inside.mean() > 0.75, (word["text"], found, (x1, y1, x2, y2))  # the layer's box is a little short of capitals


def _page_to_pixels(page, x: float, y: float, shape: tuple[int, ...]) -> tuple[int, int]:
    """A point of the page's user space in the pixels of its image as pdfium shows it (`shape` the
    image's rows and columns): pdfium's own mapping, crop box and /Rotate included."""
    column, row = ctypes.c_int(), ctypes.c_int()
    pdfium.raw.FPDF_PageToDevice(page, 0, 0, shape[1], shape[0], 0, x, y, column, row)
    return column.value, row.value


def test_the_searchable_pdf_puts_each_word_on_its_ink(tmp_path):
    from PIL import ImageDraw, ImageFont

    from vlground.ocr.formats import to_pdf

    image = Image.new("RGB", (600, 400), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 36)
    words = []
    for text, (x, y) in [("North", (30, 40)), ("gate", (200, 40)), ("closed", (380, 300)), ("Sunday", (60, 250))]:
        draw.text((x, y), text, font=font, fill="black")
        words.append(text_line(text, tuple(float(v) for v in draw.textbbox((x, y), text, font=font)), score=0.9))
    lines = [text_line(" ".join(w.text for w in ws), (ws[0].box[0], min(w.box[1] for w in ws), ws[-1].box[2], max(w.box[3] for w in ws)),
                     score=0.9, words=tuple(ws)) for ws in ([words[0], words[1]], [words[3]], [words[2]])]
    record = Record(path="sign.png", engine="ppocr", width=600, height=400, text="North gate\nSunday\nclosed", detections=lines)
    (tmp_path / "sign.pdf").write_bytes(to_pdf([record], lambda _: image))
    _check_searchable_pdf(tmp_path / "sign.pdf", [record.to_dict()])


def test_pages_selection_and_resume_per_page(scans, tmp_path):
    out = tmp_path / "r.jsonl"
    pdf = str(scans / "invoice.pdf")
    first = CliRunner().invoke(ocr_app(), ["ocr", pdf, "--out", str(out), "--pages", "2", "--workers", "1"])
    assert first.exit_code == 0, first.stderr
    assert [(r["page"], r["text"]) for r in read_records(out)] == [(2, "Total due 42.17")]
    again = CliRunner().invoke(ocr_app(), ["ocr", pdf, "--out", str(out), "--pages", "1-3", "--resume", "--workers", "1"])
    assert again.exit_code == 0 and "done 2" in again.stderr and "skipped 1" in again.stderr
    assert sorted(r["page"] for r in read_records(out)) == [1, 2, 3]
    none = CliRunner().invoke(ocr_app(), ["ocr", pdf, "--out", str(tmp_path / "n.jsonl"), "--pages", "7-9"])
    assert none.exit_code == 1 and "selects none of this document's 3 pages" in read_records(tmp_path / "n.jsonl")[0]["error"]
    bad = CliRunner().invoke(ocr_app(), ["ocr", pdf, "--out", str(tmp_path / "b.jsonl"), "--pages", "2-1"])
    assert bad.exit_code == 2 and "--pages" in bad.stderr


def test_a_resume_that_asks_for_a_format_writes_it_for_the_inputs_read_before(scans, tmp_path):
    out, tif = tmp_path / "r.jsonl", str(scans / "fax.tif")
    first = CliRunner().invoke(ocr_app(), ["ocr", tif, "--out", str(out), "--workers", "1"])
    assert first.exit_code == 0, first.stderr
    again = CliRunner().invoke(ocr_app(), ["ocr", tif, "--out", str(out), "--resume", "-f", "txt", "--workers", "1"])
    assert again.exit_code == 0 and "done 0" in again.stderr and "skipped 2" in again.stderr, again.stderr
    assert (tmp_path / "r" / "fax.tif.txt").read_text() == "Urgent memo\n\fSecond sheet\n"
    assert len(out.read_text().splitlines()) == 2  # the records are not written again


def test_bad_documents_each_get_one_error_record_and_the_batch_goes_on(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    _pdf(folder / "good.pdf", ["Receipt 77"])
    _pdf(folder / "locked.pdf", ["Secret"], encrypt="password")
    empty = pdfium.PdfDocument.new()
    empty.save(str(folder / "empty.pdf"))
    data = _pdf(tmp_path / "whole.pdf", PAGES).read_bytes()
    (folder / "truncated.pdf").write_bytes(data[: len(data) // 3])
    (folder / "notes.pdf").write_text("meeting notes, not a PDF")
    _pdf(folder / "poster.pdf", ["Huge"], size=(2000, 2000))  # 8333 x 8333 px at 300 dpi
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(folder), "--out", str(out), "--workers", "1",
                                         "--max-image-pixels", "20000000"])
    assert result.exit_code == 1
    records = {Path(r["path"]).name: r for r in read_records(out)}
    assert len(read_records(out)) == len(records) == 6  # one record each
    assert records["good.pdf"]["text"] == "Receipt 77" and records["good.pdf"]["error"] is None
    assert records["locked.pdf"]["error"].startswith("encrypted PDF")
    assert "no pages" in records["empty.pdf"]["error"]
    assert "corrupt PDF" in records["truncated.pdf"]["error"] and "corrupt PDF" in records["notes.pdf"]["error"]
    assert records["poster.pdf"]["page"] == 1 and "over the limit of 20,000,000" in records["poster.pdf"]["error"]
    assert "lower --dpi" in records["poster.pdf"]["error"]
    assert result.stderr.count("failed: ") == 5


def _shaded_pages(folder: Path, count: int) -> tuple[Path, Path]:
    """A PDF and a TIFF of `count` blank pages, page k shaded 20 * k grey levels darker than white."""
    shades = [255 - 20 * k for k in range(count)]
    canvas = Canvas(str(folder / "book.pdf"), pagesize=(72, 72))
    for shade in shades:
        canvas.setFillColorRGB(shade / 255, shade / 255, shade / 255)
        canvas.rect(0, 0, 72, 72, stroke=0, fill=1)
        canvas.showPage()
    canvas.save()
    pages = [Image.new("RGB", (40, 30), (shade,) * 3) for shade in shades]
    pages[0].save(folder / "book.tif", save_all=True, append_images=pages[1:])
    return folder / "book.pdf", folder / "book.tif"


def test_a_document_is_opened_once_for_all_its_pages(tmp_path, monkeypatch):
    """Reopening for every page made a 100,000-page PDF quadratic (pdfium reads the document's tables,
    Pillow walks a TIFF's page chain up to the page, each time): count the opens, not the time."""
    from PIL import Image as PILImage

    from vlground.io.documents import plan
    from vlground.io.sources import Source

    pdf, tif = _shaded_pages(tmp_path, 6)
    opened = []
    real_pdf, real_open = pdfium.PdfDocument, PILImage.open
    monkeypatch.setattr(pdfium, "PdfDocument", lambda path, *a, **k: (opened.append(str(path)), real_pdf(path, *a, **k))[1])
    monkeypatch.setattr(PILImage, "open", lambda path, *a, **k: (opened.append(str(path)), real_open(path, *a, **k))[1])
    for document in (pdf, tif):
        jobs = plan(Source(str(document)), PageSelection(), dpi=20)
        shades = [int(load_page(job).getpixel((5, 5))[0]) for job in jobs]
        assert shades == pytest.approx([255 - 20 * k for k in range(6)], abs=2)  # each page its own, in order
        assert opened.count(str(document)) == 1, opened
    _pdf(pdf, ["taller"], size=(72, 144))
    assert load_page(PageJob(Source(str(pdf)), 1, 1, 20)).size == (20, 40)  # a file changed since is opened again


def _open_here(path: Path) -> bool:
    """Whether this process holds `path` open (its file descriptors, as /proc lists them)."""
    fds = Path("/proc/self/fd")
    targets = []
    for fd in fds.iterdir():
        try:
            targets.append(Path(os.readlink(fd)))
        except OSError:
            continue
    return path.resolve() in targets


def test_a_run_leaves_no_document_open_behind_it(scans, tmp_path):
    """Pages are read from a document kept open between them; a run in a process that lives on (a
    notebook's) closes it at its end, whatever the last input was."""
    from vlground.jobs.ocr import OcrOptions, run_ocr

    for name in ("invoice.pdf", "fax.tif"):
        summary = run_ocr([str(scans / name)], tmp_path / f"{name}.jsonl", OcrOptions())
        assert summary.ok and summary.done >= 2
        assert not _open_here(scans / name), f"{name} is still open after the run"


def test_page_ranges_parse():
    assert parse_pages("1-3,7").pick(10) == [1, 2, 3, 7]
    assert parse_pages("5-").pick(7) == [5, 6, 7]
    assert PageSelection().pick(2) == [1, 2] and str(parse_pages("1-3,7")) == "1-3,7"
    assert str(parse_pages("5-")) == "5-" and str(parse_pages("2,5-")) == "2,5-"  # as given, in messages
    for wrong in ("0", "3-1", "a", "1,,2"):
        with pytest.raises(ValueError, match="--pages"):
            parse_pages(wrong)


def _line(text: str, x: float, y: float, width: float, height: float = 20, words=None) -> Detection:
    return text_line(text, box=(x, y, x + width, y + height), score=0.9, words=words or ())


def test_markdown_paragraphs_columns_and_rows():
    row_words = (text_line("Coffee", (10, 400, 80, 420)), text_line("3.50", (500, 400, 540, 420)))
    lines = [
        # left column: a paragraph of two full lines and a short last one, then another paragraph
        _line("The library opens at nine", 10, 10, 280), _line("every day of the week and", 10, 34, 282),
        _line("closes late.", 10, 58, 120), _line("Children's hour # 1 is *free*", 10, 120, 280),
        # right column
        _line("Parking behind", 320, 10, 260), _line("the building.", 320, 34, 120),
        # a table row below both columns
        _line("Coffee 3.50", 10, 400, 530, words=row_words), _line("Tea 2.00", 10, 424, 530,
                                                                   words=(text_line("Tea", (10, 424, 50, 444)), text_line("2.00", (500, 424, 540, 444)))),
    ]
    record = Record(path="notice.png", engine="ppocr", width=600, height=500, text="", detections=lines)
    assert to_markdown([record]) == (
        "The library opens at nine\nevery day of the week and\ncloses late.\n\n"
        "Children's hour # 1 is \\*free\\*\n\n"
        "Parking behind\nthe building.\n\n"
        "Coffee 3.50\\\nTea 2.00\n"
    )


def test_markdown_table_rows_render_as_rows(tmp_path):
    """A small table whose cells stand little more than a line height apart: rendered by a CommonMark
    reader, each row is a line of its own (a hard break after each), not one run-on paragraph."""
    from markdown_it import MarkdownIt

    rows = [("Bolts", "500", "0.12"), ("Nails", "750", "0.08"), ("Pipes", "900", "0.05")]
    canvas = Canvas(str(tmp_path / "parts.pdf"), pagesize=(220, 90))
    canvas.setFont("Helvetica", 10)
    for i, row in enumerate(rows):
        for x, cell in zip((20, 58, 88), row):
            canvas.drawString(x, 70 - 14 * i, cell)
    canvas.save()
    result = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path / "parts.pdf"), "--out", str(tmp_path / "r.jsonl"),
                                         "--workers", "1", "-f", "md"])
    assert result.exit_code == 0, result.stderr
    html = MarkdownIt("commonmark").render((tmp_path / "r" / "parts.pdf.md").read_text())
    paragraph = html[html.index("<p>") + 3 : html.index("</p>")]
    assert [line.strip() for line in paragraph.split("<br />")] == [" ".join(row) for row in rows], html


HOCR_TO_PDF = """
import sys
from ocrmypdf.hocrtransform import HocrTransform
HocrTransform(hocr_filename=sys.argv[1], dpi=72).to_pdf(out_filename=sys.argv[2], invisible_text=False, interword_spaces=True)
"""


def _ocrmypdf_python() -> str:
    """The interpreter OCRmyPDF runs on (Debian's ocrmypdf package: /usr/bin/python3)."""
    command = shutil.which("ocrmypdf")
    assert command, "OCRmyPDF is not installed: apt-get install ocrmypdf (as .ci/run does)"
    return Path(command).read_text(errors="replace").splitlines()[0].removeprefix("#!").split()[0]


def test_hocr_has_paragraphs_and_baselines_and_ocrmypdf_reads_it(tmp_path):
    """Tesseract's structure (ocr_carea > ocr_par > ocr_line > ocrx_word) with the line metrics
    readers use, checked against the ink, and OCRmyPDF's own hOCR transform turning it into a PDF
    whose text, read back with pdfium, is the record's."""
    prose = Document("columns", [[[("Shipping and handling", "left")], [("apply to every parcel", "left")], [("", "left")],
                                  [("Opening hours", "left")]]])
    render(prose, Style(font=FONT, size=36)).save(tmp_path / "notice.png")
    result = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path / "notice.png"), "--out", str(tmp_path / "r.jsonl"),
                                         "--workers", "1", "-f", "hocr"])
    assert result.exit_code == 0, result.stderr
    hocr = tmp_path / "r" / "notice.png.hocr"
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    root = ET.parse(hocr).getroot()
    areas = root.findall(".//h:div[@class='ocr_carea']", ns)
    assert [[[w.text for w in line.findall("h:span[@class='ocrx_word']", ns)] for line in area.findall("h:p/h:span", ns)]
            for area in areas] == [[["Shipping", "and", "handling"], ["apply", "to", "every", "parcel"]], [["Opening", "hours"]]]
    assert all(p.get("lang") == "en" for p in root.iter("{http://www.w3.org/1999/xhtml}p"))
    gray = np.asarray(Image.open(tmp_path / "notice.png").convert("L"))
    first = areas[0].find("h:p/h:span", ns)
    fields = dict(part.strip().split(" ", 1) for part in first.get("title").split(";"))
    x1, y1, x2, y2 = map(int, fields["bbox"].split())
    baseline = y2 + int(fields["baseline"].split()[1])
    rows = y1 + np.flatnonzero((gray[y1:y2, x1:x2] < 128).any(axis=1))
    shipping = [w for w in first.findall("h:span", ns) if w.text == "Shipping"][0]
    wx1, wy1, wx2, wy2 = map(int, shipping.get("title").split(";")[0].split()[1:])
    ink_s = y1 + np.flatnonzero((gray[y1:y2, wx1 : wx1 + (wx2 - wx1) // 8] < 128).any(axis=1))  # the "S": on the baseline
    assert abs(baseline - (ink_s[-1] + 1)) <= 2 and abs(y2 - (rows[-1] + 1)) <= 2  # "pp" and "g" reach below it
    assert int(fields["x_descenders"]) >= 5 and int(fields["x_size"]) == y2 - y1 and int(fields["x_ascenders"]) >= 5
    assert all(0 <= int(w.get("title").split("x_wconf ")[1]) <= 100 for w in root.findall(".//h:span[@class='ocrx_word']", ns))
    done = subprocess.run([_ocrmypdf_python(), "-c", HOCR_TO_PDF, str(hocr), str(tmp_path / "from_hocr.pdf")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    document = pdfium.PdfDocument(str(tmp_path / "from_hocr.pdf"))
    try:
        assert document[0].get_textpage().get_text_range().split() == prose.truth.split()
    finally:
        document.close()


def test_control_characters_keep_the_hocr_well_formed_and_a_line_break_never_starts_markdown():
    words = (text_line("a\x01b", (10, 10, 40, 30), score=0.9), text_line("# heading", (50, 10, 120, 30), score=0.9))
    record = Record(path="odd\x01name.png", engine="ppocr", width=200, height=100, text="a\x01b\n# heading",
                       detections=[text_line("a\x01b\n# heading", (10, 10, 120, 30), score=0.9, words=words)])
    root = ET.fromstring(to_hocr([record], "odd\x01name.png").encode("utf-8"))  # well-formed XML
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    assert root.find(".//h:title", ns).text == "odd\\x01name.png"  # shown as an escape, not dropped
    assert [w.text for w in root.findall(".//h:span[@class='ocrx_word']", ns)] == ["a\\x01b", "# heading"]
    markdown = to_markdown([record])
    assert not any(line.startswith("#") for line in markdown.splitlines()), markdown


def test_a_table_page_is_read_row_by_row(tmp_path):
    # Code, item, quantity, amount at 9 pt, as in benchmarks/bench_ocr_documents.py: the widest gutter
    # has rows wider than 8 line heights on both sides, as two columns of prose would.
    rows = [("1203", "review", "10", "81.04"), ("2893", "customer", "54", "727.75"), ("7364", "total", "75", "457.84"),
            ("8579", "notice", "11", "518.66"), ("9430", "warehouse", "40", "601.08")]
    canvas = Canvas(str(tmp_path / "table.pdf"), pagesize=(360, 110))
    canvas.setFont("Helvetica", 9)
    for i, row in enumerate(rows):
        for x, cell in zip((20, 94, 234, 304), row):
            canvas.drawString(x, 90 - 14 * i, cell)
    canvas.save()
    out = tmp_path / "t.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path / "table.pdf"), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.stderr
    (record,) = read_records(out)
    lines = record["text"].split("\n")
    assert len(lines) == len(rows)  # one line per row, not one per row and side of the gutter
    for line in lines:  # each line is most like its own row, cells left to right (a misread digit allowed)
        nearest = max(rows, key=lambda row: SequenceMatcher(None, line, " ".join(row)).ratio())
        assert lines.index(line) == rows.index(nearest) and SequenceMatcher(None, line, " ".join(nearest)).ratio() > 0.8


SMALL_PRINT_WORDS = ("invoice account balance delivery warehouse quarterly payment schedule customer order number "
                     "station platform library museum harbour council notice meeting review budget summary total").split()


def _small_print_pdf(path: Path, lines: int = 30) -> str:
    """An A5 page of 8 pt lines, each about 25 times as wide as high; its text."""
    rng = random.Random(3)
    text = [" ".join(rng.choice(SMALL_PRINT_WORDS) for _ in range(8)).capitalize() + "." for _ in range(lines)]
    canvas = Canvas(str(path), pagesize=(420, 595))
    canvas.setFont("Helvetica", 8)
    for row, line in enumerate(text):
        canvas.drawString(36, 555 - 10.5 * row, line)
    canvas.save()
    return "\n".join(text)


@pytest.mark.parametrize("engine", ["ppocr", pytest.param("ppocr-v4", marks=pytest.mark.skipif(
    sys.version_info >= (3, 13), reason="rapidocr-onnxruntime 1.4 has no release for Python 3.13"))])
def test_long_lines_of_small_print_are_not_flipped(tmp_path, engine):
    """PP-OCR's angle classifier took many such lines for upside down and garbled them; --angle-cls
    now reads each line both ways up and keeps the surer reading, which leaves them right."""
    truth = _small_print_pdf(tmp_path / "terms.pdf")
    rates = {}
    for flags in ([], ["--angle-cls"]):
        out = tmp_path / f"{len(flags)}.jsonl"
        result = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path / "terms.pdf"), "--out", str(out), "--workers", "1",
                                             "--engine", engine, *flags])
        assert result.exit_code == 0, result.stderr
        (record,) = read_records(out)
        rates[bool(flags)] = pooled_rates([edit_counts(truth, record["text"])])["cer"]
    assert rates[False] < 0.01 and rates[True] < 0.01, rates
