"""--refill, --token-budget, --prefetch and --static-cache on the command line: every model command
hands them to the model, a tiny model answers the same with them as without, and refill really ran
(rows in flight took the next request); combinations that cannot work are one line, exit status 2."""
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vlground.cli.main import app
from vlground.models.hf import HFBackend
from vlground.testing.shapes import make_shapes_dataset

runner = CliRunner()
SCHEDULED = ["--refill", "--token-budget", "5000", "--prefetch"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), count=3)


@pytest.fixture
def seen(monkeypatch):
    """The GenerationOptions each HFBackend.generate call got, and the refill engines built."""
    seen = {"options": [], "engines": []}
    generate, row_engine = HFBackend.generate, HFBackend._row_engine

    def spy_generate(self, requests, options=None, *args, **kwargs):
        seen["options"].append(options)
        return generate(self, requests, options, *args, **kwargs)

    def spy_row_engine(self, *args, **kwargs):
        seen["engines"].append(row_engine(self, *args, **kwargs))
        return seen["engines"][-1]

    monkeypatch.setattr(HFBackend, "generate", spy_generate)
    monkeypatch.setattr(HFBackend, "_row_engine", spy_row_engine)
    return seen


@pytest.mark.parametrize("command", ["detect", "label", "ocr", "bench"])
def test_every_model_command_hands_the_scheduling_flags_to_the_model(command, tiny_checkpoint, shapes, tmp_path, seen):
    model, image = str(tiny_checkpoint("qwen2.5-vl")), str(shapes.parent / "shape_00.png")
    args = {
        "detect": ["detect", image, "the red square", "--model", model, "--out", str(tmp_path / "boxes.jsonl")],
        "label": ["label", image, "-c", "square", "--model", model, "--out", str(tmp_path / "labels.jsonl")],
        "ocr": ["ocr", image, "--engine", model, "--out", str(tmp_path / "text.jsonl")],
        "bench": ["bench", "refcoco", "--model", model, "--gt", str(shapes), "--image-root", str(shapes.parent),
                  "--out", str(tmp_path / "run")],
    }[command]
    done = runner.invoke(app, [*args, "--device", "cpu", "--max-new-tokens", "4", "-q", *SCHEDULED])
    assert done.exit_code in (0, 1) and "Traceback" not in done.output, done.output
    assert seen["options"] and all(o.refill and o.token_budget == 5000 and o.prefetch for o in seen["options"])
    assert seen["engines"], "refill was asked for but no row engine was built"


def _pictures(folder, count=6):
    """Images of mixed sizes (so prompt lengths differ)."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    for i in range(count):
        w, h = int(rng.integers(60, 300)), int(rng.integers(60, 300))
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def _answers(path):
    return [{k: r[k] for k in ("path", "detections", "text", "error")} for r in map(json.loads, path.read_text().splitlines())]


def test_detect_with_refill_answers_as_without_and_its_rows_take_the_next_images(tiny_checkpoint, tmp_path, seen):
    pictures = _pictures(tmp_path / "pictures")
    common = ["detect", str(pictures), "the cat", "--model", str(tiny_checkpoint("qwen2.5-vl")), "--device", "cpu",
              "--batch-size", "2", "--max-new-tokens", "12", "-q"]
    plain, refilled, cached = (tmp_path / name for name in ("plain.jsonl", "refill.jsonl", "static.jsonl"))
    assert runner.invoke(app, [*common, "--out", str(plain)]).exit_code == 0
    assert not seen["engines"]
    done = runner.invoke(app, [*common, "--out", str(refilled), *SCHEDULED])
    assert done.exit_code == 0, done.output
    assert _answers(refilled) == _answers(plain)
    # the six images reached one refill of two rows: rows whose answers ended took the waiting images
    [engine] = seen["engines"]
    assert len(engine.requests) == 6 and engine.stats.useful_tokens == engine.stats.row_steps > 0
    assert runner.invoke(app, [*common, "--out", str(cached), "--static-cache"]).exit_code == 0
    assert seen["options"][-1].static_cache and _answers(cached) == _answers(plain)


@pytest.mark.parametrize("args, words", [
    (["detect", "x.png", "cat", "--refill", "--static-cache"], "--refill and --static-cache do not combine"),
    (["detect", "x.png", "cat", "--token-budget", "0"], "token_budget must be an integer >= 1"),
    (["ocr", "x.png", "--out", "t.jsonl", "--refill", "--token-budget", "900"], "--token-budget, --refill are for Qwen engines"),
])
def test_flags_that_cannot_apply_are_one_line_before_any_work(args, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (32, 32)).save("x.png")
    done = runner.invoke(app, args)
    assert done.exit_code == 2 and words in done.output and len(done.output.strip().splitlines()) == 1, done.output
    assert not (tmp_path / "t.jsonl").exists()
