"""The one place batch jobs write results: a JSON-lines file that survives kills, resumes and rivals.

Guarantees of `JsonlSink`:
- every record is one line, written with a single `write` and fsync'ed before `write` returns, so a
  kill loses at most the line being written;
- on resume, a last line cut short by a kill is removed, and the records already present are read
  into `done` (key -> record), so the caller skips them; a later record of the same key (a retried
  input) wins, and on `close` the file is compacted (atomically) to one record per key;
- the output is locked for the whole run by `OutputLock` (a `<out>.lock` file beside it holding the
  owner's pid, host, start time and command, flock'ed): a second run on the same output is refused
  with `OutputLockedError` naming the first; a lock left by a killed run is free again (the kernel
  drops a dead process's flock) and is taken over;
- every line is valid UTF-8 JSON: text that cannot be encoded (lone surrogates) is written with
  ASCII escapes instead of failing.

`atomic_write` is the only way to rewrite a results file: write a temporary file beside it, fsync,
rename over the target, fsync the folder; a kill at any moment leaves the old file or the new one."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger("vlground")

Record = dict[str, Any]
KeyOf = Callable[[Record], "str | None"]


class OutputExistsError(FileExistsError):
    """The output already holds records and neither resume nor overwrite was asked for."""


class OutputIsInputError(OutputExistsError):
    """The output named is one of the run's inputs; writing it would destroy the input."""


class OutputLockedError(RuntimeError):
    """Another live run holds the output; the message names it (pid, host, start time)."""


def encode_line(record: Record) -> bytes:
    """One JSON line, non-ASCII text kept readable; text with lone surrogates (undecodable file
    names, broken model output) is escaped as \\uXXXX rather than refused."""
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary_beside(path: Path) -> tuple[int, str]:
    """A new file beside `path` with the permissions a plain open() would give it: the old file's
    mode when `path` exists, else 0666 less the umask (mkstemp's 0600 would hide reports, exports
    and datasets from the other users of a shared machine)."""
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        mode = None
    while True:
        temp = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp"))
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
        except FileExistsError:
            continue
        if mode is not None:
            os.fchmod(fd, mode)
        return fd, temp


def atomic_write(path: str | Path, data: bytes | str | Iterable[bytes]) -> None:
    """Replace `path` with `data` (bytes, text written as UTF-8, or chunks of bytes) so that a kill
    at any moment leaves either the old file or the whole new one, never a mix or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = _temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            chunks = [data.encode("utf-8")] if isinstance(data, str) else [data] if isinstance(data, bytes) else data
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    fsync_folder(path.parent)


def atomic_write_records(path: str | Path, records: Iterable[Record]) -> None:
    """Rewrite a JSONL results file atomically (see `atomic_write`)."""
    atomic_write(path, (encode_line(record) for record in records))


def pid_alive(pid: int) -> bool:
    """Whether a process of this id runs on this host (one of another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


class OutputLock:
    """An exclusive lock on an output file, held through `<output>.lock` (flock, so the kernel frees
    it when its process dies, however it dies). `previous` is what a stale lock file said about the
    run that left it (None when there was none)."""

    def __init__(self, output: str | Path, flag: str = "--out") -> None:
        self.output = Path(output)
        self.path = self.output.with_name(self.output.name + ".lock")
        self.previous: dict | None = None
        self._fd = -1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while self._fd < 0:
            self._acquire(flag)

    def _acquire(self, flag: str) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise OutputLockedError(f"{self.output} is being written by another run ({_describe_owner(owner)}); "
                                    f"wait for it to finish, stop it, or choose another {flag}") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:  # the holder removed the file as we took it: lock the new one
            same = False
        if not same:
            os.close(fd)
            return
        self.previous = _read_owner(fd)
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, encode_line(owner), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = -1


def _read_owner(fd: int) -> dict | None:
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"null")
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def _describe_owner(owner: dict | None) -> str:
    if owner is None:
        return "its lock file names no owner yet"
    state = "" if owner.get("host") != socket.gethostname() else (
        ", running" if pid_alive(int(owner.get("pid") or 0)) else ", not running here")
    return f"pid {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')}{state}"


class JsonlSink:
    """A locked, durable JSON-lines output (see the module docstring). `key` names the input a
    record belongs to (None: a line that names none, left alone). With `resume` the existing
    records fill `done`; without it an existing non-empty output is `OutputExistsError` unless
    `overwrite`, which empties it. `flag` is the option the user named the file with, for messages."""

    def __init__(self, path: str | Path, key: KeyOf, resume: bool = False, overwrite: bool = False,
                 flag: str = "--out") -> None:
        self.path = Path(path)
        self.key = key
        self.done: dict[str, Record] = {}
        self.superseded = 0  # records written for keys already done: `close` compacts them away
        self._fd = -1
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other: resume keeps the records, overwrite drops them")
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path} is a folder; {flag} takes a file name such as results.jsonl")
        self.lock = OutputLock(self.path, flag)
        self._created = not self.path.exists()
        try:
            exists = self.path.is_file() and self.path.stat().st_size > 0
            if exists and not resume and not overwrite:
                raise OutputExistsError(f"{self.path} already holds results; pass --resume to continue it, "
                                        f"--overwrite to replace it, or choose another {flag}")
            if exists and resume:
                self._read_existing()
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if overwrite else 0)
            self._fd = os.open(self.path, flags, 0o666)
            fsync_folder(self.path.parent)
        except BaseException:
            self.lock.release()
            raise

    def _read_existing(self) -> None:
        with open(self.path, "rb") as handle:
            data = handle.read()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):  # the line being written when the last run was killed
            os.truncate(self.path, complete)
        for number, line in enumerate(data[:complete].splitlines(), 1):
            record, key = self._read_line(line)
            if record is None:  # a foreign or damaged line: left as it is, it names no input we can skip
                log.warning("%s:%d: not a record of this run (%s); left as it is", self.path, number, key)
            elif key is not None:
                self.superseded += key in self.done
                self.done[key] = record

    def _read_line(self, line: bytes) -> tuple[Record | None, str | None]:
        """(record, its key) of one line of the output; (None, why) for a line that is not JSON or
        is nested deeper than the decoder goes."""
        try:
            record = json.loads(line)
        except RecursionError:
            return None, "JSON nested too deeply"
        except ValueError as error:
            return None, f"not JSON: {error}"
        try:
            return record, self.key(record)
        except (KeyError, TypeError, AttributeError, ValueError):
            return record, None

    def write(self, record: Record) -> None:
        """Append one record durably and note it in `done` (a key written again supersedes the
        earlier record; `close` then drops the earlier one)."""
        os.write(self._fd, encode_line(record))
        os.fsync(self._fd)
        key = self.key(record)
        if key is not None:
            self.superseded += key in self.done
            self.done[key] = record

    def compact(self) -> None:
        """Rewrite the output atomically with one record per key: the latest, at the place of the
        first (input order kept); lines that name no key stay where they are."""
        order: list[str | Record] = []
        with open(self.path, "rb") as handle:
            for line in handle:
                record, key = self._read_line(line)
                if record is None or key is None:
                    order.append(line)
                elif key in self.done:
                    order.append(key)
        seen: set[str] = set()
        chunks = []
        for item in order:
            if isinstance(item, bytes):
                chunks.append(item)
            elif item not in seen:
                seen.add(item)
                chunks.append(encode_line(self.done[item]))
        atomic_write(self.path, chunks)
        self.superseded = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self.superseded:
                self.compact()
        self.lock.release()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        """Close; a run that failed before its first record leaves no empty file it created."""
        if kind is not None and self._created and self._fd >= 0 and os.fstat(self._fd).st_size == 0:
            os.unlink(self.path)
        self.close()


def open_sink(path: str | Path, key: KeyOf, resume: bool = False, overwrite: bool = False,
              flag: str = "--out") -> JsonlSink | StreamSink:
    """The sink of a batch command's output: a locked JSONL file keyed by `key`, or standard output
    for "-" (nothing there to resume or overwrite)."""
    if str(path) == "-":
        if resume or overwrite:
            raise ValueError(f"{flag} - writes to standard output, which has nothing to resume or overwrite; give a file name")
        return StreamSink()
    return JsonlSink(path, key, resume=resume, overwrite=overwrite, flag=flag)


class StreamSink:
    """Records to a stream (`--out -`: standard output), one flushed line each. Nothing to resume
    from and nothing to lock: `done` stays empty."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.done: dict[str, Record] = {}

    def write(self, record: Record) -> None:
        self.stream.write(encode_line(record))
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()

    def __enter__(self) -> StreamSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def escape_path(path: str) -> str:
    """A file name as text that is always valid UTF-8: bytes that are not UTF-8 (Python holds them
    as surrogates, os.fsdecode's "surrogateescape") become a backslash, 'x' and two hex digits, as
    Python's "backslashreplace" writes them (b"bad\\xffname.png" -> "bad\\\\xffname.png"). Valid names
    are unchanged. Every record and every resume key uses this form, so the two always match."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
