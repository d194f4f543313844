"""Every command's outputs on samples/ and a small fixture set, compared byte for byte with the files
recorded under tests/data/golden/: a refactoring that changes what a user gets shows up here.

What varies from run to run is normalised before comparing: the run's temporary folder (`<TMP>`),
durations and rates, and drawn images (compared by a digest of their pixels, not their PNG bytes).
The models are tiny random checkpoints made to write chosen answers (vlground.testing.forced), so the
boxes are real pixels through the real load -> prompt -> generate -> parse path.

An intended change of output is recorded with

    VLGROUND_GOLDEN=update .venv/bin/python -m pytest -q tests/test_golden_outputs.py

and reviewed as the diff of tests/data/golden/ in the same commit."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vlground.cli.main import app

GOLDEN = Path(__file__).parent / "data" / "golden"
SAMPLES = Path(__file__).parents[1] / "samples"
UPDATE = os.environ.get("VLGROUND_GOLDEN") == "update"
TINY = "qwen2.5-vl"
MAX_PIXELS = "12544"  # 112x112: the tiny vision tower stays cheap on the sample photos


def forced_answer(prompt: str) -> str:
    """What the tiny model writes, by task (Qwen2.5-VL JSON in pixels of the resized input)."""
    if "Spotting all the text" in prompt:
        return '[{"bbox_2d": [4, 6, 60, 20], "text_content": "CORNER"}, {"bbox_2d": [8, 30, 90, 44], "text_content": "Open 7am"}]'
    if "Read all the text" in prompt:
        return "CORNER BAKERY\nFresh bread"
    if "cat, dog" in prompt:
        return '[{"bbox_2d": [28, 0, 56, 28], "label": "dog"}, {"bbox_2d": [0, 0, 28, 56], "label": "cats"}]'
    if "each cat and" in prompt:  # --all asks one category at a time
        return '[{"bbox_2d": [0, 0, 28, 28], "label": "cat"}, {"bbox_2d": [14, 14, 56, 42], "label": "cat"}]'
    if "the dog" in prompt or "each dog and" in prompt:
        return "[]"
    if "computer_use" in prompt:  # ScreenSpot's instructions asked through the computer-use tool
        return '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [20, 14]}}\n</tool_call>'
    if "Locate" in prompt:  # the cat, and RefCOCO's phrases
        return '[{"bbox_2d": [10, 12, 40, 44], "label": "it"}]'
    raise KeyError(f"no forced answer for {prompt[-120:]!r}")


def _write_lines(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _fixtures(root: Path) -> None:
    """The inputs: samples/, three flat images, and small ground-truth / prediction files."""
    shutil.copytree(SAMPLES, root / "samples", ignore=shutil.ignore_patterns("*.py", "*.jsonl"))
    images = root / "imgs"
    images.mkdir()
    for name, size, colour in (("a.png", (64, 48), (200, 40, 40)), ("b.jpg", (72, 56), (40, 200, 90)), ("c.png", (40, 80), (30, 60, 220))):
        Image.new("RGB", size, colour).save(images / name)
    (images / "broken.jpg").write_bytes(b"not an image")
    _write_lines(root / "refcoco_val.jsonl", [
        {"image": "imgs/a.png", "sent": "the red square", "bbox": [8, 6, 40, 30], "width": 64, "height": 48},
        {"image": "imgs/b.jpg", "sent": "the green one", "bbox": [0, 0, 30, 30], "width": 72, "height": 56},
        {"image": "imgs/gone.png", "sent": "lost", "bbox": [0, 0, 1, 1], "width": 2, "height": 2},
    ])
    _write_lines(root / "refcoco_pred.jsonl", [{"text": "<ref>x</ref><box>(100,100),(600,700)</box>"}, {"box": [0, 0, 20, 20]}, {"text": "nothing"}])
    (root / "textvqa_gt.json").write_text(json.dumps({"data": [
        {"question_id": 0, "answers": ["Nokia"] * 10}, {"question_id": 1, "answers": ["2"] * 3 + ["two"] * 7},
        {"question_id": 2, "answers": ["open 24 hours"] * 6 + ["24 hours"] * 4}]}))
    _write_lines(root / "textvqa_pred.jsonl", [{"question_id": 0, "answer": "nokia"}, {"question_id": 1, "answer": "2"},
                                                {"question_id": 2, "answer": "24 hours."}])
    (root / "docvqa_gt.json").write_text(json.dumps({"data": [
        {"questionId": 1, "answers": ["$10.35", "10.35"]}, {"questionId": 2, "answers": ["CORNER CAFE"]}]}))
    _write_lines(root / "docvqa_pred.jsonl", [{"questionId": 1, "answer": "10.36"}, {"questionId": 2, "answer": "corner cafe"}])
    (root / "ground_truth.jsonl").write_text((SAMPLES / "ground_truth.jsonl").read_text())
    (root / "screenspot_mobile.json").write_text(json.dumps([
        {"img_filename": "a.png", "bbox": [10, 6, 20, 14], "instruction": "open the menu", "data_type": "icon", "data_source": "ios"},
        {"img_filename": "c.png", "bbox": [0, 0, 8, 8], "instruction": "go back", "data_type": "text", "data_source": "android"},
        {"img_filename": "gone.png", "bbox": [0, 0, 1, 1], "instruction": "lost", "data_type": "icon", "data_source": "ios"}]))
    _write_lines(root / "screenspot_pred.jsonl", [{"id": "screenspot_mobile#0", "text": '[{"point_2d": [400, 300]}]'},
                                                  {"img_filename": "c.png", "instruction": "go back", "point": [30, 70]},
                                                  {"id": "screenspot_mobile#2", "text": "no idea", "image_size": [2, 2]}])


def _commands(model: str) -> dict[str, list[str]]:
    """Each case: the command line, run in the fixture folder. Cases run in this order; later ones read
    earlier ones' outputs (convert reads label's datasets, eval ocr reads ocr's records)."""
    tiny = ["--model", model, "--max-pixels", MAX_PIXELS]
    samples = [f"samples/{n}" for n in ("shop_sign.png", "product_label.png", "receipt.jpg", "notice_two_columns.png", "street_sign_photo.jpg")]
    return {
        "parse": ["parse", '[{"bbox_2d": [10, 20, 300, 400], "label": "cat"}]', "-f", "qwen2.5-vl", "--image-size", "1280x960"],
        "parse_qwen_vl": ["parse", "<ref>the cat</ref><box>(100,200),(500,999)</box>", "-f", "qwen-vl", "--image-size", "640x480", "--scale", "999"],
        "prompt": ["prompt", "detect", "-f", "qwen3-vl", "--category", "cat", "--category", "dog"],
        "ocr": ["ocr", *samples, "--out", "out/ocr.jsonl", "-f", "txt", "-f", "hocr", "-f", "md", "--export-dir", "out/ocr"],
        "ocr_qwen_lines": ["ocr", "samples/shop_sign.png", "imgs", "--engine", model, "--mode", "lines", "--max-pixels", MAX_PIXELS, "--out", "out/ocr_qwen.jsonl"],
        "ocr_qwen_text": ["ocr", "samples/shop_sign.png", "--engine", model, "--max-pixels", MAX_PIXELS, "--out", "-"],
        "detect_json": ["detect", "imgs/a.png", "the cat", *tiny, "--json"],
        "detect_table": ["detect", "imgs/a.png", "the cat", "the dog", *tiny],
        "detect_out": ["detect", "imgs", "--query", "the cat", "--query", "the dog", *tiny, "--out", "out/detect.jsonl", "--annotate", "out/drawn"],
        "detect_all": ["detect", "imgs/a.png", "imgs/c.png", "cat", "dog", "--all", *tiny, "--json"],
        "label_coco": ["label", "imgs", "-c", "cat", "-c", "dog", *tiny, "--format", "coco", "--out", "out/coco"],
        "label_yolo": ["label", "imgs/a.png", "imgs/b.jpg", "imgs/c.png", "-c", "cat", "-c", "dog", *tiny, "--format", "yolo", "--out", "out/yolo"],
        "label_jsonl": ["label", "imgs/a.png", "imgs/c.png", "-c", "cat", "-c", "dog", *tiny, "--out", "out/labels.jsonl"],
        "convert_coco_qwen": ["convert", "out/coco/instances.json", "--from", "coco", "--to", "qwen", "-f", "qwen2.5-vl", "--task", "detect",
                              "--image-root", "imgs", "--out", "out/convert/coco_qwen.jsonl"],
        "convert_yolo_swift": ["convert", "out/yolo", "--from", "yolo", "--to", "swift", "-f", "qwen3-vl", "--task", "detect", "--out", "out/convert/yolo_swift.jsonl"],
        "convert_labels_llamafactory": ["convert", "out/labels.jsonl", "--from", "vlground", "--to", "llamafactory", "-f", "qwen2-vl", "--task", "detect",
                                        "--out", "out/convert/labels_llamafactory.json"],
        "convert_refcoco_trl": ["convert", "refcoco_val.jsonl", "--from", "refcoco", "--to", "trl", "-f", "qwen-vl", "--out", "out/convert/refcoco_trl.jsonl"],
        "bench_refcoco": ["bench", "refcoco", "--model", model, "--max-pixels", MAX_PIXELS, "--gt", "refcoco_val.jsonl", "--out", "out/bench",
                          "--batch-size", "2", "--json", "--quiet", "--report", "out/bench/report.html"],
        "eval_refcoco": ["eval", "refcoco", "--gt", "refcoco_val.jsonl", "--pred", "refcoco_pred.jsonl", "--protocol", "qwen-vl", "--json",
                         "--per-sample", "out/eval/refcoco_samples.jsonl"],
        "eval_refcoco_text": ["eval", "refcoco", "--gt", "refcoco_val.jsonl", "--pred", "refcoco_pred.jsonl", "--family", "qwen-vl"],
        "eval_textvqa": ["eval", "textvqa", "--gt", "textvqa_gt.json", "--pred", "textvqa_pred.jsonl", "--json"],
        "eval_docvqa": ["eval", "docvqa", "--gt", "docvqa_gt.json", "--pred", "docvqa_pred.jsonl", "--json"],
        "eval_ocr": ["eval", "ocr", "--gt", "ground_truth.jsonl", "--pred", "out/ocr.jsonl", "--json"],
        "bench_screenspot": ["bench", "screenspot", *tiny, "--gt", "screenspot_mobile.json", "--image-root", "imgs", "--style", "tool_call",
                             "--out", "out/bench_screenspot", "--quiet", "--report", "out/bench_screenspot/report.html"],
        "eval_screenspot": ["eval", "screenspot", "--gt", "screenspot_mobile.json", "--pred", "screenspot_pred.jsonl", "--family", "qwen3-vl",
                            "--image-root", "imgs", "--per-target", "out/eval/screenspot_targets.jsonl"],
    }


CASES = list(_commands("TINY"))
# Cases whose JSONL records are written in the order their worker processes finish: compared sorted.
UNORDERED = {"ocr"}

_REDRAWN = re.compile(r"[^\n]*\r[^\n]*\n?")
_EMBEDDED = re.compile(r"data:image/([a-z+]+);base64,([A-Za-z0-9+/=]+)")
_DURATION = re.compile(r"\b\d+(?:\.\d+)? ?(s|ms|images/s|pages/s|samples/s|it/s)\b")


def normalise(text: str, root: Path) -> str:
    """The text with the run's folder, durations and rates replaced; progress bars (lines redrawn with
    a carriage return, e.g. transformers' "Loading weights") left out."""
    text = _REDRAWN.sub("", text)
    for form in (str(root.resolve()), str(root)):
        text = text.replace(form, "<TMP>")
    return _DURATION.sub(lambda m: f"<N> {m.group(1)}", text)


def _pixels_digest(source) -> str:
    with Image.open(source) as image:
        array = np.asarray(image.convert("RGB"))
    return f"{array.shape} sha256 {hashlib.sha256(array.tobytes()).hexdigest()}"


def _embedded_images(html: str) -> str:
    """An HTML report's embedded images as digests of their pixels (encoders differ between versions)."""
    return _EMBEDDED.sub(lambda m: f"data:image/{m.group(1)};pixels,{_pixels_digest(io.BytesIO(base64.b64decode(m.group(2))))}", html)


def _snapshot(root: Path, before: set[Path]) -> dict[Path, str]:
    """Every file under root/out that is new since `before`, as normalised text (images as digests)."""
    files = {}
    for path in sorted((root / "out").rglob("*")):
        if not path.is_file() or path in before:
            continue
        name = path.relative_to(root / "out")
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            files[name.with_name(name.name + ".pixels")] = _pixels_digest(path) + "\n"
        else:
            text = path.read_bytes().decode("utf-8")
            files[name] = normalise(_embedded_images(text) if path.suffix == ".html" else text, root)
    return files


@pytest.fixture(scope="session")
def golden_runs(tmp_path_factory, tiny_checkpoint) -> dict[str, dict[Path, str]]:
    """Runs every case once, in order, in one fixture folder; case -> {file name: normalised text}."""
    from vlground.testing.forced import forced_loading

    root = tmp_path_factory.mktemp("golden")
    _fixtures(root)
    (root / "out").mkdir()
    (root / "out" / "drawn").mkdir()
    model = str(tiny_checkpoint(TINY))
    runs = {}
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with forced_loading(forced_answer):
            for case, args in _commands(model).items():
                before = {p for p in (root / "out").rglob("*") if p.is_file()}
                result = CliRunner().invoke(app, args)
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    raise result.exception
                command = normalise(" ".join(args), root).replace(model, "<TINY>")
                console = f"$ vlground {command}\nexit {result.exit_code}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
                files = {k: v.replace(model, "<TINY>") for k, v in _snapshot(root, before).items()}
                if case in UNORDERED:
                    files = {k: "".join(sorted(v.splitlines(keepends=True))) if k.suffix == ".jsonl" else v for k, v in files.items()}
                runs[case] = {Path("console.txt"): normalise(console, root).replace(model, "<TINY>"), **files}
    finally:
        os.chdir(cwd)
    return runs


@pytest.mark.parametrize("case", CASES)
def test_outputs_match_the_recorded_ones(golden_runs, case):
    produced = golden_runs[case]
    folder = GOLDEN / case
    if UPDATE:
        shutil.rmtree(folder, ignore_errors=True)
        for name, text in produced.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8", newline="")
    recorded = {p.relative_to(folder): p.read_bytes().decode("utf-8") for p in sorted(folder.rglob("*")) if p.is_file()}
    assert recorded, f"nothing recorded for {case}: VLGROUND_GOLDEN=update records it (see the module docstring)"
    assert sorted(produced) == sorted(recorded), f"{case}: other files written than recorded"
    for name, text in produced.items():
        assert text == recorded[name], f"{case}: {name} differs from {folder / name}"
