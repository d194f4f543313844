"""load -> prompt -> generate -> parse for every family on tiny random checkpoints, through the
Python API and through `vlground detect`."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import vlground
from vlground.cli.main import app

from vlground.core.families import get_family
from vlground.testing.forced import with_reasoning

# families, and the MoE variants of a family: each a tiny checkpoint of its own architecture
FAMILIES = ["qwen-vl", "qwen-vl-chat", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qwen3-vl-moe", "qwen3.5", "qwen3.5-moe",
            "qwen4-exp"]
runner = CliRunner()


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (180, 260, 3), dtype=np.uint8)).save(path)
    return path


# What each family writes for a box, in its own frame. On the 260x180 photo: the 0..1000 frames give
# (26, 36, 130, 144) and (156, 18, 234, 171); Qwen2.5-VL writes pixels of its 252x168 model input
# (smart_resize, factor 28), which are the same two boxes on the photo.
CAR, TREE = (26.0, 36.0, 130.0, 144.0), (156.0, 18.0, 234.0, 171.0)
ANSWERS = {
    "qwen-vl": {"the red car": "(100,200),(500,800)</box>", "a tree": "(600,100),(900,950)</box>"},
    "qwen-vl-chat": {"the red car": "<ref>the red car</ref><box>(100,200),(500,800)</box>",
                     "a tree": "<ref>a tree</ref><box>(600,100),(900,950)</box>"},
    "qwen2-vl": {
        "the red car": "<|object_ref_start|>the red car<|object_ref_end|><|box_start|>(100,200),(500,800)<|box_end|>",
        "a tree": "<|object_ref_start|>a tree<|object_ref_end|><|box_start|>(600,100),(900,950)<|box_end|>"},
    "qwen2.5-vl": {
        "the red car": '```json\n[{"bbox_2d": [25.2, 33.6, 126, 134.4], "label": "the red car"}]\n```',
        "a tree": '[{"bbox_2d": [151.2, 16.8, 226.8, 159.6], "label": "a tree"}]'},
    "qwen3-vl": {"the red car": '[{"bbox_2d": [100, 200, 500, 800], "label": "the red car"}]',
                 "a tree": 'Here: [{"bbox_2d": [600, 100, 900, 950], "label": "a tree"}]'},
}
ANSWERS["qwen3-vl-moe"] = ANSWERS["qwen3-vl"]
# Qwen3.5 and Qwen4-Exp think by default: each answer comes after reasoning that drafts a box in the wrong
# place (in a fence, as the final answer is), so a box read from the reasoning shows
DRAFT = '```json\n[{"bbox_2d": [900, 900, 990, 990], "label": "%s"}]\n```'
REASONED = {"the red car": with_reasoning('```json\n[{"bbox_2d": [100, 200, 500, 800], "label": "the red car"}]\n```',
                                          DRAFT % "the red car"),
            "a tree": with_reasoning('[{"bbox_2d": [600, 100, 900, 950], "label": "a tree"}]', DRAFT % "a tree")}
ANSWERS.update({name: REASONED for name in ("qwen3.5", "qwen3.5-moe", "qwen4-exp")})
THINKS = {"qwen3.5", "qwen3.5-moe", "qwen4-exp"}


@pytest.mark.parametrize("family", FAMILIES)
def test_python_api_end_to_end(family, tiny_checkpoint, photo):
    from vlground.testing.forced import forced_answers

    model = vlground.load_model(tiny_checkpoint(family), device="cpu")
    assert model.family is get_family(family)
    with forced_answers(model.backend, ANSWERS[family]):
        results = model.ground([photo, photo], ["the red car", "a tree"], max_new_tokens=60)
    assert [r.image_size for r in results] == [(260, 180), (260, 180)]
    # one batch, two rows with their own answers: a permuted, mis-cut or mis-framed row shows here
    assert [[(d.label, d.xyxy) for d in r.detections] for r in results] == [
        [("the red car", pytest.approx(CAR, abs=0.01))], [("a tree", pytest.approx(TREE, abs=0.01))]]
    if family in THINKS:  # the draft stays in the reasoning, the answer's box is the one kept
        assert "900, 900, 990, 990" in results[0].reasoning and "900" not in results[0].text
    caption = model.caption(photo, max_new_tokens=6)  # unforced: random weights still answer a Result
    assert isinstance(caption, vlground.Result)


@pytest.mark.parametrize("family", FAMILIES)
def test_detect_cli_json(family, tiny_checkpoint, photo, tmp_path):
    from vlground.testing.forced import forced_loading

    out = tmp_path / "annotated.png"
    with forced_loading(ANSWERS[family]):
        res = runner.invoke(
            app,
            ["detect", str(photo), "the red car", "a tree", "--model", str(tiny_checkpoint(family)), "--device", "cpu",
             "--json", "--annotate", str(out)],
        )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data) == {"detections", "text", *(["reasoning"] if family in THINKS else [])}
    assert [(d["label"], d["box"]) for d in data["detections"]] == [
        ("the red car", pytest.approx(list(CAR), abs=0.01)), ("a tree", pytest.approx(list(TREE), abs=0.01))]
    drawn = np.asarray(Image.open(out).convert("RGB"), dtype=int)
    assert drawn.shape == (180, 260, 3)
    assert (drawn != np.asarray(Image.open(photo).convert("RGB"), dtype=int)).any()  # the boxes were drawn


def test_detect_missing_weights_is_a_clear_error(tmp_path, photo):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "vlground.cli.main", "detect", str(photo), "a car", "--model", "Qwen/Qwen2.5-VL-7B-Instruct"],
        capture_output=True, text=True, env=env,
    )
    assert proc.returncode == 2
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in proc.stderr and "HF_HOME" in proc.stderr
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_detect_unsupported_model_type_is_a_clear_error(tmp_path, photo):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    res = runner.invoke(app, ["detect", str(photo), "a car", "--model", str(tmp_path)])
    assert res.exit_code == 2 and "'llava' is not supported" in res.stderr


def test_detect_bad_image_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    res = runner.invoke(app, ["detect", str(bad), "a car"])
    assert res.exit_code == 2 and "bad.jpg" in res.stderr


def test_detect_prints_a_table_by_default(tiny_checkpoint, photo):
    from vlground.testing.forced import forced_loading

    with forced_loading(ANSWERS["qwen2.5-vl"]):
        res = runner.invoke(app, ["detect", str(photo), "the red car", "--model", str(tiny_checkpoint("qwen2.5-vl")), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "image 260x180: 1 found" and lines[1].split() == ["label", "x1", "y1", "x2", "y2"]
    assert lines[2].split() == ["the", "red", "car", "26.0", "36.0", "130.0", "144.0"]
    with forced_loading({"the red car": "I see no car."}):
        res = runner.invoke(app, ["detect", str(photo), "the red car", "--model", str(tiny_checkpoint("qwen2.5-vl")), "--device", "cpu"])
    assert res.exit_code == 0 and res.stdout.splitlines()[0] == "image 260x180: 0 found"
    assert res.stdout.splitlines()[-1] == "no box for 'the red car'"  # the miss is in the result, not hidden
    assert "no box" not in res.stderr  # a result, not a failure (all of stderr: tests/test_cli_quiet.py)
