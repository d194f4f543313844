"""`vlground convert` from GUI and keypoint sources: ScreenSpot ground truth (bbox [x, y, w, h], or
[x1, y1, x2, y2] where a record carries img_size as ScreenSpot-Pro's do) and COCO keypoints, read
value by value; their boxes round-trip through `vlground.parse` as the other sources' do."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlground.core.families import FAMILIES, get_family
from vlground.core.geometry import Frame
from vlground.grammar import parse
from vlground.prompts import point_prompt
from vlground.training.convert import ConvertError, convert, read_records, record_turns

SCREEN = (1000, 333)  # wide, so Qwen2.5-VL's input differs from the screenshot in both axes


@pytest.fixture()
def screenspot(tmp_path) -> Path:
    """Two ScreenSpot files over one screenshot: v2's [x, y, w, h] and Pro's [x1, y1, x2, y2] + img_size."""
    Image.new("RGB", SCREEN, (240, 240, 240)).save(tmp_path / "desk.png")
    v2 = [{"img_filename": "desk.png", "bbox": [100, 40, 220, 30], "instruction": "open settings", "data_type": "icon",
           "data_source": "windows"},
          {"img_filename": "desk.png", "bbox": [900, 280, 80, 40], "instruction": "the Save button", "data_type": "text",
           "data_source": "windows"},
          {"img_filename": "desk.png", "bbox": "10 10 5 5", "instruction": "a string box"}]
    pro = [{"img_filename": "desk.png", "bbox": [100, 40, 320, 70], "instruction": "open settings", "img_size": list(SCREEN),
            "application": "vscode", "platform": "windows", "ui_type": "icon", "group": "Dev", "id": "a"},
           {"img_filename": "desk.png", "bbox": [900, 280, 980, 320], "instruction": "the Save button",
            "img_size": list(SCREEN), "application": "vscode", "platform": "windows", "ui_type": "text", "group": "Dev", "id": "b"}]
    (tmp_path / "screenspot_desktop_v2.json").write_text(json.dumps(v2))
    (tmp_path / "vscode_windows.json").write_text(json.dumps(pro))
    return tmp_path


@pytest.mark.parametrize("name", ["screenspot_desktop_v2.json", "vscode_windows.json"])
@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl", "qwen2-vl"])
def test_screenspot_instructions_ground_to_their_boxes_in_both_box_layouts(screenspot, tmp_path, name, family):
    done = convert(screenspot / name, source_format="screenspot", target="swift", family=family, task="ground",
                   out=tmp_path / "train.jsonl")
    expected = [("open settings", (100, 40, 320, 70)), ("the Save button", (900, 280, 980, 320))]
    records = read_records(done.out)
    assert len(records) == 2
    frame = Frame.for_family(get_family(family), SCREEN)
    for record, (instruction, box) in zip(records, expected):
        image, words, answer, _ = record_turns(record)
        assert image == str(screenspot / "desk.png") and instruction in words
        [detection] = parse(answer, family, SCREEN).detections
        assert np.allclose(detection.box, box, atol=max(frame.sx, frame.sy) + 1e-9), (detection.box, box)
    if name.endswith("_v2.json"):  # the string box is named, not dropped silently
        [problem] = done.summary.invalid_inputs
        assert "screenspot_desktop_v2.json item 2" in problem and "'bbox'" in problem


def test_screenspot_sources_that_cannot_be_read_say_why(screenspot, tmp_path):
    (tmp_path / "object.json").write_text('"just a string"')
    with pytest.raises(ConvertError, match="not the list of targets"):
        convert(tmp_path / "object.json", source_format="screenspot", target="qwen", family="qwen3-vl", task="ground",
                out=tmp_path / "o.jsonl")
    with pytest.raises(ConvertError, match="use --task ground, point or computer-use"):
        convert(screenspot / "vscode_windows.json", source_format="screenspot", target="qwen", family="qwen3-vl",
                task="detect", out=tmp_path / "o.jsonl")


# ---- point and computer-use records ----------------------------------------------------------------

PIXELS = {"min_pixels": 3136, "max_pixels": 40000}  # Qwen2.5-VL's input far from the screenshot's size
CLICKS = [("open settings", (210, 55)), ("the Save button", (940, 300))]  # the centres of the two boxes


def _settings(family: str) -> dict:
    return PIXELS if get_family(family).frame == "input_pixels" else {}


def _clicks_read_back(done, family: str, style: str) -> list[tuple[str, tuple[float, float], str, str | None]]:
    """(user words, the click vlground.parse reads from the answer, the answer, the system turn) of
    each record, read as `Model.point` reads it: the prompt's scale, a box answer's centre."""
    fam, settings = get_family(family), _settings(family)
    out = []
    for record in read_records(done.out):
        image, words, answer, system = record_turns(record)
        size = Image.open(image).size
        frame = Frame.for_family(fam, size, **settings)
        prompt = point_prompt(fam, words if fam.chat else "x", style=style, input_size=frame.input_size)
        result = parse(prompt.response_prefix + answer, fam, size, scale=prompt.scale, **settings)
        [detection] = result.detections
        if detection.point is not None:
            click = detection.point
        else:
            x1, y1, x2, y2 = detection.box
            click = ((x1 + x2) / 2, (y1 + y2) / 2)
        out.append((words, click, answer, system))
    return out


def _unit(family: str, scale: float = 1000) -> float:
    """The rounding of the model's integers, in pixels of the screenshot."""
    frame = Frame.for_family(get_family(family), SCREEN, scale=scale, **_settings(family))
    return max(frame.sx, frame.sy) + 1e-9


@pytest.mark.parametrize("target", ["qwen", "swift", "trl"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_point_records_of_every_family_read_back_to_the_click(screenspot, tmp_path, family, target):
    done = convert(screenspot / "vscode_windows.json", source_format="screenspot", target=target, family=family,
                   task="point", out=tmp_path / "train.jsonl", **_settings(family))
    assert done.summary.records == done.summary.points == 2
    for (words, click, answer, system), (instruction, want) in zip(_clicks_read_back(done, family, "plain"), CLICKS, strict=True):
        assert system is None and (instruction in words or not get_family(family).chat)
        # a box answer's centre is within the rounding of its two corners: one unit, as the point's
        assert np.allclose(click, want, atol=_unit(family)), (family, answer, click, want)


TOOL_FAMILIES = ["qwen2.5-vl", "qwen3-vl", "qwen3.5", "qwen4-exp"]


@pytest.mark.parametrize("target", ["swift", "llamafactory", "trl"])
@pytest.mark.parametrize("family", TOOL_FAMILIES)
def test_computer_use_records_hold_the_tool_and_a_call_in_the_family_frame(screenspot, tmp_path, family, target):
    done = convert(screenspot / "screenspot_desktop_v2.json", source_format="screenspot", target=target, family=family,
                   task="computer-use", out=tmp_path / "train.jsonl", **_settings(family))
    read = _clicks_read_back(done, family, "tool_call")
    for (words, click, answer, system), (instruction, want) in zip(read, CLICKS, strict=True):
        assert words == instruction and "computer_use" in system
        assert '"action": "left_click"' in answer and answer.rstrip().endswith("</tool_call>")
        assert np.allclose(click, want, atol=_unit(family)), (answer, click, want)
    # the numbers themselves: Qwen2.5-VL's are pixels of its resized input (told to it in the
    # system turn); Qwen3-VL's and later's are 0-1000, the screen size their computer-use cookbook tells them
    words, click, answer, system = read[1]
    coordinate = json.loads(answer.split("<tool_call>")[1].split("</tool_call>")[0])["arguments"]["coordinate"]
    if family == "qwen2.5-vl":
        width, height = Frame.for_family(get_family(family), SCREEN, **PIXELS).input_size
        assert f"resolution is {width}x{height}" in system
        assert coordinate == [round(940 * width / SCREEN[0]), round(300 * height / SCREEN[1])]
    else:
        assert "1000x1000" in system and coordinate == [940, 901]  # 940 * 1000 / 1000, 300 * 1000 / 333 (not 939, 900 on 999)


def test_computer_use_needs_a_system_turn_and_a_family_with_the_tool(screenspot, tmp_path):
    source = screenspot / "vscode_windows.json"
    with pytest.raises(ConvertError, match="no system turn.*use --to swift, llamafactory or trl"):
        convert(source, source_format="screenspot", target="qwen", family="qwen3-vl", task="computer-use", out=tmp_path / "a.jsonl")
    with pytest.raises(ConvertError, match="--task computer-use: qwen2-vl has no tool-call prompt"):
        convert(source, source_format="screenspot", target="swift", family="qwen2-vl", task="computer-use", out=tmp_path / "b.jsonl")


@pytest.fixture()
def keypoints(tmp_path) -> Path:
    """COCO keypoints: a one-keypoint category (a click target) and a two-keypoint one."""
    Image.new("RGB", SCREEN).save(tmp_path / "desk.png")
    Image.new("RGB", (200, 100)).save(tmp_path / "two.png")
    coco = {"images": [{"id": 1, "file_name": "desk.png", "width": SCREEN[0], "height": SCREEN[1]},
                       {"id": 2, "file_name": "two.png", "width": 200, "height": 100}],
            "categories": [{"id": 1, "name": "Submit button", "keypoints": ["click"]},
                           {"id": 2, "name": "window", "keypoints": ["close_button", "title_bar"]}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": [700.5, 300.25, 2]},
                            {"id": 2, "image_id": 1, "category_id": 2, "keypoints": [990, 5, 2, 0, 0, 0]},  # title unlabelled
                            {"id": 3, "image_id": 2, "category_id": 1, "keypoints": [10, 10, 2]},
                            {"id": 4, "image_id": 2, "category_id": 1, "keypoints": [150, 60, 1]},  # two buttons: which?
                            {"id": 5, "image_id": 2, "category_id": 2, "keypoints": [250, 5, 2, 100, 5, 2]},  # one off the image
                            {"id": 6, "image_id": 2, "category_id": 2, "keypoints": [1, 2, 3]}]}  # too few numbers
    (tmp_path / "keypoints.json").write_text(json.dumps(coco))
    return tmp_path / "keypoints.json"


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl", "qwen3.5"])
def test_coco_keypoints_give_one_record_per_named_point(keypoints, tmp_path, family):
    done = convert(keypoints, source_format="coco-keypoints", target="trl", family=family, task="point",
                   out=tmp_path / "train.jsonl", **_settings(family))
    summary = done.summary
    read = _clicks_read_back(done, family, "plain")
    expected = [("Submit button", (700.5, 300.25)), ("window close button", (990, 5)), ("window title bar", (100, 5))]
    assert len(read) == len(expected) and summary.records == 3
    for (words, click, _, _), (name, want) in zip(read, expected):
        assert name in words
        size = SCREEN if name != "window title bar" else (200, 100)
        frame = Frame.for_family(get_family(family), size, **_settings(family))
        assert np.allclose(click, want, atol=max(frame.sx, frame.sy) + 1e-9), (click, want)
    assert (summary.ambiguous_targets, summary.dropped_points) == (1, 1)
    assert len(summary.invalid_inputs) == 1 and "annotation 6" in summary.invalid_inputs[0]
    for words in ("3 click points", "1 points outside the image", "1 targets naming more than one object"):
        assert words in summary.describe()


def test_keypoints_for_a_family_without_point_syntax_are_one_pair_in_box_tags(keypoints, tmp_path):
    """Qwen2-VL is asked for the box (it has no point prompt); a keypoint has none, so its click is
    written as the one pair in box tags its parser reads as a point."""
    done = convert(keypoints, source_format="coco-keypoints", target="swift", family="qwen2-vl", task="point",
                   out=tmp_path / "train.jsonl")
    read = _clicks_read_back(done, "qwen2-vl", "plain")
    assert [click for _, click, _, _ in read[:1]] and read[0][2].count("(") == 1
    assert np.allclose(read[0][1], (700.5, 300.25), atol=_unit("qwen2-vl"))
    with pytest.raises(ConvertError, match="coco-keypoints holds points, not boxes"):
        convert(keypoints, source_format="coco-keypoints", target="swift", family="qwen3-vl", task="ground",
                out=tmp_path / "o.jsonl")
