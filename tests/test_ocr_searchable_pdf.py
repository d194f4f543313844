"""`vlground ocr --format pdf` on a PDF keeps the original pages: the text layer goes on top of them,
their images and drawings keep their bytes, the font is embedded and glyphless, each word sits on its
ink (with a crop box offset, a /Rotate page and a page the orientation step turned), the input is
untouched and the file grows by little more than the text."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import io
from pathlib import Path

import numpy as np
import pikepdf
import pypdfium2 as pdfium
import pytest
from PIL import Image
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas
from typer.testing import CliRunner

from ocr_app import ocr_app, read_records
from test_ocr_documents import _check_searchable_pdf
from vlground.eval.ocr import edit_counts, pooled_rates
from vlground.io.images import load_image
from vlground.ocr.synthetic import Style, make_document, render
from vlground.ocr.text_layer import glyphless_font

FONT = str(Path(__file__).parent / "fonts" / "DejaVuSansCondensed-Bold.ttf")
DOCS = [make_document("label", 3), make_document("receipt", 5), make_document("sign", 8), make_document("sign", 11)]
CROP = (40, 30)  # page 2's crop box starts this far into its media box (points)


def _scan(path: Path) -> tuple[Path, list[str]]:
    """A 4-page scan-like PDF (page images at 300 dpi, no text of its own): 1 a JPEG page; 2 a
    lossless image, a drawn rule and a block cut off by a crop box offset by CROP; 3 a page
    stored sideways and shown upright by /Rotate 90; 4 an image whose text is turned 90 degrees."""
    style = Style(font=FONT, size=40)
    images = [render(doc, style) for doc in DOCS]
    images[3] = images[3].rotate(90, expand=True)
    canvas = Canvas(str(path), pageCompression=1)
    for number, image in enumerate(images, 1):
        width, height = image.width * 72 / 300, image.height * 72 / 300
        encoded = io.BytesIO()
        image.save(encoded, format="PNG" if number == 2 else "JPEG", quality=80)
        reader = ImageReader(io.BytesIO(encoded.getvalue()))
        if number == 2:
            canvas.setPageSize((width + 2 * CROP[0], height + 2 * CROP[1]))
            canvas.drawImage(reader, CROP[0], CROP[1], width, height)
            canvas.line(CROP[0], CROP[1] - 2, CROP[0] + width, CROP[1] - 2)  # vector content, below the image
            canvas.rect(4, 4, CROP[0] - 8, CROP[1] - 8, fill=1)  # ink outside the crop box: not shown
        elif number == 3:
            canvas.setPageSize((height, width))  # unrotated: the image's top along the page's left edge
            canvas.translate(height, 0)
            canvas.rotate(90)
            canvas.drawImage(reader, 0, 0, width, height)
        else:
            canvas.setPageSize((width, height))
            canvas.drawImage(reader, 0, 0, width, height)
        canvas.showPage()
    canvas.save()
    pdf = pikepdf.open(path, allow_overwriting_input=True)
    page = pdf.pages[1]
    x1, y1, x2, y2 = (float(v) for v in page.mediabox)
    page.obj.CropBox = pikepdf.Array([x1 + CROP[0], y1 + CROP[1], x2 - CROP[0], y2 - CROP[1]])
    pdf.pages[2].obj.Rotate = 90
    pdf.save(path)
    return path, [doc.truth for doc in DOCS]


@pytest.fixture(scope="module")
def searchable(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan")
    scan, truths = _scan(folder / "scan.pdf")
    before = hashlib.sha256(scan.read_bytes()).hexdigest()
    out = folder / "out" / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(scan), "--out", str(out), "--workers", "1", "-f", "pdf"])
    assert result.exit_code == 0, result.stderr
    assert hashlib.sha256(scan.read_bytes()).hexdigest() == before  # the input is left alone
    records = sorted(read_records(out), key=lambda r: r["page"])
    return scan, out.parent / "r" / "scan.pdf.pdf", records, truths


def test_the_text_layer_reads_back_and_each_word_sits_on_its_ink(searchable):
    scan, made, records, truths = searchable
    assert [r.get("rotation", 0) for r in records] == [0, 0, 0, 90]  # page 4 was turned to be read
    document = pdfium.PdfDocument(str(made))
    layer = [document[n].get_textpage().get_text_range() for n in range(len(document))]
    read = pooled_rates([edit_counts(truth, record["text"]) for record, truth in zip(records, truths)])
    found = pooled_rates([edit_counts(truth, text) for text, truth in zip(layer, truths)])
    assert found["cer"] == read["cer"] < 0.02  # what the PDF gives back is what was read
    _check_searchable_pdf(made, records)  # text = the records' text; page sizes; every word's box on its ink


@pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript is not installed (Debian: apt-get install ghostscript)")
def test_a_reader_that_gathers_lines_by_baseline_reads_each_line_whole(searchable):
    """Ghostscript's text extraction puts words on one line only when they share a baseline: the
    words of a line do (each spans its line's ink top to bottom). Text running up the page (page 4)
    it writes a word a line whichever way it is placed, so that page is left out."""
    scan, made, records, truths = searchable
    done = subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-sDEVICE=txtwrite", "-sOutputFile=-", str(made)],
                          capture_output=True, text=True, timeout=120, check=True)
    found = {" ".join(line.split()) for line in done.stdout.splitlines()}
    for record in records[:3]:
        for line in record["lines"]:
            assert " ".join(line["text"].split()) in found, (line["text"], sorted(found))


def _images(resources: pikepdf.Dictionary) -> list[bytes]:
    """The encoded bytes of every image a page's resources draw, in form XObjects too."""
    found = []
    for xobject in resources.get("/XObject", {}).values():
        if xobject.Subtype == "/Image":
            found.append(xobject.read_raw_bytes())
        elif "/Resources" in xobject:
            found += _images(xobject.Resources)
    return sorted(found)


def test_the_original_pages_keep_their_images_and_drawings(searchable):
    scan, made, records, truths = searchable
    with pikepdf.open(scan) as original, pikepdf.open(made) as output:
        assert len(output.pages) == len(original.pages)
        for before, after in zip(original.pages, output.pages):
            assert _images(after.resources) == _images(before.resources) and _images(before.resources)  # the same encoded image bytes
            old = [s.read_raw_bytes() for s in _streams(before)]
            new = [s.read_raw_bytes() for s in _streams(after)]
            assert new[1:1 + len(old)] == old  # the page's content streams as they were, between q and Q
            for key in ("/MediaBox", "/CropBox", "/Rotate"):
                assert repr(after.obj.get(key)) == repr(before.obj.get(key))


def _streams(page: pikepdf.Page) -> list[pikepdf.Stream]:
    contents = page.obj.Contents
    return list(contents) if isinstance(contents, pikepdf.Array) else [contents]


def test_the_font_is_embedded_glyphless_and_the_text_invisible(searchable):
    scan, made, records, truths = searchable
    with pikepdf.open(made) as output:
        for page in output.pages:
            used, font = set(), None  # the fonts text is shown in
            for operands, op in pikepdf.parse_content_stream(page):
                if str(op) == "Tf":
                    font = page.resources.Font[str(operands[0])]
                elif str(op) == "Tj":
                    used.add(font.objgen)
                elif str(op) == "Tr":
                    assert int(operands[0]) == 3  # neither filled nor stroked
            assert used
            for font in (output.get_object(objgen) for objgen in used):
                descendant = font.DescendantFonts[0] if font.Subtype == "/Type0" else font
                descriptor = descendant.FontDescriptor
                embedded = [k for k in ("/FontFile", "/FontFile2", "/FontFile3") if k in descriptor]
                assert embedded, f"font {font.BaseFont} is not embedded"
                assert descriptor[embedded[0]].read_bytes() == glyphless_font()
        painted = io.BytesIO()  # the same text filled (render mode 0): the glyph has nothing to paint either
        for page in output.pages:
            operations = [([0], op) if str(op) == "Tr" else (operands, op) for operands, op in pikepdf.parse_content_stream(page)]
            page.obj.Contents = output.make_stream(pikepdf.unparse_content_stream(operations))
        output.save(painted)
    original = pdfium.PdfDocument(str(scan))
    for document in (pdfium.PdfDocument(str(made)), pdfium.PdfDocument(painted.getvalue())):
        for number in range(len(original)):  # the page looks as the original does: the text draws nothing
            shown = document[number].render(scale=2).to_pil().convert("L")
            assert shown.tobytes() == original[number].render(scale=2).to_pil().convert("L").tobytes()


def test_the_file_grows_by_little_more_than_its_text(searchable):
    scan, made, records, truths = searchable
    text = sum(len(r["text"].encode("utf-8")) for r in records)
    assert made.stat().st_size <= 1.2 * (scan.stat().st_size + text)


def test_pages_not_read_are_kept_without_a_layer(searchable, tmp_path):
    scan, _, _, truths = searchable
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(scan), "--out", str(out), "--workers", "1", "-f", "pdf", "--pages", "2"])
    assert result.exit_code == 0, result.stderr
    made = pdfium.PdfDocument(str(tmp_path / "r" / "scan.pdf.pdf"))
    assert [" ".join(made[n].get_textpage().get_text_range().split()) for n in range(4)] == ["", " ".join(truths[1].split()), "", ""]
    with pikepdf.open(scan) as original, pikepdf.open(tmp_path / "r" / "scan.pdf.pdf") as output:
        assert [_images(p.resources) for p in output.pages] == [_images(p.resources) for p in original.pages]


def test_an_image_keeps_its_own_encoding_and_exif_turn(tmp_path):
    """A JPEG goes into the PDF as its own bytes, its EXIF orientation as the page's /Rotate, so the
    page shows what was read (a mirroring orientation, which a page cannot show, is embedded as it
    was read); a PNG with an alpha channel is kept losslessly (img2pdf adds a soft mask). Both get the text layer on their ink, at little more than the input's size (the layer's
    font and maps cost about 3 KB a file, which a 20 KB image can carry)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    upright = render(DOCS[2], Style(font=FONT, size=60, noise=8))  # a photo's noise: a 30 KB JPEG
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    upright.rotate(90, expand=True).save(folder / "sign.jpg", quality=90, exif=exif)
    exif[0x0112] = 2  # shown mirrored, which no page /Rotate can show: embedded as it was read
    upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "mirror.jpg", quality=90, exif=exif)
    label = render(DOCS[0], Style(font=FONT, size=40)).convert("RGBA")
    label.putalpha(255)
    label.save(folder / "label.png")
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(folder), "--out", str(out), "--workers", "1", "-f", "pdf"])
    assert result.exit_code == 0, result.stderr
    records = {Path(r["path"]).name: r for r in read_records(out)}
    assert records["sign.jpg"]["width"] == upright.width and records["sign.jpg"]["text"] == DOCS[2].truth
    for name in ("sign.jpg", "mirror.jpg", "label.png"):
        made = tmp_path / "r" / f"{name}.pdf"
        _check_searchable_pdf(made, [records[name]])
        page = pdfium.PdfDocument(str(made))[0]
        shown = page.render(scale=records[name]["width"] / page.get_size()[0]).to_pil().convert("L")
        read = load_image(str(folder / name)).convert("L").resize(shown.size)
        assert np.abs(np.asarray(shown, dtype=int) - np.asarray(read, dtype=int)).mean() < 3  # the page shows what was read
        if name == "mirror.jpg":
            continue  # embedded again as PNG
        text = len(records[name]["text"].encode("utf-8"))
        assert made.stat().st_size <= 1.2 * ((folder / name).stat().st_size + text)
    with pikepdf.open(tmp_path / "r" / "sign.jpg.pdf") as pdf:
        assert int(pdf.pages[0].obj.get("/Rotate", 0)) == 90
        assert _images(pdf.pages[0].resources) == [(folder / "sign.jpg").read_bytes()]


def test_no_export_is_written_over_an_input(searchable, tmp_path):
    """a.pdf's export in its own folder would be a.pdf.pdf, which is another input here: that input
    is left as it was, and a.pdf's record says why its export is missing."""
    scan = searchable[0]
    folder = tmp_path / "d"
    folder.mkdir()
    shutil.copy(scan, folder / "a.pdf.pdf")
    shutil.copy(scan, folder / "a.pdf")
    before = (folder / "a.pdf.pdf").read_bytes()
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(folder / "a.pdf"), str(folder / "a.pdf.pdf"), "--out", str(out),
                                            "--workers", "1", "-f", "pdf", "--export-dir", str(folder), "--pages", "1"])
    assert result.exit_code == 1
    assert (folder / "a.pdf.pdf").read_bytes() == before
    errors = {Path(r["path"]).name: r["error"] for r in read_records(out)}
    assert "a.pdf.pdf is one of the inputs; writing it would destroy it: choose another --export-dir" in errors["a.pdf"]
    assert errors["a.pdf.pdf"] is None and (folder / "a.pdf.pdf.pdf").exists()
