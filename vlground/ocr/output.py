"""Where OCR records go: the result sink (`vlground.io.sink`), keyed by input (`record_key`: the
absolute path, plus the page for documents). Records carry it as "abspath", so a resumed run finds
them from any working directory, whatever form (relative, absolute) the paths were given in."""
from __future__ import annotations

from pathlib import Path

from vlground.core.records import record_key
from vlground.io.sink import JsonlSink, StreamSink


def open_sink(out: str | Path, resume: bool = False, overwrite: bool = False) -> JsonlSink | StreamSink:
    """The sink for `--out`: a locked JSONL file, or standard output for "-"."""
    if str(out) == "-":
        if resume:
            raise ValueError("--resume needs an output file; standard output (--out -) holds nothing to resume")
        return StreamSink()
    return JsonlSink(out, record_key, resume=resume, overwrite=overwrite)
