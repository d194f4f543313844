"""The server runtime against a REAL OpenAI-compatible server: `transformers serve` on 127.0.0.1, on CPU,
serving tiny Qwen2.5-VL and Qwen3-VL checkpoints (started once for this module, stopped at its end).

What a fake cannot show: the request shape a real server accepts (transformers serve refuses vLLM's
extensions with HTTP 422), the server's own image processor deciding the frame Qwen2.5-VL answers
in, answers under concurrency, and a server that goes away mid-run."""
from __future__ import annotations

import base64
import io
import json
import logging
import shutil
import urllib.request

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import vlground
from vlground.cli.main import app
from vlground.core.options import GenerationOptions
from vlground.models.base import Request
from vlground.models.server import ServerError
from vlground.prompts import build_prompt

pytest.importorskip("fastapi", reason="needs the serving extra: pip install 'transformers[serving]' (in vlground[dev])")

SERVER_MAX_PIXELS = 100352  # 128 visual tokens: the served Qwen2.5-VL processor's own limit, not the family's


@pytest.fixture(scope="module")
def served(tiny_checkpoint, tmp_path_factory):
    """(server, {family: folder}) with both tiny models loaded; the folder names carry the family,
    the way a hub id does, and are what the server lists."""
    from vlground.testing.serve import transformers_server

    from vlground.testing import make_tiny_model

    root = tmp_path_factory.mktemp("served")
    folders = {"qwen2.5-vl": root / "Qwen2.5-VL-tiny", "qwen3-vl": root / "Qwen3-VL-tiny", "qwen3.5": root / "Qwen3.5-tiny"}
    for family, folder in folders.items():
        shutil.copytree(tiny_checkpoint(family), folder)
    folders["thinking"] = make_tiny_model("qwen3-vl", root / "Qwen3-VL-Thinking-tiny", thinking="always")
    config = folders["qwen2.5-vl"] / "processor_config.json"
    settings = json.loads(config.read_text())
    settings["image_processor"]["size"]["longest_edge"] = SERVER_MAX_PIXELS
    config.write_text(json.dumps(settings))
    with transformers_server(root, list(folders.values())) as server:
        yield server, folders


@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in [(640, 480), (300, 200), (90, 160)]]


def raw_chat(url: str, model: str, image: Image.Image, text: str, max_tokens: int = 8, **extra) -> dict:
    """One standard chat request, straight to the server (no vlground in the way); `extra` fields
    (chat_template_kwargs) go into the request as they are."""
    png = io.BytesIO()
    image.save(png, format="PNG")
    content = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()}},
               {"type": "text", "text": text}]
    payload = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0.0,
               **extra}
    request = urllib.request.Request(url + "/chat/completions", json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_detect_through_the_library_answers_what_the_server_answers(served, photos, family, caplog):
    server, folders = served
    model = vlground.load_model(server.url, served_model=str(folders[family]))
    assert model.family.name == family  # told from the listed name alone
    with caplog.at_level(logging.WARNING, logger="vlground"):
        result = model.detect(photos[1], "cat", max_new_tokens=8)
    prompt = build_prompt("detect", family, categories=["cat"]).text
    direct = raw_chat(server.url, str(folders[family]), photos[1], prompt)["choices"][0]["message"]["content"]
    assert result.raw == direct and result.image_size == (300, 200)
    # transformers serve refused skip_special_tokens with HTTP 422; the request went again without it
    assert "refuses vLLM's request extensions (skip_special_tokens)" in caplog.text
    assert model.backend.takes_extensions is False


def test_qwen25_input_size_matches_the_servers_processor(served, photos):
    """The server's processor allows 100352 pixels; told so, the client derives the frame the model saw.
    The server's prompt token counts tell the visual tokens it made of each image: w*h/784."""
    server, folders = served
    name = str(folders["qwen2.5-vl"])
    backend = vlground.load_model(server.url, served_model=name, max_pixels=SERVER_MAX_PIXELS).backend
    default = vlground.load_model(server.url, served_model=name).backend  # the family's released limit
    prompt = build_prompt("read_text", "qwen2.5-vl")
    answers = backend.generate([Request(p, prompt) for p in photos], GenerationOptions(max_new_tokens=1))
    tokens = [raw_chat(server.url, name, p, prompt.text, max_tokens=1)["usage"]["prompt_tokens"] for p in photos]
    visual = [w * h // 784 for w, h in (a.input_size for a in answers)]
    assert [t - v for t, v in zip(tokens, visual)] == [tokens[0] - visual[0]] * 3  # the same text tokens for each
    assert answers[0].input_size == (364, 252) and 364 * 252 <= SERVER_MAX_PIXELS
    [unbounded] = default.generate([Request(photos[0], prompt)], GenerationOptions(max_new_tokens=1))
    assert unbounded.input_size == (644, 476)  # what the client would wrongly assume without max_pixels


def test_several_requests_in_flight_keep_their_order(served):
    server, folders = served
    model = vlground.load_model(server.url, served_model=str(folders["qwen3-vl"]))
    rng = np.random.default_rng(5)  # sizes out of order: batches are formed by size, answers come back by input
    images = [Image.fromarray(rng.integers(0, 255, (64, w, 3), dtype=np.uint8)) for w in (200, 64, 150, 96, 250, 128)]
    together = model.ask(images, "What is it?", batch_size=3, max_new_tokens=6)
    one_by_one = [model.ask(image, "What is it?", max_new_tokens=6) for image in images]
    assert [r.raw for r in together] == [r.raw for r in one_by_one]
    assert len({r.raw for r in together}) > 1  # the images steer the answers: order is visible


def test_detect_command_with_the_server_url(served, photos, tmp_path):
    server, folders = served
    path = tmp_path / "photo.png"
    photos[1].save(path)
    out = CliRunner().invoke(app, ["detect", str(path), "cat", "--model", server.url, "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert set(data) == {"detections", "text"}
    # the server's first listed model answered: Qwen2.5-VL, named from the listing, never read from disk
    prompt = build_prompt("ground", "qwen2.5-vl", phrase="cat").text
    direct = raw_chat(server.url, str(folders["qwen2.5-vl"]), photos[1], prompt, max_tokens=512)["choices"][0]["message"]["content"]
    expected = vlground.parse(direct, "qwen2.5-vl", image_size=(300, 200), input_size=(308, 196))
    assert data["text"] == expected.text


def test_ocr_command_with_the_server_as_engine(served, photos, tmp_path):
    server, folders = served
    pages = tmp_path / "pages"
    pages.mkdir()
    for index, photo in enumerate(photos[1:]):
        photo.save(pages / f"page{index}.png")
    out = tmp_path / "text.jsonl"
    result = CliRunner().invoke(app, ["ocr", str(pages), "--engine", server.url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["error"] for r in records] == [None, None] and {r["engine"] for r in records} == {server.url}
    prompt = build_prompt("read_text", "qwen2.5-vl").text
    for record in records:  # the first listed model read each page, exactly as a direct request does
        image = Image.open(record["path"]).convert("RGB")
        direct = raw_chat(server.url, str(folders["qwen2.5-vl"]), image, prompt, max_tokens=512)["choices"][0]["message"]["content"]
        assert record["text"] == direct.strip()


def test_thinking_on_and_off_reach_the_servers_chat_template(served, photos):
    """A tiny Qwen3.5 behind the server: --thinking reaches its template as chat_template_kwargs, and a
    reasoning request may write its thinking budget on top of the answer's."""
    server, folders = served
    name = str(folders["qwen3.5"])
    model = vlground.load_model(server.url, served_model=name)
    assert model.family.name == "qwen3.5" and model.backend.thinking_mode == "default"
    prompt = build_prompt("ground", "qwen3.5", phrase="cat").text
    off = model.ground(photos[1], "cat", thinking="off", max_new_tokens=6)
    on = model.ground(photos[1], "cat", thinking="on", max_new_tokens=6, max_thinking_tokens=4)

    def direct(switch, tokens):
        message = raw_chat(server.url, name, photos[1], prompt, max_tokens=tokens,
                           chat_template_kwargs={"enable_thinking": switch})
        return message["choices"][0]["message"]["content"], message["usage"]["prompt_tokens"]

    (off_text, off_prompt), (on_text, on_prompt) = direct(False, 6), direct(True, 10)
    assert off.raw == off_text and on.raw == on_text
    assert off_prompt > on_prompt  # off, the template wrote the empty block <think>\n\n</think>\n\n into the prompt
    assert off.reasoning is None  # its answer is all answer
    if "</think>" in on_text:  # on, the text is reasoning until a closer
        assert on.reasoning is not None and not on.reasoning_cut_short
    else:  # random weights rarely write one: the reasoning was cut short, no box
        assert on.reasoning_cut_short and on.detections == []


def test_the_servers_reasoning_content_lands_in_result_reasoning(served, photos):
    """transformers serve splits a Qwen3-VL-Thinking answer itself (reasoning_content); the result
    carries it, and the answer's text is what is parsed."""
    server, folders = served
    name = str(folders["thinking"])
    model = vlground.load_model(server.url, served_model=name)
    assert model.backend.thinking_mode == "always"  # told from the name
    result = model.ground(photos[1], "cat", max_new_tokens=4, max_thinking_tokens=4)
    message = raw_chat(server.url, name, photos[1], build_prompt("ground", "qwen3-vl", phrase="cat").text,
                       max_tokens=8)["choices"][0]["message"]
    assert message.get("reasoning_content") and result.reasoning.strip() == message["reasoning_content"].strip()
    assert result.reasoning_cut_short == (not (message.get("content") or "").strip())
    with pytest.raises(ValueError, match="always reasons before it answers"):
        model.ground(photos[1], "cat", thinking="off")


def test_a_server_stopped_mid_run_leaves_an_error_record_for_each_unanswered_input(served, photos):
    """Runs last in this module: it stops the shared server."""
    server, folders = served
    backend = vlground.load_model(server.url, served_model=str(folders["qwen3-vl"])).backend
    requests = [Request(photos[2], build_prompt("ask", "qwen3-vl", question=f"q{i}")) for i in range(6)]
    done = []

    def progress(count):
        done.append(count)
        if len(done) == 1:
            server.stop()  # after the first batch of two

    answers = backend.generate(requests, GenerationOptions(batch_size=2, max_new_tokens=4), progress, errors="record")
    assert len(answers) == 6 and sum(done) == 6  # nothing lost
    answered = [a for a in answers if a.error is None]
    failed = [a for a in answers if a.error is not None]
    assert len(answered) == 2 and all(a.text for a in answered)
    assert len(failed) == 4 and all(isinstance(a.error, ServerError) for a in failed)
    assert all("cannot reach" in str(a.error) and "check that the server is running" in str(a.error) for a in failed)
