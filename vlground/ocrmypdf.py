"""vlground as an OCR engine of OCRmyPDF: `ocrmypdf --plugin vlground.ocrmypdf in.pdf out.pdf`.

OCRmyPDF keeps doing what it does with the PDF (PDF/A, optimisation, --rotate-pages, --deskew, page
selection, its own text layer from hOCR); vlground reads each page image it hands over. The engine
runs the `vlground ocr` command on the page, as OCRmyPDF's own Tesseract engine runs `tesseract`:
OCRmyPDF is often a system package with its own Python (Debian's runs /usr/bin/python3, without
numpy or onnxruntime), so this module imports nothing but the standard library and OCRmyPDF, and
can be loaded by file name too: `ocrmypdf --plugin /path/to/vlground/ocrmypdf.py`.

    --vlground-command CMD   the vlground executable (default: `vlground` on PATH)
    --vlground-args ARGS     more arguments for `vlground ocr` (for example "--angle-cls")
    --vlground-timeout S     give up on a page after S seconds (default 600)

The page's hOCR (vlground's, with paragraphs, baselines and font metrics) goes to OCRmyPDF's hOCR
renderer (`--pdf-renderer hocr`, chosen when the renderer is left at auto); the sandwich renderer
needs a text-only PDF from the engine and is refused. `--rotate-pages` takes each page's rotation
from vlground's orientation step (its record's `rotation`, the clockwise turn that makes the page
upright, which OCRmyPDF counts as an orientation of 360 minus that): confident unless the record
warns that the orientation is uncertain. Written for OCRmyPDF 14 (Debian 12's) and its plugin
interface (pluginspec: add_options, check_options, get_ocr_engine, OcrEngine); it also runs under
OCRmyPDF 17, whose options are a pydantic model (plugin options are read there, never assigned)."""
from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from ocrmypdf import hookimpl
from ocrmypdf.exceptions import BadArgsError, MissingDependencyError, SubprocessOutputError
from ocrmypdf.pluginspec import OcrEngine, OrientationConfidence

log = logging.getLogger(__name__)

# OCRmyPDF's confidence scale runs 0-15; it turns a page when the engine's confidence reaches
# --rotate-pages-threshold (14 by default).
CONFIDENT, UNSURE = 15.0, 0.0
# The languages `-l` may name: the built-in recognizer reads English and Chinese.
LANGUAGES = {"eng", "chi_sim"}


@hookimpl
def add_options(parser):
    group = parser.add_argument_group("vlground", "OCR with vlground (the vlground.ocrmypdf plugin)")
    group.add_argument("--vlground-command", metavar="CMD", default=os.environ.get("VLGROUND", "vlground"),
                       help="The vlground executable (default: $VLGROUND, else vlground on PATH).")
    group.add_argument("--vlground-args", metavar="ARGS", default="",
                       help='More arguments for "vlground ocr", in one string (for example "--angle-cls").')
    group.add_argument("--vlground-timeout", metavar="SECONDS", type=float, default=600.0,
                       help="Give up on a page that vlground has not read in this time (default 600).")


def _command(options) -> str:
    """The vlground executable --vlground-command names, found on PATH. MissingDependencyError if not."""
    command = shutil.which(options.vlground_command)
    if command is None:
        raise MissingDependencyError(
            f"the vlground command {options.vlground_command!r} was not found: pip install vlground, "
            f"or give its path with --vlground-command")
    return command


@hookimpl
def check_options(options):
    _command(options)
    if options.pdf_renderer == "sandwich":
        raise BadArgsError("vlground gives OCRmyPDF hOCR: use --pdf-renderer hocr (or leave it at auto)")
    if options.pdf_renderer == "auto":
        options.pdf_renderer = "hocr"


def _read(input_file: Path, options, formats: tuple[str, ...]) -> tuple[dict, dict[str, Path], Path]:
    """Run `vlground ocr` on one page image: its record, the exports of `formats` and the folder
    they are in (the caller removes it). SubprocessOutputError when vlground fails, cannot read the
    page or takes longer than --vlground-timeout."""
    folder = Path(tempfile.mkdtemp(prefix="vlground-ocrmypdf-"))
    try:
        out = folder / "records.jsonl"
        flags = [f"--format={fmt}" for fmt in formats] + (["--export-dir", str(folder / "exports")] if formats else [])
        command = [_command(options), "ocr", str(input_file), "--out", str(out), "--workers", "1", "--quiet",
                   *flags, *shlex.split(options.vlground_args)]
        log.debug("running %s", shlex.join(command))
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=options.vlground_timeout)
        except subprocess.TimeoutExpired:
            raise SubprocessOutputError(f"vlground did not read {input_file.name} in {options.vlground_timeout:g} s "
                                        "(--vlground-timeout)") from None
        records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
        if done.returncode != 0 or len(records) != 1 or records[0].get("error"):
            reason = (records[0].get("error") if len(records) == 1 else None) or done.stderr.strip() or f"exit status {done.returncode}"
            raise SubprocessOutputError(f"vlground could not read {input_file.name}: {reason}")
        return records[0], {fmt: next((folder / "exports").rglob(f"*.{fmt}")) for fmt in formats}, folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


class VlgroundOcrEngine(OcrEngine):
    """OCRmyPDF's engine interface, answered by the `vlground ocr` command."""

    @staticmethod
    def version(command: str | None = None):
        """The version `command --version` reports (default: $VLGROUND, else vlground on PATH)."""
        command = command or shutil.which(os.environ.get("VLGROUND", "vlground")) or "vlground"
        try:
            done = subprocess.run([command, "--version"], capture_output=True, text=True, check=False, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return done.stdout.split()[-1] if done.returncode == 0 and done.stdout.split() else "unknown"

    @staticmethod
    def creator_tag(options):
        return f"vlground {VlgroundOcrEngine.version(_command(options))}"

    def __str__(self):
        return f"vlground {self.version()}"

    @staticmethod
    def languages(options):
        return LANGUAGES

    @staticmethod
    def get_orientation(input_file, options):
        record, _, folder = _read(Path(input_file), options, ())
        shutil.rmtree(folder, ignore_errors=True)
        unsure = any("orientation uncertain" in warning for warning in record.get("warnings") or ())
        # vlground's rotation is the clockwise turn that made the page upright (Tesseract's OSD "Rotate");
        # OCRmyPDF's angle is the page's orientation (Tesseract's "Orientation in degrees"): the other way round.
        angle = -int(record.get("rotation") or 0) % 360
        return OrientationConfidence(angle=angle, confidence=UNSURE if unsure else CONFIDENT)

    @staticmethod
    def generate_hocr(input_file, output_hocr, output_text, options):
        _, exports, folder = _read(Path(input_file), options, ("hocr", "txt"))
        try:
            shutil.copyfile(exports["hocr"], output_hocr)
            shutil.copyfile(exports["txt"], output_text)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def generate_pdf(input_file, output_pdf, output_text, options):
        raise BadArgsError("vlground gives OCRmyPDF hOCR: use --pdf-renderer hocr (or leave it at auto)")


@hookimpl
def get_ocr_engine():
    return VlgroundOcrEngine()
