"""detect and bench refcoco on every executor (label: tests/test_label.py, test_ray_label.py; ocr:
test_ocr_runner.py, test_ray_ocr.py): worker processes (`--workers N`) and Ray actors give
the records of one process, every input exactly once. detect's tiny model writes forced answers in
every process it runs in (`vlground.testing.forced.ForcedWorker`), so the boxes are real ones;
bench's answers are the tiny model's own (greedy, so the same in every process)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from vlground.core.options import GenerationOptions, LoadOptions
from vlground.core.records import record_key
from vlground.eval.refcoco_data import RefSample
from vlground.io.sink import open_sink
from vlground.io.sources import expand
from vlground.jobs.bench import run_refcoco_bench
from vlground.jobs.detect import DetectJob, DetectWorker, run_detect
from vlground.jobs.loop import RunOptions
from vlground.testing.forced import ForcedWorker

# Qwen2.5-VL answers in pixels of its resized input; one box per image, named after its query
ANSWERS = {"the cat": '[{"bbox_2d": [4, 6, 20, 24], "label": "the cat"}]'}
IMAGES = 6


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(IMAGES):
        Image.new("RGB", (56 + 8 * i, 56), (40 * i, 90, 120)).save(folder / f"p{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def _detect(photos: Path, out: Path, model: str, run: RunOptions) -> list[dict]:
    job = DetectJob(("the cat",), generation=GenerationOptions(batch_size=2, max_new_tokens=40))
    worker = ForcedWorker(DetectWorker(model, LoadOptions(max_pixels=12544), job), ANSWERS)
    with open_sink(out, record_key, False, False) as sink:
        summary = run_detect(expand([str(photos)]), worker, sink, run)
    assert (summary.done, summary.failed) == (IMAGES + 1, 1)
    return [json.loads(line) for line in out.read_text().splitlines()]


def _by_name(records: list[dict]) -> dict[str, dict]:
    names = [Path(r["path"]).name for r in records]
    assert sorted(names) == sorted(set(names)), "an input written twice"
    return {Path(r["path"]).name: r for r in records}


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_detect_on_every_executor_gives_the_records_of_one_process(executor, photos, tmp_path, tiny_checkpoint, request):
    model = str(tiny_checkpoint("qwen2.5-vl"))
    alone = _by_name(_detect(photos, tmp_path / "alone.jsonl", model, RunOptions()))
    run = RunOptions(workers=2) if executor == "processes" else RunOptions(ray=request.getfixturevalue("ray_cluster"), workers=2)
    spread = _by_name(_detect(photos, tmp_path / f"{executor}.jsonl", model, run))
    assert set(spread) == {f"p{i}.png" for i in range(IMAGES)} | {"broken.png"}  # every input exactly once
    assert spread == alone
    boxes = [r["detections"] for name, r in spread.items() if name != "broken.png"]
    assert all(len(found) == 1 and found[0]["label"] == "the cat" for found in boxes)  # the forced answer, in every process
    assert spread["broken.png"]["error"]


def _samples(folder: Path) -> list[RefSample]:
    samples = []
    for i in range(5):
        Image.new("RGB", (60 + 10 * i, 50), (50 * i, 100, 100)).save(folder / f"{i}.png")
        samples.append(RefSample(id=f"s{i}", sent=f"the thing {i}", box=(1, 1, 20, 20), width=60 + 10 * i, height=50,
                                 split="val", image=f"{i}.png"))
    samples.append(RefSample(id="gone", sent="missing", box=(1, 1, 2, 2), width=9, height=9, split="val", image="gone.png"))
    return samples


def _predictions(folder: Path) -> list[dict]:
    return sorted((json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()),
                  key=lambda r: r["index"])


@pytest.mark.parametrize("executor", ["processes", "ray"])
def test_bench_on_every_executor_answers_and_scores_as_one_process(executor, tmp_path, tiny_checkpoint, request):
    import vlground

    samples = _samples(tmp_path)
    model = str(tiny_checkpoint("qwen2.5-vl"))
    common = dict(gt_name="tiny-refcoco", image_root=tmp_path, generation=GenerationOptions(batch_size=2, max_new_tokens=8))
    alone = run_refcoco_bench(vlground.load_model(model), model, samples, tmp_path / "alone", **common)
    run = RunOptions(workers=2) if executor == "processes" else RunOptions(ray=request.getfixturevalue("ray_cluster"), workers=2)
    spread = run_refcoco_bench(None, model, samples, tmp_path / executor, run=run, **common)
    assert [r["index"] for r in _predictions(tmp_path / executor)] == list(range(6))  # each sample once
    assert _predictions(tmp_path / executor) == _predictions(tmp_path / "alone")  # the same answers
    assert _predictions(tmp_path / executor)[5]["error"]  # an unreadable image: an error line
    assert {k: spread[k] for k in ("accuracy", "errors", "n")} == {k: alone[k] for k in ("accuracy", "errors", "n")}
