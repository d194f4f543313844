"""The OpenAI-compatible server backend against a real HTTP server on 127.0.0.1 that imitates vLLM's
API: the request shape, boxes in original pixels from the derived input size, order under
concurrency, model discovery, API keys, clear errors, and the CLI pointed at a URL; and, against raw
sockets, the transport's limits (deadline, body size, retries, redirects) a real server cannot show."""
from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import vlground
from vlground.cli.main import app
from vlground.core.families import UnknownFamilyError
from vlground.models.server import ServerBackend, ServerError

QWEN25 = "Qwen/Qwen2.5-VL-7B-Instruct"
CAT_BOX = [160.0, 120.0, 320.0, 240.0]  # on the 640x480 test image


def completion(text: str) -> tuple[int, dict]:
    return 200, {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
                                                          "message": {"role": "assistant", "content": text}}]}


class FakeServer:
    """A vLLM-like API on a free loopback port. `reply(body)` -> (status, JSON) answers each chat
    request; every request is recorded with its headers, and the peak number in flight is kept."""

    def __init__(self, reply: Callable[[dict], tuple[int, dict]], models: list[dict]):
        self.requests: list[tuple[str, dict, dict | None]] = []
        self.in_flight = self.peak = 0
        lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.requests.append((self.path, dict(self.headers), None))
                self._answer(200, {"object": "list", "data": models}) if self.path == "/v1/models" else self._answer(404, {})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    fake.requests.append((self.path, dict(self.headers), body))
                    fake.in_flight += 1
                    fake.peak = max(fake.peak, fake.in_flight)
                try:
                    self._answer(*reply(body)) if self.path == "/v1/chat/completions" else self._answer(404, {})
                except OSError:
                    pass  # the client gave up (timeout test)
                finally:
                    with lock:
                        fake.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @property
    def chats(self) -> list[tuple[dict, dict]]:
        return [(headers, body) for path, headers, body in self.requests if body is not None]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    """serve(reply, models=[...]) -> a running FakeServer, stopped at the end of the test."""
    started = []

    def start(reply=lambda body: completion(""), models=({"id": QWEN25, "object": "model", "root": QWEN25},)):
        started.append(FakeServer(reply, list(models)))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def picture() -> Image.Image:
    y, x = np.mgrid[:480, :640]
    return Image.fromarray(np.stack([x % 256, y % 256, (x * y) % 256], axis=-1).astype(np.uint8))


def decoded_image(body: dict, image_format: str = "png") -> Image.Image:
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith(f"data:image/{image_format};base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


# 640x480 -> 644x476 with the checkpoint's pixel bounds, 364x252 under max_pixels=100000: the server
# answers in that frame, and the box must come back on the original image either way
@pytest.mark.parametrize("max_pixels, answer_box", [(None, [161, 119, 322, 238]), (100000, [91, 63, 182, 126])])
def test_request_shape_and_box_in_original_pixels(serve, picture, max_pixels, answer_box):
    server = serve(lambda body: completion(f'```json\n[{{"bbox_2d": {answer_box}, "label": "cat"}}]\n```'))
    model = vlground.load_model(server.url, served_model=QWEN25, max_pixels=max_pixels)
    result = model.ground(picture, "the cat", max_new_tokens=40)
    assert result.detections[0].xyxy == pytest.approx(CAT_BOX)
    [(headers, body)] = server.chats
    assert body["model"] == QWEN25 and body["max_tokens"] == 40 and body["temperature"] == 0
    assert body["skip_special_tokens"] is False
    [message] = body["messages"]
    assert message["role"] == "user" and message["content"][1] == {
        "type": "text", "text": "Locate the cat in this image and output the bbox coordinates in JSON format."}
    sent = decoded_image(body)
    assert sent.size == (640, 480) and sent.convert("RGB").tobytes() == picture.tobytes()
    model.ground(picture, "the cat")
    assert server.chats[1][1]["max_tokens"] == 512  # the prompt's own limit


def test_jpeg_upload(serve, picture):
    server = serve(lambda body: completion('[{"bbox_2d": [161, 119, 322, 238], "label": "cat"}]'))
    model = vlground.Model(ServerBackend.connect(server.url, QWEN25, image_format="jpeg"))
    assert model.ground(picture, "the cat").detections[0].xyxy == pytest.approx(CAT_BOX)
    sent = decoded_image(server.chats[0][1], "jpeg")
    assert sent.format == "JPEG" and sent.size == picture.size
    with pytest.raises(ValueError, match="png or jpeg"):
        ServerBackend.connect(server.url, QWEN25, image_format="webp")


def test_grounding_tokens_kept_and_answer_cut_at_end_of_turn(serve, picture):
    grounded = "<|object_ref_start|>the cat<|object_ref_end|><|box_start|>(250,250),(500,500)<|box_end|>"

    def reply(body):  # like vLLM: special tokens dropped unless asked for, and then the end of turn too
        return completion(grounded + "<|im_end|>\n<|im_start|>" if body.get("skip_special_tokens") is False else "the cat(250,250),(500,500)")

    server = serve(reply)
    result = vlground.load_model(server.url, served_model="Qwen/Qwen2-VL-7B-Instruct").detect(picture, "cat")
    assert result.raw == grounded and result.text == "the cat"
    assert [(d.label, d.xyxy) for d in result.detections] == [("the cat", pytest.approx(CAT_BOX))]


def test_concurrent_requests_keep_their_order(serve, picture):
    def reply(body):
        index = int(body["messages"][0]["content"][1]["text"].split()[0][1:])
        deadline = time.monotonic() + 10  # the first answer waits for a second request: however slow the machine,
        while index == 0 and server.in_flight < 2 and time.monotonic() < deadline:  # overlap is seen, not raced
            time.sleep(0.01)
        time.sleep(0.03 * (6 - index))  # later requests finish first
        return completion(f"answer {index}")

    server = serve(reply)
    done = []
    model = vlground.load_model(server.url, served_model=QWEN25)
    results = model.ask(picture, [f"q{i} what is it?" for i in range(6)], batch_size=3, progress=done.append)
    assert [r.text for r in results] == [f"answer {i}" for i in range(6)]
    assert 1 < server.peak <= 3 and sum(done) == 6


@pytest.mark.parametrize("status, advice", [(500, "check its log"), (401, "OPENAI_API_KEY"), (404, "ends in /v1")])
def test_http_errors_name_the_url_status_and_what_to_check(serve, picture, status, advice):
    server = serve(lambda body: (status, {"object": "error", "message": "boom"}))
    model = vlground.load_model(server.url, served_model=QWEN25)
    with pytest.raises(ServerError, match=f"HTTP {status}") as error:
        model.ground(picture, "the cat")
    assert f"{server.url}/chat/completions" in str(error.value) and "boom" in str(error.value) and advice in str(error.value)


def test_answer_without_choices_is_an_error(serve, picture):
    server = serve(lambda body: (200, {"object": "chat.completion", "choices": []}))
    with pytest.raises(ServerError, match="without a choice"):
        vlground.load_model(server.url, served_model=QWEN25).ground(picture, "the cat")


def test_connection_refused_and_timeout(serve, picture):
    with socket.socket() as probe:  # bound, not listening: connections are refused, and no other process takes the port
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
        with pytest.raises(ServerError, match=f"cannot reach {url}/models.*server is running"):
            vlground.load_model(url)
        with pytest.raises(ServerError, match=f"cannot reach {url}/chat/completions"):
            vlground.load_model(url, served_model=QWEN25).ground(picture, "the cat")
    server = serve(lambda body: (time.sleep(0.5), completion("late"))[1])
    slow = vlground.Model(ServerBackend.connect(server.url, QWEN25, timeout=0.1))
    with pytest.raises(ServerError, match="did not answer within 0.1 s"):
        slow.ground(picture, "the cat")


@pytest.mark.parametrize("listed, family, name", [
    ({"id": QWEN25, "root": QWEN25}, "qwen2.5-vl", QWEN25),
    ({"id": "vision", "root": "/models/Qwen2-VL-7B-Instruct"}, "qwen2-vl", "vision"),  # an alias: vLLM's root tells
])
def test_model_discovery_from_the_models_list(serve, picture, listed, family, name):
    server = serve(lambda body: completion("a cat"), models=[listed, {"id": "other", "root": "other"}])
    model = vlground.load_model(server.url)
    assert model.family.name == family
    model.caption(picture, grounded=False)
    assert server.chats[0][1]["model"] == name


def test_unknown_or_base_models_are_refused_with_advice(serve):
    server = serve(models=[{"id": "llava", "root": "/models/llava-1.5-7b"}])
    with pytest.raises(UnknownFamilyError, match="--served-model"):
        vlground.load_model(server.url)
    with pytest.raises(ValueError, match="chat turns only"):
        vlground.load_model(server.url, served_model="Qwen/Qwen-VL")
    with pytest.raises(ValueError, match="min/max pixels do not apply"):
        vlground.load_model(server.url, served_model="Qwen/Qwen-VL-Chat", max_pixels=100000)
    with pytest.raises(ValueError, match="server runs the model its own way"):
        vlground.load_model(server.url, served_model=QWEN25, device="cuda")
    with pytest.raises(ValueError, match="applies to a server URL"):
        vlground.load_model(QWEN25, served_model=QWEN25)
    assert server.chats == []


def test_api_key_from_the_environment_or_the_argument(serve, picture, monkeypatch):
    server = serve(lambda body: completion("a cat"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    vlground.load_model(server.url, served_model=QWEN25).caption(picture)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    vlground.load_model(server.url).caption(picture)
    vlground.Model(ServerBackend.connect(server.url, QWEN25, api_key="sk-arg")).caption(picture)
    auth = [headers.get("Authorization") for path, headers, body in server.requests]
    assert auth == [None, "Bearer sk-env", "Bearer sk-env", "Bearer sk-arg"]  # chat, models + chat, chat


def test_detect_command_with_a_server_url(serve, picture, tmp_path):
    path = tmp_path / "cat.png"
    picture.save(path)
    server = serve(lambda body: completion('[{"bbox_2d": [161, 119, 322, 238], "label": "cat"}]'))
    out = CliRunner().invoke(app, ["detect", str(path), "the cat", "--model", server.url, "--served-model", QWEN25, "--json"])
    assert out.exit_code == 0, out.output
    [found] = json.loads(out.stdout)["detections"]
    assert found["box"] == pytest.approx(CAT_BOX)
    failing = serve(lambda body: (500, {"message": "engine dead"}))
    out = CliRunner().invoke(app, ["detect", str(path), "the cat", "--model", failing.url, "--served-model", QWEN25])
    assert out.exit_code == 2 and "HTTP 500" in out.stderr and "engine dead" in out.stderr and "Traceback" not in out.output


def test_ocr_command_with_a_server_url(serve, picture, tmp_path):
    path = tmp_path / "page.png"
    picture.save(path)
    server = serve(lambda body: completion("HELLO WORLD"))
    out = CliRunner().invoke(app, ["ocr", str(path), "--engine", server.url, "--out", str(tmp_path / "r.jsonl")])
    assert out.exit_code == 0, out.output
    [record] = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert record["text"] == "HELLO WORLD" and record["engine"] == server.url and record["error"] is None
    assert server.chats[0][1]["messages"][0]["content"][1]["text"] == "Read all the text in the image."


class RawServer:
    """A loopback server that hands each accepted connection to `behave(conn)`: faults a real server
    is not made to show (trickling, huge bodies)."""

    def __init__(self, behave):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.behave = behave
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        with conn:
            conn.recv(1 << 20)  # the request (small in these tests)
            try:
                self.behave(conn)
            except OSError:
                pass  # the client hung up

    def close(self):
        self.sock.close()


@pytest.fixture
def raw_server():
    started = []
    yield lambda behave: started.append(RawServer(behave)) or started[-1]
    for server in started:
        server.close()


def _trickle_body(conn):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    for _ in range(100):
        conn.sendall(b" ")
        time.sleep(0.5)


def _trickle_headers(conn):
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
        conn.sendall(bytes([byte]))
        time.sleep(0.2)


@pytest.mark.parametrize("behave", [_trickle_body, _trickle_headers])
def test_the_timeout_is_a_deadline_for_the_whole_answer(raw_server, picture, behave):
    server = raw_server(behave)
    model = vlground.Model(ServerBackend.connect(server.url, QWEN25, timeout=1.5))
    started = time.monotonic()
    with pytest.raises(ServerError, match="did not answer within 1.5 s"):
        model.ground(picture, "the cat")
    # every byte came within the socket timeout, the call did not; a deadline per read would take
    # 25 s (headers) or 50 s (body), so 10 s leaves a busy machine its delays and still tells them apart
    assert time.monotonic() - started < 10.0


def test_an_answer_over_the_size_limit_is_refused_unread(raw_server, picture):
    from vlground.models.server import HTTPPolicy

    sent = []

    def declared_huge(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n")
        sent.append(conn.send(b"x" * 65536))

    def chunked_endless(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(200):
            conn.sendall(b"10000\r\n" + b"x" * 65536 + b"\r\n")

    for behave in (declared_huge, chunked_endless):
        server = raw_server(behave)
        backend = ServerBackend.connect(server.url, QWEN25, policy=HTTPPolicy(max_body=1_000_000, timeout=10))
        with pytest.raises(ServerError, match="over the 1000000 byte limit"):
            vlground.Model(backend).ground(picture, "the cat")


def test_429_and_503_are_retried_honouring_retry_after_then_given_up(serve, picture):
    from vlground.models.server import HTTPPolicy

    statuses = iter([429, 503])

    def flaky(body):
        status = next(statuses, 200)
        return (status, {"message": "busy"}) if status != 200 else completion("a cat")

    server = serve(flaky)
    started = time.monotonic()
    backend = ServerBackend.connect(server.url, QWEN25, policy=HTTPPolicy(backoff=0.3))
    assert vlground.Model(backend).caption(picture, grounded=False).text == "a cat"
    assert len(server.chats) == 3 and time.monotonic() - started >= 0.3 + 0.6

    always = serve(lambda body: (503, {"message": "overloaded"}))
    backend = ServerBackend.connect(always.url, QWEN25, policy=HTTPPolicy(backoff=0.01, retries=2))
    with pytest.raises(ServerError, match=r"HTTP 503 \(unavailable\), still unavailable after 3 tries.*giving up"):
        vlground.Model(backend).caption(picture)
    assert len(always.chats) == 3


def test_a_retry_after_beyond_the_limit_gives_up_at_once(raw_server, picture):
    def later(conn):
        conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3600\r\nContent-Length: 0\r\n\r\n")

    server = raw_server(later)
    started = time.monotonic()
    with pytest.raises(ServerError, match="asked to retry after 3600 s, more than the 60 s allowed"):
        vlground.Model(ServerBackend.connect(server.url, QWEN25)).caption(picture)
    assert time.monotonic() - started < 2


def test_redirects_are_refused_and_the_key_never_leaves(serve, raw_server, picture):
    elsewhere = serve(lambda body: completion("stolen"))

    def redirect(conn):
        conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {elsewhere.url}/chat/completions\r\nContent-Length: 0\r\n\r\n".encode())

    server = raw_server(redirect)
    backend = ServerBackend.connect(server.url, QWEN25, api_key="sk-secret")
    with pytest.raises(ServerError, match="redirected \\(HTTP 302\\).*not followed"):
        vlground.Model(backend).caption(picture)
    assert elsewhere.requests == []


def test_nothing_the_server_lists_is_read_as_a_local_path(serve, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    server = serve(models=[{"id": "vision", "root": str(tmp_path)}])
    with pytest.raises(UnknownFamilyError, match="'vision'"):
        vlground.load_model(server.url)  # a folder on THIS machine says nothing about the server's model


def test_extensions_are_dropped_once_a_server_refuses_them_by_name(serve, picture, caplog):
    import logging

    def strict(body):  # what transformers serve does with fields outside the OpenAI API
        unexpected = {"skip_special_tokens", "min_tokens", "top_k"} & set(body)
        if unexpected:
            return 422, {"detail": f"Unexpected fields in the request: {unexpected}"}
        return completion('[{"bbox_2d": [161, 119, 322, 238], "label": "cat"}]')

    server = serve(strict)
    model = vlground.load_model(server.url, served_model=QWEN25)
    with caplog.at_level(logging.WARNING, logger="vlground"):
        first = model.ground(picture, "the cat", min_new_tokens=2)
        second = model.ground(picture, "the cat")
    assert first.detections[0].xyxy == pytest.approx(CAT_BOX) == second.detections[0].xyxy
    sent = [body for _, body in server.chats]
    assert len(sent) == 3 and "skip_special_tokens" in sent[0] and "min_tokens" in sent[0]
    assert all("skip_special_tokens" not in body and "min_tokens" not in body for body in sent[1:])
    assert caplog.text.count("refuses vLLM's request extensions") == 1 and "min_new_tokens" in caplog.text
    other = serve(lambda body: (422, {"detail": "image too large"}))
    with pytest.raises(ServerError, match="HTTP 422: .*image too large"):
        vlground.load_model(other.url, served_model=QWEN25).caption(picture)
    assert len(other.chats) == 1  # a refusal that names no extension is not retried


def test_with_errors_recorded_a_failing_request_does_not_cost_the_others(serve, picture):
    from vlground.core.options import GenerationOptions
    from vlground.models.base import Request
    from vlground.prompts import build_prompt

    def reply(body):
        question = body["messages"][0]["content"][1]["text"].split()[0]
        return (500, {"message": "engine hiccup"}) if question == "q2" else completion(question)

    backend = vlground.load_model(serve(reply).url, served_model=QWEN25).backend
    requests = [Request(picture, build_prompt("ask", backend.family, question=f"q{i}")) for i in range(5)]
    answers = backend.generate(requests, GenerationOptions(batch_size=2), errors="record")
    assert [a.text for a in answers] == ["q0", "q1", "", "q3", "q4"]
    assert isinstance(answers[2].error, ServerError) and "engine hiccup" in str(answers[2].error)
    with pytest.raises(ServerError, match="engine hiccup"):
        backend.generate(requests, GenerationOptions(batch_size=2))
