"""Writing each input's exports (`--format`, `--txt-dir`) once all of its pages have records.

An export goes under its folder at the input's place below the inputs' common folder, with the
format's suffix appended to the full name (a/scan.pdf -> DIR/a/scan.pdf.hocr, photo.jpg ->
DIR/photo.jpg.txt, so photo.png cannot collide with it); a URL goes under its host and path, stdin
as "stdin"; an input whose place an earlier input has taken gets a digest of its name appended
(`Exporter.expect`). Every export is written atomically (a kill leaves the old file or the new one)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlsplit

from vlground.core.records import Record
from vlground.io.documents import PageJob, load_page
from vlground.io.sink import OutputIsInputError, escape_path
from vlground.io.sources import STDIN, Source, Sources, absolute_name, is_pyarrow_uri, is_url
from vlground.jobs.writers import get_writer


def export_name(location: str, root: str) -> str:
    """The place of the input at `location` below an export folder, without the format's suffix
    (see the module docstring)."""
    if location == STDIN:
        return "stdin"
    if is_url(location):
        parts = urlsplit(location)
        return os.path.join(parts.netloc, *[p for p in parts.path.split("/") if p not in ("", ".", "..")]) or "download"
    return os.path.relpath(os.path.abspath(location), root)


def _input_bytes(source: Source) -> bytes | None:
    """The input's own bytes (a local file, or stdin's), for the searchable PDF that keeps the
    input's pages or encoded image; None for a URL (its image is encoded again). OSError when the
    file cannot be read again."""
    if source.data is not None:
        return source.data
    if is_url(source.location) or is_pyarrow_uri(source.location):
        return None
    with open(source.location, "rb") as handle:
        return handle.read()


class Exporter:
    """Holds which records make up each input (`expect`) and writes the input's exports when the
    last of them is in (`record_done`). `exports` are (format, folder) pairs; `root` the folder the
    inputs' places are mirrored from; `inputs` the run's inputs, which no export may replace (an
    input named like another's export, a.pdf.pdf beside a.pdf, with --export-dir their folder)."""

    def __init__(self, exports: tuple[tuple[str, Path], ...], root: str, inputs: Sources | None = None) -> None:
        self.exports = exports
        self.writers = [get_writer(fmt, folder) for fmt, folder in exports]
        self.root = root
        self.inputs = inputs  # no export is written over one of these
        self._inputs: dict[str, tuple[Source, list[str], str]] = {}
        self._names: set[str] = set()

    def expect(self, source: Source, keys: list[str]) -> None:
        """Note the input `source` and the keys of its records. Its export name is its place (see
        `export_name`); where an earlier input has that name already (a URL and a local folder named
        like its host, `-` and a file named stdin), the later one's gets 8 hex digits of a digest of
        its absolute name, so that no input's exports replace another's."""
        if not self.exports:
            return
        name = absolute_name(source.location)
        export = export_name(source.location, self.root)
        if export in self._names:
            export += "." + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        self._names.add(export)
        self._inputs[name] = (source, keys, export)

    def held_without_exports(self, done: dict) -> list[dict]:
        """A record read without error of each input that `done` (what the output held before this
        run) holds whole, but whose exports are not all written: a --resume that asks for a format the first run did
        not, or whose exports were deleted. `record_done` on it writes them."""
        held = []
        for source, keys, export in self._inputs.values():
            read = [done[key] for key in keys if key in done and done[key].get("error") is None]
            if read and all(key in done for key in keys) and any(not writer.target(export).exists() for writer in self.writers):
                held.append(read[-1])
        return held

    def record_done(self, record: Record, done: dict) -> str | None:
        """Write the exports of `record`'s input if all its records are in `done`; the reason when
        one cannot be written, else None."""
        source, keys, export = self._inputs.get(absolute_name(record.path), (None, [], ""))
        if source is None or any(key not in done for key in keys):
            return None
        records = [Record.from_dict(done[key]) for key in keys]
        if all(r.error is not None for r in records):
            return None
        title = escape_path(os.path.basename(source.location.rstrip("/")) or source.location)

        def page_image(page: Record):
            return load_page(PageJob(source, page.page, page.pages, page.dpi))

        for writer in self.writers:
            fmt, target = writer.format, writer.target(export)
            try:
                if self.inputs is not None:
                    self.inputs.check_output(target)
                original = _input_bytes(source) if fmt == "pdf" else None
                writer(records, export, page_image=page_image, title=title, original=original)
            except OutputIsInputError:  # an OSError: before the clause below
                return (f"the {fmt} export {escape_path(str(target))} is one of the inputs; writing it would destroy it: "
                        "choose another --export-dir")
            except OSError as error:
                return f"cannot write the {fmt} export {escape_path(str(target))}: {error.strerror or type(error).__name__}"
            except ValueError as error:
                return f"cannot write the {fmt} export {escape_path(str(target))}: {error}"
        return None
