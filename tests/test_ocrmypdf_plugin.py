"""vlground as OCRmyPDF's OCR engine, run for real: Debian's `ocrmypdf --plugin vlground.ocrmypdf`
(its own /usr/bin/python3, which has no numpy: the plugin runs the `vlground` command) on a scan-like
PDF. The output is PDF/A made by vlground's reading (its creator tag), its text reads back at the CER
of `vlground ocr`, every page keeps its images pixel for pixel, and --rotate-pages turns the page
whose text was turned, the right way."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pikepdf
import pypdfium2 as pdfium
import pytest
from pikepdf import PdfImage
from typer.testing import CliRunner

import vlground
from ocr_app import ocr_app, read_records
from test_ocr_searchable_pdf import _scan
from vlground.eval.ocr import edit_counts, pooled_rates

pytestmark = pytest.mark.skipif(shutil.which("ocrmypdf") is None,
                                reason="OCRmyPDF is not installed (Debian: apt-get install ocrmypdf; .ci/run installs it)")
VLGROUND = Path(sys.executable).parent / "vlground"  # the command of this environment


@pytest.fixture(scope="module")
def through_ocrmypdf(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ocrmypdf")
    scan, truths = _scan(folder / "scan.pdf")
    made = folder / "out.pdf"
    # Debian's ocrmypdf runs its own Python: it finds the plugin module through PYTHONPATH.
    env = {**os.environ, "PYTHONPATH": str(Path(vlground.__file__).parent.parent)}
    done = subprocess.run(["ocrmypdf", "--plugin", "vlground.ocrmypdf", "--vlground-command", str(VLGROUND),
                           "--rotate-pages", "--jobs", "2", str(scan), str(made)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return scan, made, truths


def test_ocrmypdf_makes_pdfa_from_vlgrounds_reading(through_ocrmypdf, tmp_path):
    scan, made, truths = through_ocrmypdf
    with pikepdf.open(made) as pdf:
        assert f"vlground {vlground.__version__}" in str(pdf.docinfo.get("/Creator", ""))  # vlground's engine read it
        with pdf.open_metadata() as xmp:
            assert xmp.pdfa_status == "2B"
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(scan), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.stderr
    read = pooled_rates([edit_counts(t, r["text"]) for t, r in zip(truths, sorted(read_records(out), key=lambda r: r["page"]))])
    document = pdfium.PdfDocument(str(made))
    layer = pooled_rates([edit_counts(t, document[n].get_textpage().get_text_range()) for n, t in enumerate(truths)])
    assert layer["cer"] == read["cer"] < 0.02


def _images(resources) -> list[np.ndarray]:
    found = []
    for xobject in resources.get("/XObject", {}).values():
        if xobject.Subtype == "/Image":
            found.append(np.asarray(PdfImage(xobject).as_pil_image().convert("RGB")))
        elif "/Resources" in xobject:
            found += _images(xobject.Resources)
    return found


def test_the_pages_keep_their_images_and_the_turned_page_is_turned_upright(through_ocrmypdf):
    scan, made, truths = through_ocrmypdf
    with pikepdf.open(scan) as original, pikepdf.open(made) as output:
        assert len(output.pages) == len(original.pages)
        for before, after in zip(original.pages, output.pages):
            old, new = _images(before.resources), _images(after.resources)
            assert len(new) == len(old) == 1 and np.array_equal(new[0], old[0])  # the same pixels, not a re-rendering
    shown = pdfium.PdfDocument(str(made))[3].render(scale=1).to_pil().convert("L")
    stored = pdfium.PdfDocument(str(scan))[3].render(scale=1).to_pil().convert("L")
    assert shown.width > shown.height  # page 4's line of text now runs across the page ...
    difference = {turn: np.abs(np.asarray(shown, dtype=int) - np.asarray(stored.rotate(turn, expand=True).resize(shown.size), dtype=int)).mean()
                  for turn in (-90, 90)}
    assert difference[-90] < difference[90] / 2  # ... turned clockwise: upright, not upside down


def test_a_page_not_read_in_time_stops_the_run_with_the_reason(through_ocrmypdf, tmp_path):
    scan = through_ocrmypdf[0]
    env = {**os.environ, "PYTHONPATH": str(Path(vlground.__file__).parent.parent)}
    done = subprocess.run(["ocrmypdf", "--plugin", "vlground.ocrmypdf", "--vlground-command", str(VLGROUND),
                           "--vlground-timeout", "0.1", "--pages", "1", str(scan), str(tmp_path / "out.pdf")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0 and not (tmp_path / "out.pdf").exists()
    assert "did not read" in done.stderr and "(--vlground-timeout)" in done.stderr, done.stderr[-2000:]
