"""`vlground label` in one process with a tiny model: every input gets one record, the datasets load
in pycocotools and supervision, --resume continues, bad options fail in one line, and Ray is never
imported."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vlground.cli.main import app

SIZES = {"a.png": (64, 48), "b.jpg": (72, 56), "c.png": (40, 80)}
CATEGORIES = ["cat", "dog"]


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three images, a file that is not one despite its suffix, and a note that is not read."""
    images = tmp_path / "imgs"
    images.mkdir()
    for name, size in SIZES.items():
        Image.new("RGB", size, (40 * len(name), 90, 200)).save(images / name)
    (images / "broken.jpg").write_bytes(b"not an image")
    (images / "notes.txt").write_text("ground truth elsewhere")
    return images


def label(*args: str):
    return CliRunner().invoke(app, ["label", *args])


def model_args(tiny_checkpoint, max_new_tokens: int = 8) -> list[str]:
    return ["--model", str(tiny_checkpoint("qwen2.5-vl")), "--max-new-tokens", str(max_new_tokens),
            "-c", CATEGORIES[0], "-c", CATEGORIES[1]]


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_coco_dataset_holds_what_the_model_found(folder, tmp_path, tiny_checkpoint):
    from pycocotools.coco import COCO

    import vlground

    out = tmp_path / "coco"
    result = label(str(folder), "--format", "coco", "--out", str(out), *model_args(tiny_checkpoint))
    assert result.exit_code == 1, result.output  # the broken file failed, the rest were labelled
    assert "done 4, failed 1" in result.output and "1 files in folders without an image suffix" in result.output
    written = {Path(r["path"]).name: r for r in records(out / "records.jsonl")}
    assert sorted(written) == ["a.png", "b.jpg", "broken.jpg", "c.png"]
    assert written["broken.jpg"]["error"] and written["broken.jpg"]["width"] is None
    # each record is what the detect task answers on that image
    model = vlground.load_model(tiny_checkpoint("qwen2.5-vl"))
    expected = model.detect([str(folder / n) for n in SIZES], CATEGORIES, max_new_tokens=8)
    for (name, size), answer in zip(SIZES.items(), expected):
        assert (written[name]["width"], written[name]["height"]) == size
        assert written[name]["detections"] == answer.to_dict()["detections"]
        assert written[name]["text"] == answer.text and written[name]["error"] is None
    coco = COCO(str(out / "instances.json"))
    assert sorted((i["file_name"], i["width"], i["height"]) for i in coco.imgs.values()) == sorted(
        (n, *s) for n, s in SIZES.items())
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CATEGORIES


def test_forced_boxes_reach_coco_and_yolo_in_pixels(folder, tmp_path, tiny_checkpoint):
    """The tiny model made to answer a known box (input-pixel frame of Qwen2.5-VL): each dataset holds
    it in pixels of each image, whatever size the processor resized it to."""
    import supervision as sv

    from vlground.core.geometry import model_input_size
    from vlground.testing.forced import forced_loading

    answer = '[{"bbox_2d": [28, 0, 56, 28], "label": "dog"}, {"bbox_2d": [0, 0, 28, 56], "label": "cats"}]'
    images = [str(folder / n) for n in SIZES]
    with forced_loading({"cat, dog": answer}):
        for fmt in ("coco", "yolo"):
            result = label(*images, "--format", fmt, "--out", str(tmp_path / fmt), *model_args(tiny_checkpoint, 200))
            assert result.exit_code == 0, result.output
    coco = sv.DetectionDataset.from_coco(str(folder), str(tmp_path / "coco" / "instances.json"))
    yolo = sv.DetectionDataset.from_yolo(str(tmp_path / "yolo" / "images"), str(tmp_path / "yolo" / "labels"),
                                         str(tmp_path / "yolo" / "data.yaml"))
    for dataset in (coco, yolo):
        assert dataset.classes == CATEGORIES
        by_name = {Path(path).name: found for path, _, found in dataset}
        for name, (width, height) in SIZES.items():
            sx, sy = (s / i for s, i in zip((width, height), model_input_size("qwen2.5-vl", (width, height))))
            expected = [[28 * sx, 0, 56 * sx, 28 * sy], [0, 0, 28 * sx, min(56 * sy, height)]]
            np.testing.assert_allclose(by_name[name].xyxy, expected, atol=0.01)
            assert by_name[name].class_id.tolist() == [1, 0]  # dog, then "cats" read as cat


def test_yolo_and_jsonl_formats(folder, tmp_path, tiny_checkpoint):
    import supervision as sv
    import yaml

    out = tmp_path / "yolo"
    assert label(str(folder / "a.png"), str(folder / "c.png"), "--format", "yolo", "--out", str(out),
                 *model_args(tiny_checkpoint)).exit_code == 0
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == CATEGORIES
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["a.txt", "c.txt"]
    dataset = sv.DetectionDataset.from_yolo(str(out / "images"), str(out / "labels"), str(out / "data.yaml"))
    assert len(dataset) == 2 and dataset.classes == CATEGORIES
    jsonl = tmp_path / "labels.jsonl"
    assert label(str(folder / "b.jpg"), "--out", str(jsonl), *model_args(tiny_checkpoint)).exit_code == 0
    (record,) = records(jsonl)
    assert set(record) == {"path", "abspath", "model", "width", "height", "detections", "text", "error"}


def test_resume_labels_only_what_is_missing(folder, tmp_path, tiny_checkpoint):
    first = tmp_path / "first"
    first.mkdir()
    for name in ("a.png", "b.jpg"):
        shutil.copy(folder / name, first / name)
    out = tmp_path / "labels.jsonl"
    assert label(str(first), "--out", str(out), *model_args(tiny_checkpoint)).exit_code == 0
    refused = label(str(first), "--out", str(out), *model_args(tiny_checkpoint))
    assert refused.exit_code == 2 and "--resume" in refused.output
    shutil.copy(folder / "c.png", first / "c.png")
    with out.open("a") as handle:
        handle.write('{"path": "cut short by a kill')
    resumed = label(str(first), "--out", str(out), "--resume", *model_args(tiny_checkpoint))
    assert resumed.exit_code == 0, resumed.output
    assert "done 1" in resumed.output and "skipped 2" in resumed.output
    assert sorted(Path(r["path"]).name for r in records(out)) == ["a.png", "b.jpg", "c.png"]


def test_worker_processes_label_as_one_process(folder, tmp_path, tiny_checkpoint):
    alone = label(str(folder), "--out", str(tmp_path / "alone.jsonl"), *model_args(tiny_checkpoint))
    pool = label(str(folder), "--out", str(tmp_path / "pool.jsonl"), "--workers", "2", "--batch-size", "1",
                 *model_args(tiny_checkpoint))
    assert alone.exit_code == pool.exit_code == 1 and "done 4, failed 1" in pool.output  # broken.png fails in both
    by_path = {r["path"]: r for r in records(tmp_path / "pool.jsonl")}
    assert len(by_path) == 4 and all(by_path[r["path"]] == r for r in records(tmp_path / "alone.jsonl"))


@pytest.mark.parametrize("args, message", [
    (["--gpus-per-worker", "1"], "--gpus-per-worker applies with --ray"),
    (["--retry-failed"], "--retry-failed works with --resume"),
    (["--format", "voc"], "unknown format 'voc'"),
    (["--category", " "], "none of them empty"),
])
def test_bad_options_fail_in_one_line(folder, tmp_path, args, message):
    extra = [] if "--category" in args else ["-c", "cat"]
    result = label(str(folder), "--out", str(tmp_path / "o.jsonl"), *extra, *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", ["label", "ocr"])
def test_a_job_without_ray_never_imports_ray(command, folder, tmp_path, tiny_checkpoint):
    script = ("import sys; from vlground.cli.main import app\n"
              "try:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "print('ray imported' if 'ray' in sys.modules else 'no ray')")
    extra = model_args(tiny_checkpoint) if command == "label" else ["--workers", "1"]
    args = [command, str(folder / "a.png"), "--out", str(tmp_path / "o.jsonl"), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "no ray", done.stderr[-2000:]
    assert len(records(tmp_path / "o.jsonl")) == 1
