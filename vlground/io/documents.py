"""Documents: PDFs and multi-page TIFFs, read page by page.

A document gives one OCR input per page (`PageJob`, 1-based `page` and the document's `pages`); any
other file is one input. PDFs are rendered with pypdfium2 at `dpi`: the default, 300, is the
resolution OCR engines are tuned for (10 pt text is 42 px high, inside the recognizer's best range;
at 200 dpi 8 pt print drops to 22 px and loses its small characters). Every page goes through the
image rules of `vlground.io.images` (pixel limit checked before a page is rendered or decoded, EXIF /
TIFF orientation, 8-bit RGB).

A document is opened once and kept open while its pages are read (`held_document`): reopening it
for every page made a long one quadratic (pdfium reads the document's tables again, Pillow walks a
TIFF's chain of pages up to the page), 18 hours of overhead on a 100,000-page PDF.

What makes a whole document unreadable (encrypted, no pages, not a PDF after all, corrupt) is a
`DocumentError`: one error record for the document. What makes one page unreadable (over the pixel
limit, a broken page) is an `ImageLoadError` for that page alone."""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

from vlground.io.images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError, count_frames, open_frames, read_frame
from vlground.io.sources import Source, is_url, load

DEFAULT_DPI = 300
MAX_DPI = 1200
_PDF_MAGIC = b"%PDF-"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


class DocumentError(Exception):
    """A document that cannot be read at all; `str(error)` says why and what to do."""


@dataclass(frozen=True)
class PageJob:
    """One OCR input: `source` whole (`page` None), or page `page` (1-based) of a `pages`-page
    document; `dpi` is set for PDF pages."""

    source: Source
    page: int | None = None
    pages: int | None = None
    dpi: int | None = None


@dataclass(frozen=True)
class PageSelection:
    """The pages `--pages` asks for ("1-3,7"); empty `ranges` means all."""

    ranges: tuple[tuple[int, int], ...] = ()

    def pick(self, pages: int) -> list[int]:
        if not self.ranges:
            return list(range(1, pages + 1))
        return [p for p in range(1, pages + 1) if any(lo <= p <= hi for lo, hi in self.ranges)]

    def __str__(self) -> str:
        return ",".join(str(lo) if lo == hi else f"{lo}-" if hi == TO_THE_END else f"{lo}-{hi}"
                        for lo, hi in self.ranges) or "all"


TO_THE_END = 10**9  # the last page of "5-": past any document's page count


def parse_pages(spec: str) -> PageSelection:
    """"1-3,7" -> pages 1, 2, 3 and 7; "5-" -> from 5 to the end. ValueError saying what is wrong."""
    ranges = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:(-)\s*(\d*)\s*)?", part)
        if not match:
            raise ValueError(f"--pages takes page numbers and ranges such as 1-3,7 or 5-; {part.strip()!r} is neither")
        low = int(match.group(1))
        high = low if not match.group(2) else int(match.group(3)) if match.group(3) else TO_THE_END
        if low < 1 or high < low:
            raise ValueError(f"--pages: {part.strip()!r} is not a range of pages counted from 1")
        ranges.append((low, high))
    return PageSelection(tuple(ranges))


def _kind(source: Source) -> str:
    """"pdf", "tiff" or "image", by the file's first bytes (a .pdf that is no PDF is a corrupt PDF)."""
    if source.error is not None or source.data is not None or is_url(source.location):
        return "image"
    try:
        with open(source.location, "rb") as handle:
            head = handle.read(1024)
    except OSError:
        return "image"  # the image loader says what is wrong with it
    if _PDF_MAGIC in head or source.location.lower().endswith(".pdf"):
        return "pdf"
    return "tiff" if head[:4] in _TIFF_MAGICS else "image"


_held_lock = threading.RLock()  # pdfium is not thread-safe, nor is a Pillow file's current page
_held: tuple[tuple, object] | None = None  # (which file, as it was when opened; the open document)


@contextmanager
def held_document(path: str, kind: str) -> Iterator[object]:
    """The document at `path` open (a pypdfium2 PdfDocument for kind "pdf", a Pillow image for
    "tiff"), for the length of the block, under a lock. It stays open for the next call: one
    document per process is kept, opened again only when another document is asked for or the file
    has changed since (another size, time or inode). Raises DocumentError (PDF) or ImageLoadError."""
    global _held
    with _held_lock:
        try:
            stat = os.stat(path)
        except OSError as error:
            raise DocumentError(f"cannot read the file ({error.strerror or error})") from None
        key = (os.getpid(), kind, path, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if _held is None or _held[0] != key:
            close_held_document()
            _held = (key, _open_pdf(path) if kind == "pdf" else open_frames(path))
        try:
            yield _held[1]
        except BaseException:
            if kind != "pdf":  # a failed seek leaves Pillow's reader in doubt: start afresh next time
                close_held_document()
            raise


def close_held_document() -> None:
    """Close the document `held_document` keeps open, if any."""
    global _held
    with _held_lock:
        if _held is not None:
            held, _held = _held, None
            if held[0][0] == os.getpid():  # a forked child leaves its parent's document alone
                held[1].close()


@contextmanager
def documents_closed_after() -> Iterator[None]:
    """A block (a whole run) after which `held_document` keeps no document open: in a process that
    lives on, a notebook's, the run's last file is not left open."""
    try:
        yield
    finally:
        close_held_document()


def _open_pdf(path: str):
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(path)
    except pdfium.PdfiumError as error:
        text, raw = str(error), _raw(path)
        if re.search(rb"/Type\s*/Pages\b[^>]*/Count\s+0\b|/Count\s+0\b[^>]*/Type\s*/Pages\b", raw):
            raise DocumentError("the PDF has no pages") from None  # pdfium refuses such a file, with odd codes
        if "password" in text.lower() and b"/Encrypt" in raw:
            raise DocumentError("encrypted PDF: it needs a password, which vlground does not take; "
                                "decrypt it first (for example qpdf --decrypt in.pdf out.pdf)") from None
        raise DocumentError(f"truncated or corrupt PDF, or not a PDF at all ({text})") from None
    except OSError as error:
        raise DocumentError(f"cannot read the file ({error.strerror or error})") from None


def _raw(path: str) -> bytes:
    """The file's bytes, to tell why pdfium refused it (encryption, an empty page tree)."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def plan(source: Source, selection: PageSelection, dpi: int = DEFAULT_DPI) -> list[PageJob]:
    """The inputs `source` gives: one for an image (or any file the image loader will judge), one
    per selected page for a document. Raises DocumentError for a document that cannot be read, or
    whose pages `selection` misses entirely."""
    kind = _kind(source)
    if kind == "image":
        return [PageJob(source)]
    try:
        with held_document(source.location, kind) as document:
            pages = len(document) if kind == "pdf" else count_frames(document, source.location)
    except ImageLoadError as error:
        raise DocumentError(error.reason) from None
    if kind == "tiff":
        if pages == 1:
            return [PageJob(source)]  # a single-page TIFF is an image
    if pages == 0:
        raise DocumentError("the PDF has no pages")
    picked = selection.pick(pages)
    if not picked:
        raise DocumentError(f"--pages {selection} selects none of this document's {pages} pages")
    return [PageJob(source, page, pages, dpi if kind == "pdf" else None) for page in picked]


def load_page(job: PageJob, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """The RGB image of one input. Raises ImageLoadError naming the file (and page)."""
    if job.page is None:
        return load(job.source, max_pixels=max_pixels)
    name = f"{job.source.name} page {job.page}"
    try:
        with held_document(job.source.location, "pdf" if job.dpi is not None else "tiff") as document:
            if job.dpi is None:
                return read_frame(document, job.source.location, job.page - 1, max_pixels=max_pixels)
            return _render_pdf_page(document, job, name, max_pixels)
    except DocumentError as error:
        raise ImageLoadError(name, str(error)) from None


def _render_pdf_page(document, job: PageJob, name: str, max_pixels: int | None) -> Image.Image:
    page = None
    try:
        page = document[job.page - 1]
        width_pt, height_pt = page.get_size()
        size = (round(width_pt * job.dpi / 72), round(height_pt * job.dpi / 72))
        if max_pixels is not None and size[0] * size[1] > max_pixels:
            raise ImageLoadError(name, f"at {job.dpi} dpi this page is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, "
                                 f"over the limit of {max_pixels:,}: lower --dpi or raise --max-image-pixels")
        if size[0] < 1 or size[1] < 1:
            raise ImageLoadError(name, f"the page has no area ({width_pt:g} x {height_pt:g} pt)")
        image = page.render(scale=job.dpi / 72, fill_color=(255, 255, 255, 255)).to_pil().convert("RGB")
    except ImageLoadError:
        raise
    except Exception as error:  # pdfium reports a broken page in several types
        raise ImageLoadError(name, f"cannot render this page ({type(error).__name__}: {error})") from None
    finally:
        if page is not None:
            page.close()  # the document stays open for the next page; this page's memory need not
    return image
