"""`vlground ocr --engine <Qwen model>`: a tiny random checkpoint end to end, the record shape of
spotted lines, batches that fail, and missing weights."""
from __future__ import annotations


import pytest
from PIL import Image
from typer.testing import CliRunner

from ocr_app import ocr_app, read_records
from vlground.jobs import ocr as runner
from vlground.core.results import Detection, Result
from vlground.testing import make_tiny_model




@pytest.fixture
def images(tmp_path) -> list[str]:
    paths = []
    for index, size in enumerate([(64, 48), (80, 40), (40, 90)]):
        path = tmp_path / f"img{index}.png"
        Image.new("RGB", size, (255, 255, 255)).save(path)
        paths.append(str(path))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    return paths + [str(tmp_path / "broken.png")]


def test_tiny_checkpoint_end_to_end(tmp_path, images):
    model = make_tiny_model("qwen2.5-vl", tmp_path / "tiny-qwen2.5-vl")
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", *images, "--engine", str(model), "--batch-size", "2", "--out", str(out)])
    assert result.exit_code == 1, result.stderr  # the broken file
    records = read_records(out)
    assert [r["path"] for r in records] == images
    assert all(r["engine"] == str(model) for r in records)
    assert [(r["width"], r["height"]) for r in records[:3]] == [(64, 48), (80, 40), (40, 90)]
    assert all(r["error"] is None and isinstance(r["text"], str) and r["lines"] == [] for r in records[:3])
    assert records[3]["error"] and records[3]["width"] is None


class _StubModel:
    """Stands in for vlground.load_model's Model: answers from a table, fails on request."""

    def __init__(self, fail_on_size=None):
        self.fail_on_size = fail_on_size
        self.batches = []
        self.options = []

    def _answer(self, images, make, options=None):
        self.batches.append(len(images))
        self.options.append(options)
        if any(i.size == self.fail_on_size for i in images):
            raise RuntimeError("device-side assert")
        return [make(i) for i in images]

    def read_text(self, images, options=None):
        return self._answer(images, lambda i: Result(detections=[], text=f" text of {i.width}x{i.height}\n", image_size=i.size),
                            options)

    def spot_text(self, images, options=None):
        def spotted(image):
            return Result(detections=[
                Detection(label=None, box=(1.0, 2.0, 30.0, 12.0), text="EXIT"),
                Detection(label=None, quad=((0.0, 20.0), (30.0, 22.0), (29.0, 32.0), (0.0, 30.0)), text="Platform 4"),
                Detection(label="cat", point=(3.0, 4.0)),  # not a text line
            ], text="", image_size=image.size)
        return self._answer(images, spotted, options)


def test_spotted_lines_become_record_lines(tmp_path, images, monkeypatch):
    monkeypatch.setattr(runner, "load_model", lambda *a, **k: _StubModel())
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", images[0], "--engine", "Qwen/Qwen3-VL-4B-Instruct", "--mode", "lines", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    record = read_records(out)[0]
    assert record["text"] == "EXIT\nPlatform 4"
    assert record["lines"] == [
        {"text": "EXIT", "box": [1.0, 2.0, 30.0, 12.0], "score": None},
        {"text": "Platform 4", "quad": [[0.0, 20.0], [30.0, 22.0], [29.0, 32.0], [0.0, 30.0]], "score": None},
    ]


def test_a_failing_batch_is_retried_image_by_image(tmp_path, images, monkeypatch):
    stub = _StubModel(fail_on_size=(80, 40))
    monkeypatch.setattr(runner, "load_model", lambda *a, **k: stub)
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", *images[:3], "--engine", "Qwen/Qwen2.5-VL-7B-Instruct", "--out", str(out)])
    assert result.exit_code == 1
    records = read_records(out)
    assert [r["text"] for r in records] == ["text of 64x48", "", "text of 40x90"]
    assert "device-side assert" in records[1]["error"]
    assert stub.batches == [3, 1, 1, 1]


def test_missing_weights_is_a_clear_cli_error(tmp_path, images, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", images[0], "--engine", "Qwen/Qwen2.5-VL-7B-Instruct", "--out", str(out)])
    assert result.exit_code == 2
    assert "cannot find the weights of Qwen/Qwen2.5-VL-7B-Instruct" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not out.exists() or out.read_text() == ""  # nothing written before the engine was up


def test_token_budget_and_batch_size_reach_the_model_and_quiet_is_quiet(tmp_path, images, monkeypatch):
    stub = _StubModel()
    monkeypatch.setattr(runner, "load_model", lambda *a, **k: stub)
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", *images[:2], "--engine", "Qwen/Qwen2.5-VL-7B-Instruct", "--out", str(out),
                                         "--max-new-tokens", "17", "--batch-size", "2", "--quiet"])
    assert result.exit_code == 0, result.stderr
    assert [(o.max_new_tokens, o.batch_size) for o in stub.options] == [(17, 2)]
    assert result.stderr == ""  # no bar, no summary line
    zero = CliRunner().invoke(ocr_app(), ["ocr", images[0], "--engine", "x", "--out", str(out), "--max-new-tokens", "0"])
    assert zero.exit_code == 2
