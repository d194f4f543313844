"""Where OCR records go: the result sink (`vlground.io.sink`), keyed by input.

An input's key is its absolute path (names that are not UTF-8 escaped by `escape_path`), plus the
page for documents. Records carry it as "abspath", so a resumed run finds them from any working
directory, whatever form (relative, absolute) the paths were given in."""
from __future__ import annotations

import os
from pathlib import Path

from vlground.io.sink import JsonlSink, Record, StreamSink, escape_path
from vlground.io.sources import STDIN, is_url


def input_key(abspath: str, page: int | None = None) -> str:
    """The identity of one input (one page of a document) across runs."""
    return abspath if page is None else f"{abspath}\x00page {page}"


def absolute_name(location: str) -> str:
    """The "abspath" of an input's records: the escaped absolute path of a file; a URL or "-"
    (stdin) as it is."""
    if location == STDIN or is_url(location):
        return escape_path(location)
    return escape_path(os.path.abspath(location))


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
