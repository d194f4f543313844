"""Issue 24, the batch jobs: no run writes over its inputs or reads its own outputs, exports are one per
input, resume keys do not depend on the working directory, a resume with other answer-changing
settings is refused, and the output's odd lines do not stop a resume. Through the command line, on
the built-in OCR engine and on a stand-in model server on 127.0.0.1 (no weights)."""
from __future__ import annotations

import http.server
import io
import json
import os
import threading
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from vlground.cli.main import app
from vlground.ocr.synthetic import Document, Style, render
from test_server_backend import QWEN25, FakeServer, completion  # tests/ is on sys.path

FONT = str(Path(__file__).parent / "fonts" / "DejaVuSansCondensed-Bold.ttf")


def _sign(text: str) -> Image.Image:
    return render(Document("sign", [[[(text, "center")]]]), Style(font=FONT, size=40))


def _png(text: str) -> bytes:
    buffer = io.BytesIO()
    _sign(text).save(buffer, format="PNG")
    return buffer.getvalue()


def _run(*args: str, **kwargs):
    return CliRunner().invoke(app, list(args), **kwargs)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def served():
    """A model server answering every image with no box; `model` is the options that name it."""
    server = FakeServer(lambda body: completion("[]"), [{"id": QWEN25, "object": "model", "root": QWEN25}])
    server.model = ["--model", server.url]
    yield server
    server.stop()


@pytest.mark.parametrize("command", ["ocr", "detect", "label"])
def test_an_output_that_is_one_of_the_inputs_is_refused_and_left_intact(command, served, tmp_path):
    victim = tmp_path / "victim.png"
    victim.write_bytes(_png("Keep me"))
    os.link(victim, tmp_path / "same.png")  # another name of the same file
    before = victim.read_bytes()
    for out in (victim, tmp_path / "same.png"):
        args = {"ocr": ["ocr", str(victim)], "detect": ["detect", str(victim), "the cat", *served.model],
                "label": ["label", str(victim), "-c", "cat", "--format", "jsonl", *served.model]}[command]
        res = _run(*args, "--out", str(out), "--overwrite")
        assert res.exit_code == 2 and "is one of the inputs" in res.stderr, res.output
        assert victim.read_bytes() == before


def test_each_input_gets_its_own_export_even_where_their_names_meet(tmp_path, monkeypatch):
    from test_sources import _Server  # serves a blank /photo.png

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{httpd.server_address[1]}"
    try:
        (tmp_path / "in" / host).mkdir(parents=True)
        (tmp_path / "in" / "a.png").write_bytes(_png("Alpha"))
        (tmp_path / "in" / host / "photo.png").write_bytes(_png("Local"))  # where the URL's export would go
        (tmp_path / "in" / "stdin").write_bytes(_png("Named"))  # where stdin's export would go
        res = _run("ocr", str(tmp_path / "in" / "a.png"), str(tmp_path / "in" / host / "photo.png"), f"http://{host}/photo.png",
                   str(tmp_path / "in" / "stdin"), "-", "--format", "txt", "--out", str(tmp_path / "r.jsonl"),
                   input=_png("Piped"))
    finally:
        httpd.shutdown()
    assert res.exit_code == 0, res.output
    texts = sorted(p.read_text().strip() for p in (tmp_path / "r").rglob("*.txt"))
    assert texts == ["", "Alpha", "Local", "Named", "Piped"]  # the URL's image is blank


def test_a_run_never_reads_its_own_output_or_exports(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(_png("Alpha"))
    for _ in range(3):
        res = _run("ocr", str(tmp_path / "in"), "-r", "--out", str(tmp_path / "in" / "res.jsonl"), "--format", "pdf", "--resume")
        assert res.exit_code == 0, res.output
    assert [Path(r["path"]).name for r in _records(tmp_path / "in" / "res.jsonl")] == ["a.png"]
    assert sorted(p.relative_to(tmp_path / "in").as_posix() for p in (tmp_path / "in").rglob("*.pdf")) == ["res/a.png.pdf"]


@pytest.mark.parametrize("command", ["detect", "label"])
def test_detect_and_label_resume_from_another_working_directory(command, served, tmp_path, monkeypatch):
    images = tmp_path / "data" / "imgs"
    images.mkdir(parents=True)
    for word in ("Bakery", "Museum"):
        (images / f"{word}.png").write_bytes(_png(word))
    out = tmp_path / "r.jsonl"
    extra = ["the cat"] if command == "detect" else ["-c", "cat", "--format", "jsonl"]
    monkeypatch.chdir(tmp_path / "data")
    first = _run(command, "imgs", *extra, *served.model, "--out", str(out))
    assert first.exit_code == 0, first.output
    asked = len(served.chats)
    monkeypatch.chdir(tmp_path)
    again = _run(command, "data/imgs", *extra, *served.model, "--out", str(out), "--resume")
    assert again.exit_code == 0, again.output
    assert len(served.chats) == asked and len(_records(out)) == 2, again.output  # nothing asked or written again


def test_stdin_named_twice_is_one_input(tmp_path):
    res = _run("ocr", "-", "-", "--out", str(tmp_path / "r.jsonl"), input=_png("Piped"))
    assert res.exit_code == 0 and "stdin was empty" not in res.output, res.output
    assert [r["text"] for r in _records(tmp_path / "r.jsonl")] == ["Piped"]


def test_resume_over_a_line_nested_too_deeply_names_it_and_goes_on(tmp_path):
    (tmp_path / "a.png").write_bytes(_png("Alpha"))
    out = tmp_path / "r.jsonl"
    out.write_text('{"note": "kept"}\n' + "[" * 100_000 + "\n")
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "vlground.cli.main", "ocr", str(tmp_path / "a.png"), "--out", str(out), "--resume"],
                         capture_output=True, text=True, timeout=300)  # the warning as a user's terminal shows it
    assert res.returncode == 0, res.stderr
    assert f"{out}:2: not a record of this run (JSON nested too deeply)" in res.stderr and "Recursion" not in res.stderr
    lines = out.read_text().splitlines()
    assert lines[:2] == ['{"note": "kept"}', "[" * 100_000] and [json.loads(line)["text"] for line in lines[2:]] == ["Alpha"]
    again = _run("ocr", str(tmp_path / "a.png"), "--out", str(out), "--resume")  # and the output stays resumable
    assert again.exit_code == 0 and "skipped 1" in again.stderr, again.output


def test_yolo_names_that_collide_are_refused_before_the_first_image_and_nothing_is_left(served, tmp_path):
    folder = tmp_path / "imgs"
    for name in ("a/x.jpg", "b/x.jpg", "a__x_jpg.jpg"):  # the first two become a__x_jpg.jpg, b__x_jpg.jpg
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 24)).save(folder / name)
    out = tmp_path / "yolo"
    res = _run("label", str(folder), "-r", "-c", "cat", "--format", "yolo", *served.model, "--out", str(out))
    assert res.exit_code == 2 and "a__x_jpg.jpg" in res.stderr, res.output
    assert served.chats == []  # refused before the first image was asked about
    assert not out.exists() or not list(out.glob(".*tmp*")), list(out.iterdir())


def test_bench_refuses_a_resume_with_other_answer_changing_settings(tmp_path, monkeypatch):
    import vlground
    from test_eval_bench import ScriptedModel, make_gt

    gt = make_gt(tmp_path, ["cat", "dog"])
    monkeypatch.setattr(vlground, "load_model", lambda *args, **kwargs: ScriptedModel())
    args = ["bench", "refcoco", "--model", "scripted", "--gt", str(gt), "--out", str(tmp_path / "run"), "--image-root", str(tmp_path)]
    assert _run(*args).exit_code == 0
    settings = json.loads((tmp_path / "run" / "run.json").read_text())
    assert {"adapter", "max_pixels", "min_pixels", "max_new_tokens", "thinking"} <= set(settings["settings"]), settings
    for other in (["--max-pixels", "100000"], ["--adapter", str(tmp_path)], ["--max-new-tokens", "7"], ["--thinking", "off"]):
        res = _run(*args, *other)
        assert res.exit_code == 2 and other[0].lstrip("-").replace("-", "_") in res.stderr, res.output
    assert _run(*args).exit_code == 0  # the same settings resume
