"""Where OCR records go: a JSON-lines file appended one durable line at a time, so a crash or a kill
loses at most the line being written, and a resumed run knows exactly which files are done.

Also the per-image plain-text export."""
from __future__ import annotations

import json
import os
from pathlib import Path

from vlground.ocr.records import OcrRecord


class OutputExistsError(FileExistsError):
    """The output file already holds records and neither resume nor overwrite was asked for."""


def record_key(path: str) -> str:
    """The identity of an input across runs: its absolute path (records keep the path as given)."""
    return os.path.abspath(path)


class RecordWriter:
    """Appends records to a JSONL file, fsync'ed line by line.

    With `resume`, the records already in the file are read first (`done`: key -> failed or not),
    and a last line cut short by a kill is removed, so no record is duplicated or left broken.
    Without it, an existing non-empty file is an error unless `overwrite`."""

    def __init__(self, path: str | Path, resume: bool = False, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.done: dict[str, bool] = {}
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a folder; --out takes a file name such as results.jsonl")
        exists = self.path.is_file() and self.path.stat().st_size > 0
        if exists and resume:
            self._read_existing()
        elif exists and not overwrite:
            raise OutputExistsError(
                f"{self.path} already holds results; pass --resume to continue it, --overwrite to replace it, "
                "or choose another --out"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if overwrite and not resume else 0)
        self._fd = os.open(self.path, flags, 0o644)

    def _read_existing(self) -> None:
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # the line being written when the last run was killed
            os.truncate(self.path, complete)
        for line in data[:complete].splitlines():
            try:
                record = json.loads(line)
                self.done[record_key(record["path"])] = record.get("error") is not None
            except (ValueError, KeyError, TypeError):
                continue  # a foreign or damaged line: leave it, it names no input we can skip

    def write(self, record: OcrRecord) -> None:
        os.write(self._fd, (record.to_json() + "\n").encode("utf-8"))
        os.fsync(self._fd)
        self.done[record_key(record.path)] = record.error is not None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def text_export_path(txt_dir: Path, path: str, root: str) -> Path:
    """Where the .txt of `path` goes: its place under `root` mirrored in `txt_dir`, ".txt" appended
    to the full name (photo.jpg -> photo.jpg.txt, so photo.png cannot collide with it)."""
    relative = os.path.relpath(os.path.abspath(path), root)
    return txt_dir / (relative + ".txt")


def export_text(txt_dir: Path, record: OcrRecord, root: str) -> None:
    target = text_export_path(txt_dir, record.path, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(record.text + "\n" if record.text else "", encoding="utf-8")
