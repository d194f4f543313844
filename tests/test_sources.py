"""vlground.io.sources: files, folders, globs, URLs (served from 127.0.0.1) and stdin become inputs, and
every input that cannot be read is an error item in its place, never a crash or a silent gap."""
import http.server
import io
import json
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from vlground.io.images import ImageLoadError
from vlground.io.sources import Source, download, expand, load


def _png(size=(40, 30), color=(200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "b.png").write_bytes(_png())
    (tmp_path / "a.jpg").write_bytes(_png())  # content sniffed, suffix only selects
    (tmp_path / "notes.txt").write_text("ground truth")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").write_bytes(_png())
    return tmp_path


def _names(sources, root):
    return [os.path.relpath(s.location, root) for s in sources.items]


def test_folder_takes_images_by_suffix_and_counts_the_rest(folder):
    found = expand([str(folder)])
    assert _names(found, folder) == ["a.jpg", "b.png"]
    assert [os.path.basename(p) for p in found.not_images] == ["notes.txt"]
    assert [os.path.basename(p) for p in found.subfolders] == ["sub"]


def test_extra_suffixes_are_taken_from_folders(folder):
    (folder / "scan.PDF").write_bytes(b"%PDF-1.4")
    assert "scan.PDF" not in _names(expand([str(folder)]), folder)
    assert "scan.PDF" in _names(expand([str(folder)], extra_suffixes={".pdf"}), folder)


def test_recursive_lists_a_folders_files_before_its_subfolders(folder):
    (folder / "sub" / "deeper").mkdir()
    (folder / "sub" / "deeper" / "d.png").write_bytes(_png())
    (folder / "z.png").write_bytes(_png())
    found = expand([str(folder)], recursive=True)
    assert _names(found, folder) == ["a.jpg", "b.png", "z.png", "sub/c.png", "sub/deeper/d.png"]


def test_globs_files_and_duplicates(folder):
    found = expand([str(folder / "*.png"), str(folder / "b.png"), str(folder / "a.jpg"), str(folder / "*.gif")])
    assert _names(found, folder)[:2] == ["b.png", "a.jpg"]
    error = found.items[2]
    assert error.error == "no file matches this pattern" and error.location.endswith("*.gif")


def test_a_missing_file_is_kept_and_fails_when_read_with_its_name(tmp_path):
    found = expand([str(tmp_path / "gone.jpg")])
    with pytest.raises(ImageLoadError, match="gone.jpg: no such file"):
        load(found.items[0])


def test_symlink_loops_are_error_items_and_the_rest_is_read(folder):
    os.symlink(".", folder / "sub" / "back")  # a folder loop, met when walking recursively
    os.symlink("pong.png", folder / "ping.png")  # a link loop: ELOOP when asked what it is
    os.symlink("ping.png", folder / "pong.png")
    found = expand([str(folder)], recursive=True)
    errors = {os.path.relpath(s.location, folder): s.error for s in found.errors}
    assert "symlink loop" in errors["sub/back"]
    assert "ping.png" in errors and "pong.png" in errors
    assert [os.path.relpath(s.location, folder) for s in found.readable] == ["a.jpg", "b.png", "sub/c.png"]
    flat = expand([str(folder)])
    assert {"ping.png", "pong.png"} <= {os.path.relpath(s.location, folder) for s in flat.errors}


def test_a_symlinked_folder_is_walked(folder, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "e.png").write_bytes(_png())
    os.symlink(elsewhere, folder / "linked")
    assert "linked/e.png" in _names(expand([str(folder)], recursive=True), folder)


def test_an_unreadable_folder_is_an_error_item(folder, monkeypatch):
    # Tests run as root here, where permissions do not stop a read: the refusal is simulated.
    real_scandir = os.scandir

    def scandir(path):
        if os.path.basename(path) == "sub":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = expand([str(folder)], recursive=True)
    assert [(os.path.basename(s.location), "Permission denied" in s.error) for s in found.errors] == [("sub", True)]
    assert _names(found, folder) == ["a.jpg", "b.png", "sub"]


def test_non_utf8_names_are_escaped_and_still_open(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"bad\xffname.png")
    with open(raw, "wb") as handle:
        handle.write(_png())
    (source,) = expand([str(tmp_path)]).items
    assert source.name.endswith("bad\\xffname.png") and json.dumps(source.name)
    source.name.encode("utf-8")  # writable as UTF-8, unlike the location
    assert load(source).size == (40, 30)


def test_bad_image_errors_name_the_escaped_source(tmp_path):
    raw = os.path.join(os.fsencode(tmp_path), b"broken\xfe.png")
    with open(raw, "wb") as handle:
        handle.write(b"not an image")
    (source,) = expand([str(tmp_path)]).items
    with pytest.raises(ImageLoadError) as caught:
        load(source)
    assert caught.value.source.endswith("broken\\xfe.png") and "not an image" in caught.value.reason


def test_unsupported_schemes_are_named():
    pytest.importorskip("pyarrow", reason="pyarrow names the schemes it reads (the arrow extra; without it the CLI says to install it)")
    found = expand(["nosuch://bucket/photo.jpg", "ftp://host/photo.jpg"])
    assert [s.location for s in found.errors] == ["nosuch://bucket/photo.jpg", "ftp://host/photo.jpg"]
    assert all("Unrecognized filesystem type" in s.error and "s3://" in s.error for s in found.errors)


def test_pyarrow_uris_are_listed_and_read_by_the_folder_rules(folder):
    pytest.importorskip("pyarrow", reason="reading pyarrow URIs needs the arrow extra")
    uri = folder.resolve().as_uri()  # file:///...: listed and read through pyarrow, as s3:// would be
    found = expand([uri, uri + "/sub/c.png", uri + "/missing.png"])
    assert [s.location for s in found.readable] == [f"{uri}/a.jpg", f"{uri}/b.png", f"{uri}/sub/c.png"]
    assert [s.error for s in found.errors] == ["no such file or folder"]
    assert found.not_images == [f"{uri}/notes.txt"] and found.subfolders == [f"{uri}/sub"]
    assert load(found.readable[0]).size == (40, 30)
    assert [s.location for s in expand([uri], recursive=True).readable][-1] == f"{uri}/sub/c.png"


def test_stdin_is_read_once_into_the_source():
    found = expand(["-"], stdin=io.BytesIO(_png((12, 7))))
    assert load(found.items[0]).size == (12, 7)
    empty = expand(["-"], stdin=io.BytesIO(b""))
    assert "stdin was empty" in empty.items[0].error


TRICKLE_S = 0.1  # between the bytes of a slow answer: 100 bytes take 10 s, far past the tests' 0.5 s deadline


class _Server(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server hook
        if self.path == "/photo.png":
            self._send(_png((33, 22)))
        elif self.path in ("/moved.png", "/to-ftp.png"):
            self.send_response(302)
            self.send_header("Location", "/photo.png" if self.path == "/moved.png" else "ftp://127.0.0.1/photo.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/text":
            self._send(b"hello")
        elif self.path == "/big.png":
            self._send(b"\0" * 5000)
        elif self.path in ("/slow-status.png", "/slow-headers.png"):  # the trickle before the body
            head = b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"x" * 100
            start = 5 if self.path == "/slow-status.png" else len(head) - 100
            try:
                self.wfile.write(head[:start])
                for byte in head[start:]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(TRICKLE_S)
            except OSError:  # the client gave up, as it should
                pass
        elif self.path == "/slow.png":  # a trickle: each read is quick, the whole body is not
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(TRICKLE_S)
        else:
            self.send_error(404)

    def _send(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_urls_are_downloaded_and_read(server):
    (source,) = expand([f"{server}/photo.png"]).items
    assert load(source).size == (33, 22)


def test_url_errors_name_the_url(server):
    assert load(Source(f"{server}/moved.png")).size == (33, 22)  # an http redirect is followed
    cases = {"/missing.png": "HTTP 404", "/text": "not an image", "/to-ftp.png": "not http(s)"}
    for path, reason in cases.items():
        with pytest.raises(ImageLoadError) as caught:
            load(Source(server + path))
        assert caught.value.source == server + path and reason in caught.value.reason


def test_downloads_have_a_size_limit_and_a_deadline(server):
    with pytest.raises(ImageLoadError, match="over the download limit of 1,000"):
        download(f"{server}/big.png", max_bytes=1000)
    started = time.monotonic()
    with pytest.raises(ImageLoadError, match="no complete answer within 0.5 s"):
        download(f"{server}/slow.png", timeout=0.5)
    assert time.monotonic() - started < 5  # the deadline is for the whole body, not each read (that takes 10 s)
    for path in ("/slow-status.png", "/slow-headers.png"):  # and for the status line and headers before it
        started = time.monotonic()
        with pytest.raises(ImageLoadError, match="no complete answer within 0.5 s"):
            download(f"{server}{path}", timeout=0.5)
        assert time.monotonic() - started < 5, path


def test_an_unreachable_server_is_an_error_naming_the_url():
    import socket

    with socket.socket() as probe:  # a port nobody listens on, held bound so no other process takes it meanwhile
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        with pytest.raises(ImageLoadError, match=f"127.0.0.1:{port}/x.png: cannot download"):
            download(f"http://127.0.0.1:{port}/x.png", timeout=2)


def test_arrays_of_the_same_pixels_from_every_kind_of_source(server, tmp_path):
    (tmp_path / "photo.png").write_bytes(_png((33, 22)))
    found = expand([str(tmp_path / "photo.png"), f"{server}/photo.png", "-"], stdin=io.BytesIO(_png((33, 22))))
    arrays = [np.asarray(load(s)) for s in found.items]
    assert all(np.array_equal(arrays[0], a) for a in arrays[1:])


def test_a_double_star_glob_reaches_every_depth(folder):
    (folder / "sub" / "deeper").mkdir()
    (folder / "sub" / "deeper" / "d.png").write_bytes(_png())
    assert _names(expand([str(folder / "**" / "*.png")]), folder) == ["b.png", "sub/c.png", "sub/deeper/d.png"]
