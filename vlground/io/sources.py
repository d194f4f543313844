"""The one place where what a user names as input becomes a list of images to read: local files,
folders, globs, http(s):// URLs, URIs of any filesystem pyarrow reads (s3://bucket/dir, gs://...,
hdfs://..., file:///abs/dir) and `-` (one image on stdin). Every command expands its inputs here and
reads each one with `load`, which goes through `vlground.io.images.load_image`.

Rules: a file named by the user is read whatever it is (a bad one fails when read, with its name); a
folder is walked, not read, and from it only files with an image suffix are taken (the rest are
counted in `not_images`: a folder of scans often holds notes and ground truth); subfolders only with
`recursive` (else counted in `subfolders`), symlinked ones included, a symlink that leads back into a
folder being walked reported as a loop. Each file appears once, in the order given, folders sorted by
name, a folder's files before its subfolders'. URLs are fetched when read, with a timeout and a size
limit. A pyarrow URI is listed when expanded (a folder by the same rules: image suffixes, subfolders
only with `recursive`) and its files read through pyarrow when read. stdin is read once, when expanded.

Nothing is dropped in silence: a pattern that matches nothing, a folder that cannot be listed, a
symlink loop, a scheme pyarrow does not know (ftp://, ...) is a `Source` whose `error` says why, in
its place in the order, so a batch writes an error record for it and reads the rest.

Names that are not valid UTF-8 (Linux allows any bytes) are kept as the OS gives them in
`Source.location`, to open the file, and shown in `Source.name` with each undecodable byte written
as `\\xNN` (`vlground.io.sink.escape_path`, the form records and resume keys use): `bad\\xffname.png`."""
from __future__ import annotations

import glob
import http.client
import os
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable

from PIL import Image

from vlground.extras import require
from vlground.io.images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError, load_image
from vlground.io.sink import OutputIsInputError, escape_path

STDIN = "-"
DOWNLOAD_TIMEOUT = 30.0  # seconds for a whole download, connection included
MAX_DOWNLOAD_BYTES = 64 * 2**20  # also the limit on an image read from stdin
SUPPORTED = "local files, folders, globs, http(s):// URLs, pyarrow URIs (s3://, gs://, file://) and - (one image on stdin)"


def image_suffixes() -> frozenset[str]:
    """Lower-case suffixes (".jpg") of the formats this Pillow can open."""
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def absolute_name(location: str) -> str:
    """An input's name as records and resume keys hold it: the escaped absolute path of a file; a URL,
    a pyarrow URI or "-" (stdin) as it is."""
    if location == STDIN or "://" in location:
        return escape_path(location)
    return escape_path(os.path.abspath(location))


def is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


def is_pyarrow_uri(text: str) -> bool:
    """A URI for a pyarrow filesystem: a scheme other than http(s) (s3://, gs://, hdfs://, file://)."""
    head, sep, _ = text.partition("://")
    return bool(sep) and head.isidentifier() and not is_url(text)


@dataclass(frozen=True)
class Source:
    """One input: `location` is the path as the OS gives it, a URL, or "-"; `error` (when set) why it
    cannot be read; `data` the bytes of stdin, read once."""

    location: str
    error: str | None = None
    data: bytes | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The location as records and messages show it (see the module docstring)."""
        return escape_path(self.location)


@dataclass
class Sources:
    """`items` in order (readable ones and errors); `not_images` files seen in folders and left out
    by suffix; `subfolders` folders not entered (no recursive)."""

    items: list[Source] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)
    subfolders: list[str] = field(default_factory=list)

    @property
    def readable(self) -> list[Source]:
        return [s for s in self.items if s.error is None]

    @property
    def errors(self) -> list[Source]:
        return [s for s in self.items if s.error is not None]

    def check_output(self, path: str | Path, flag: str = "--out") -> None:
        """Refuse an output that is one of the local inputs (the same file, by any name or link):
        writing it would destroy the input before it is read."""
        try:
            target = os.stat(path)
        except OSError:
            return  # not there yet: it cannot be an input
        for source in self.readable:
            if source.data is None and not is_url(source.location) and not is_pyarrow_uri(source.location):
                try:
                    same = os.path.samestat(os.stat(source.location), target)
                except OSError:
                    continue
                if same:
                    raise OutputIsInputError(f"{flag} {escape_path(os.fspath(path))} is one of the inputs "
                                             f"({source.name}); writing it would destroy it: choose another {flag}")

    def describe_empty(self) -> str:
        """Why nothing readable was found, for the warning of a run with no input."""
        notes = [f"{len(self.not_images)} files without an image suffix" if self.not_images else "",
                 f"{len(self.subfolders)} subfolders not entered (use --recursive)" if self.subfolders else "",
                 f"{len(self.errors)} inputs that cannot be read" if self.errors else ""]
        return "no image found in the inputs" + (f": {', '.join(n for n in notes if n)}" if any(notes) else "")


class _Expansion:
    """The state of one `expand` call: what is found so far, and which files are already in."""

    def __init__(self, recursive: bool, stdin: BinaryIO | None, extra_suffixes: Iterable[str],
                 exclude: Iterable[str | Path]) -> None:
        self.recursive, self.stdin = recursive, stdin
        self.suffixes = image_suffixes() | {s.lower() for s in extra_suffixes}
        self.found = Sources()
        self.seen: set[str] = set()
        self.exclude = [os.path.realpath(p) for p in exclude]

    def excluded(self, path: str) -> bool:
        """Whether `path` is, or lies in, one of the run's own outputs."""
        real = os.path.realpath(path)
        return any(real == own or real.startswith(own.rstrip(os.sep) + os.sep) for own in self.exclude)

    def add(self, location: str, error: str | None = None, data: bytes | None = None) -> None:
        remote = data is not None or is_url(location) or is_pyarrow_uri(location)
        key = location if location == STDIN or (error is None and remote) else os.path.abspath(location)
        if key not in self.seen:
            self.seen.add(key)
            self.found.items.append(Source(location, error, data))

    def argument(self, arg: str) -> None:
        if arg == STDIN:
            if STDIN not in self.seen:  # named twice, stdin is still one input, read once
                self.add(STDIN, *_read_stdin(self.stdin))
        elif is_url(arg):
            self.add(arg)
        elif is_pyarrow_uri(arg):
            self.uri(arg)
        elif glob.has_magic(arg) and not os.path.lexists(arg):
            matches = sorted(glob.glob(arg, recursive=True))
            if not matches:
                self.add(arg, "no file matches this pattern")
            for match in matches:
                if not self.excluded(match):
                    self.path(match)
        else:
            self.path(arg)

    def path(self, path: str) -> None:
        if os.path.isdir(path):
            self.walk(path)
        else:
            self.add(path)  # missing or unreadable files fail when read, with their name

    def walk(self, top: str) -> None:
        """Depth first, a folder's image files before its subfolders, loops and unreadable folders
        reported in place."""
        todo = [(top, frozenset({os.path.realpath(top)}))]
        while todo:
            folder, ancestors = todo.pop()
            subfolders = []
            for entry, is_dir in self.entries(folder):
                if self.excluded(entry.path):
                    continue  # the run's own output or exports, never its input
                if not is_dir and Path(entry.name).suffix.lower() in self.suffixes:
                    self.add(entry.path)
                elif not is_dir:
                    self.found.not_images.append(entry.path)
                elif not self.recursive:
                    self.found.subfolders.append(entry.path)
                elif (real := os.path.realpath(entry.path)) in ancestors:
                    self.add(entry.path, f"symlink loop: leads back to {escape_path(real)}, a folder being read")
                else:
                    subfolders.append((entry.path, ancestors | {real}))
            todo += reversed(subfolders)

    def uri(self, uri: str) -> None:
        """A pyarrow URI: a file as it is, a folder's image files sorted by path."""
        scheme = uri.split("://", 1)[0]
        try:
            import pyarrow.fs as pafs

            fs, path = pafs.FileSystem.from_uri(uri)
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.File:
                self.add(uri)
                return
            if info.type != pafs.FileType.Directory:
                self.add(uri, "no such file or folder")
                return
            entries = fs.get_file_info(pafs.FileSelector(path, recursive=self.recursive))
        except (OSError, ValueError, ImportError) as error:  # unknown scheme, no credentials, unreachable
            self.add(uri, f"cannot list this through pyarrow ({error}); give {SUPPORTED}")
            return
        for entry in sorted(entries, key=lambda e: e.path):
            name = f"{scheme}://{entry.path}"
            if entry.type == pafs.FileType.Directory:
                if not self.recursive:
                    self.found.subfolders.append(name)
            elif os.path.splitext(entry.path)[1].lower() in self.suffixes:
                self.add(name)
            else:
                self.found.not_images.append(name)

    def entries(self, folder: str) -> Iterable[tuple[os.DirEntry, bool]]:
        """The folder's entries by name, each with whether it is a folder; the ones that cannot be
        told (a symlink loop: ELOOP) and a folder that cannot be listed become error items."""
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as error:
            self.add(folder, f"cannot list this folder ({error.strerror or error}); the other inputs were read")
            return
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError as error:
                self.add(entry.path, f"cannot tell what this is ({error.strerror or error}; a symlink loop?)")
                continue
            yield entry, is_dir


def expand(paths: Iterable[str], recursive: bool = False, *, stdin: BinaryIO | None = None,
           extra_suffixes: Iterable[str] = (), exclude: Iterable[str | Path] = ()) -> Sources:
    """The inputs behind `paths` (see the module docstring for the rules). `stdin` is the stream
    `-` reads (default: this process's standard input); `extra_suffixes` (".pdf") are taken from
    folders besides the image suffixes, for a caller that reads more than images; `exclude`: the
    run's own output files and folders, never taken from a folder or a pattern (a run resumed on a
    folder holding its exports would read them as inputs, and their exports, and so on). A pyarrow
    URI without pyarrow installed is MissingExtraError, before any input is read."""
    paths = [os.fspath(arg) for arg in paths]
    if any(is_pyarrow_uri(path) for path in paths):
        _require_arrow()
    expansion = _Expansion(recursive, stdin, extra_suffixes, exclude)
    for arg in paths:
        expansion.argument(arg)
    return expansion.found


def _require_arrow() -> None:
    require("arrow", "reading s3:// and other pyarrow URIs")


def _read_stdin(stream: BinaryIO | None) -> tuple[str | None, bytes | None]:
    """(error, data) for `-`: one image's bytes, at most MAX_DOWNLOAD_BYTES."""
    stream = stream if stream is not None else sys.stdin.buffer
    if stream.isatty():
        return "- reads one image from stdin, but stdin is a terminal: pipe an image in (... - < photo.jpg)", None
    data = stream.read(MAX_DOWNLOAD_BYTES + 1)
    if not data:
        return "stdin was empty: pipe an image in (... - < photo.jpg)", None
    if len(data) > MAX_DOWNLOAD_BYTES:
        return f"more than {MAX_DOWNLOAD_BYTES:,} bytes on stdin, the limit for one image", None
    return None, data


class _WebRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects followed only to http(s) URLs (urllib would also follow one to ftp://)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not is_url(newurl):
            raise urllib.error.HTTPError(req.full_url, code, f"redirected to {newurl}, which is not http(s)", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Deadline:
    """`timeout` seconds for a whole network exchange, over every connection it opens (redirects
    included): when they pass, the sockets `watch`ed are shut down, which wakes a blocked read or
    write at once, so a server trickling its status line, headers or body cannot hold the caller
    past it (connecting is bounded by the socket's own timeout); `expired` then says why the call
    failed. A context manager."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.expired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout, self._cut)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
        if self.expired.is_set():
            self._cut()

    def _cut(self) -> None:
        self.expired.set()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()


class _Watched:
    """A urllib handler whose connections' sockets are watched by a `Deadline` from the moment they
    connect (urllib lets go of the connection once the headers are read; the socket lives on)."""

    def __init__(self, deadline: Deadline, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def do_open(self, http_class, request, **kwargs):
        def connection(*args, **options):
            made = http_class(*args, **options)
            connect = made.connect

            def watched_connect() -> None:
                connect()
                self.deadline.watch(made.sock)

            made.connect = watched_connect
            return made

        return super().do_open(connection, request, **kwargs)


class _WatchedHTTP(_Watched, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPS(_Watched, urllib.request.HTTPSHandler):
    pass


def download(url: str, timeout: float = DOWNLOAD_TIMEOUT, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
    """The body of `url`, or ImageLoadError naming the URL: not found, unreachable, slower than
    `timeout` seconds in all (connecting, the status line, headers and body, a server trickling
    bytes included), larger than `max_bytes`, or redirected elsewhere than to an http(s) URL."""
    request = urllib.request.Request(url, headers={"User-Agent": "vlground"})
    late = ImageLoadError(url, f"no complete answer within {timeout:g} s")
    with Deadline(timeout) as deadline:
        opener = urllib.request.build_opener(_WebRedirects, _WatchedHTTP(deadline), _WatchedHTTPS(deadline))
        try:
            with opener.open(request, timeout=timeout) as response:
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise ImageLoadError(url, f"{int(declared):,} bytes is over the download limit of {max_bytes:,}")
                body = bytearray()
                while chunk := response.read1(1 << 16):
                    body += chunk
                    if len(body) > max_bytes:
                        raise ImageLoadError(url, f"more than the download limit of {max_bytes:,} bytes")
                if deadline.expired.is_set():  # the body was cut short by the deadline
                    raise late
                return bytes(body)
        except ImageLoadError:
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
            if deadline.expired.is_set() or isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError):
                raise late from None
            if isinstance(error, urllib.error.HTTPError):
                raise ImageLoadError(url, f"the server answered HTTP {error.code} {error.reason}") from None
            if isinstance(error, urllib.error.URLError):
                raise ImageLoadError(url, f"cannot download ({error.reason})") from None
            raise ImageLoadError(url, f"download failed ({type(error).__name__}: {error})") from None


def load(source: Source, *, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
         timeout: float = DOWNLOAD_TIMEOUT, max_bytes: int = MAX_DOWNLOAD_BYTES) -> Image.Image:
    """The image behind `source`, through `load_image` (same orientation, colour and bomb rules for
    every kind of source). Raises ImageLoadError whose `source` is `source.name`."""
    if source.error is not None:
        raise ImageLoadError(source.name, source.error)
    if source.data is None and is_pyarrow_uri(source.location):
        source = Source(source.location, data=_read_uri(source.location))
    if source.data is None and not is_url(source.location):
        try:
            return load_image(source.location, max_pixels=max_pixels)
        except ImageLoadError as error:
            raise ImageLoadError(source.name, error.reason) from None
    data = source.data if source.data is not None else download(source.location, timeout, max_bytes)
    with tempfile.NamedTemporaryFile(prefix="vlground-") as spool:  # the file path of load_image, for bytes
        spool.write(data)
        spool.flush()
        try:
            return load_image(spool.name, max_pixels=max_pixels)
        except ImageLoadError as error:
            raise ImageLoadError(source.name, error.reason) from None


def _read_uri(uri: str) -> bytes:
    """The bytes of a file behind a pyarrow URI; ImageLoadError naming it when it cannot be read."""
    _require_arrow()
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        with fs.open_input_stream(path) as stream:
            return stream.read()
    except (OSError, ValueError) as error:
        raise ImageLoadError(escape_path(uri), f"cannot read it through pyarrow ({error})") from None
