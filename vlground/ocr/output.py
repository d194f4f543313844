"""Where OCR records go: the result sink (`vlground.sink`) keyed by input, and the per-image
plain-text export.

An input's key is its absolute path (names that are not UTF-8 escaped by `escape_path`), plus the
page for documents. Records carry it as "abspath", so a resumed run finds them from any working
directory, whatever form (relative, absolute) the paths were given in."""
from __future__ import annotations

import os
from pathlib import Path

from vlground.sink import JsonlSink, Record, StreamSink, atomic_write, escape_path


def input_key(abspath: str, page: int | None = None) -> str:
    """The identity of one input (one page of a document) across runs."""
    return abspath if page is None else f"{abspath}\x00page {page}"


def absolute_name(path: str) -> str:
    """The escaped absolute path of `path`, the "abspath" of its records."""
    return escape_path(os.path.abspath(path))


def record_key(record: Record) -> str:
    """The key of a record read back from the output; records written before "abspath" existed
    are keyed by their path taken from the current folder."""
    abspath = record.get("abspath")
    if not isinstance(abspath, str):
        abspath = absolute_name(record["path"])
    return input_key(abspath, record.get("page"))


def open_sink(out: str | Path, resume: bool = False, overwrite: bool = False) -> JsonlSink | StreamSink:
    """The sink for `--out`: a locked JSONL file, or standard output for "-"."""
    if str(out) == "-":
        if resume:
            raise ValueError("--resume needs an output file; standard output (--out -) holds nothing to resume")
        return StreamSink()
    return JsonlSink(out, record_key, resume=resume, overwrite=overwrite)


class TextExportError(OSError):
    """A .txt export could not be written; the message names the file and why."""


def text_export_path(txt_dir: Path, path: str, root: str) -> Path:
    """Where the .txt of `path` goes: its place under `root` mirrored in `txt_dir`, ".txt" appended
    to the full name (photo.jpg -> photo.jpg.txt, so photo.png cannot collide with it)."""
    relative = os.path.relpath(os.path.abspath(path), root)
    return txt_dir / (relative + ".txt")


def export_text(txt_dir: Path, path: str, text: str, root: str) -> None:
    """Write `text` (atomically: a kill leaves the old file or the new one) as the export of `path`."""
    target = text_export_path(txt_dir, path, root)
    try:
        atomic_write(target, text + "\n" if text else "")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise TextExportError(f"cannot write the text export {escape_path(str(target))}: {reason}") from None
