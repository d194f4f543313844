"""The OpenAI-compatible server backend against a real HTTP server on 127.0.0.1 that imitates vLLM's
API: the request shape, boxes in original pixels from the derived input size, order under
concurrency, model discovery, API keys, clear errors, and the CLI pointed at a URL."""
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
from vlground.families import UnknownFamilyError
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
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{closed_port}/v1"
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
