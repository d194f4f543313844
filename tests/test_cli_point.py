"""`vlground point`: a tiny Qwen2.5-VL with forced answers clicks on a 260x180 screenshot it sees as
252x168, through the command line: table, JSON, the drawn copy, and the errors told before any model
is loaded."""
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vlground.cli.main import app
from vlground.testing.forced import forced_loading

runner = CliRunner()
ANSWERS = {"Submit": '[{"point_2d": [63, 42], "label": "Submit"}]',  # input pixels: (65, 45) on the screenshot
           "Cancel": "I do not see it.",
           "Help": '[{"point_2d": [300, 42], "label": "Help"}]',  # past the input's 252: off the screenshot
           "computer_use": '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [189, 126]}}\n</tool_call>'}


@pytest.fixture(scope="module")
def screenshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("screen") / "screen.png"
    Image.new("RGB", (260, 180), "white").save(path)
    return path


def _point(args, tiny_checkpoint):
    with forced_loading(ANSWERS):
        return runner.invoke(app, ["point", *map(str, args), "--model", str(tiny_checkpoint("qwen2.5-vl")), "--device", "cpu",
                                   "--max-new-tokens", "200"])


def test_a_table_of_clicks_and_a_warning_for_the_target_not_found(tiny_checkpoint, screenshot):
    res = _point([screenshot, "the Submit button", "the Cancel button"], tiny_checkpoint)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == ["image 260x180: 1 of 2 found",
                                       "target                x     y  from",
                                       "the Submit button  65.0  45.0  point",
                                       "the Cancel button     -     -  none"]
    assert "warning: no click found for 'the Cancel button'; the answer was 'I do not see it.'" in res.stderr


def test_a_click_outside_the_screenshot_is_told(tiny_checkpoint, screenshot):
    res = _point([screenshot, "the Help button", "the Submit button", "--json"], tiny_checkpoint)
    assert res.exit_code == 0, res.output
    help_line, submit_line = map(json.loads, res.stdout.splitlines())
    assert help_line["detections"][0]["point"] == pytest.approx([260.0, 45.0]) and help_line["clipped"] == 1
    assert "warning: the click for 'the Help button' lay outside the screenshot and was put on its edge" in res.stderr
    assert "Submit" not in res.stderr and "clipped" not in submit_line


def test_json_and_the_drawn_copy_with_the_tool_call_style(tiny_checkpoint, screenshot, tmp_path):
    drawn = tmp_path / "clicks.png"
    res = _point([screenshot, "open the settings", "--style", "tool_call", "--json", "--draw", drawn], tiny_checkpoint)
    assert res.exit_code == 0, res.output
    line = json.loads(res.stdout)
    assert line["target"] == "open the settings"
    assert line["detections"] == [{"label": "open the settings", "point": pytest.approx([195.0, 135.0]),
                                   "attributes": {"tool": "computer_use", "action": "left_click", "point_from": "point"}}]
    picture = np.asarray(Image.open(drawn).convert("RGB"), dtype=int)
    assert picture.shape == (180, 260, 3)
    changed = (picture != 255).any(axis=2)
    assert changed[133:138, 193:198].all()  # the dot on the click
    assert not changed[:100].any() and not changed[:, :150].any()  # and nothing far from it


@pytest.mark.parametrize("args, message", [
    (["missing.png", "the OK button"], "missing.png"),
    (["{shot}", "x", "--style", "xml"], "--style must be one of plain, tool_call"),
    (["{shot}", "x", "--style", "tool_call", "--tool", "foo"], "--tool must be one of computer_use, mobile_use; got 'foo'"),
    (["{shot}", "x", "--tool", "mobile_use"], "--tool is for --style tool_call"),
    (["{shot}", "x", "--draw", "out.txt"], "--draw out.txt: give an image file name"),
    (["{folder}", "x"], "give one screenshot"),
])
def test_wrong_arguments_fail_in_one_line_before_any_model(args, message, screenshot, tmp_path):
    (tmp_path / "not-an-image.png").write_text("text")
    args = [a.format(shot=screenshot, folder=tmp_path) for a in args]
    res = runner.invoke(app, ["point", *args, "--model", str(tmp_path / "no-model")])
    assert res.exit_code == 2 and message in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "no-model" not in res.stderr


def test_an_unreadable_screenshot_is_told_before_the_model(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    res = runner.invoke(app, ["point", str(bad), "x", "--model", str(tmp_path / "no-model")])
    assert res.exit_code == 2 and "bad.png" in res.stderr and "no-model" not in res.stderr, res.output


def test_prompt_prints_the_point_prompts():
    plain = runner.invoke(app, ["prompt", "point", "-f", "qwen3-vl", "--phrase", "the OK button"])
    assert plain.exit_code == 0 and plain.stdout == "Locate the OK button in this image. Output the point coordinates in JSON format.\n"
    tool = runner.invoke(app, ["prompt", "point", "-f", "qwen2.5-vl", "--phrase", "the OK button", "--style", "tool_call",
                               "--image-size", "1920x1080"])
    assert tool.exit_code == 0 and tool.stdout.startswith("[system]\nYou are a helpful assistant.\n\n# Tools\n")
    assert "The screen's resolution is 1932x1092." in tool.stdout and tool.stdout.endswith("</tool_call>\n[user]\nthe OK button\n")
    missing = runner.invoke(app, ["prompt", "point", "-f", "qwen2.5-vl", "--phrase", "x", "--style", "tool_call"])
    assert missing.exit_code == 2 and "give --image-size WxH" in missing.stderr
    wrong = runner.invoke(app, ["prompt", "ground", "-f", "qwen2.5-vl", "--phrase", "x", "--style", "tool_call"])
    assert wrong.exit_code == 2 and "--style is for the point task" in wrong.stderr
    # Qwen3-VL: each tool as its own cookbook frames it (computer use 1000x1000, mobile agent 999x999)
    for tool, screen in (("computer_use", "1000x1000"), ("mobile_use", "999x999")):
        told = runner.invoke(app, ["prompt", "point", "-f", "qwen3-vl", "--phrase", "x", "--style", "tool_call", "--tool", tool])
        assert told.exit_code == 0 and f"The screen's resolution is {screen}." in told.stdout and f'"name": "{tool}"' in told.stdout
    alone = runner.invoke(app, ["prompt", "point", "-f", "qwen3-vl", "--phrase", "x", "--tool", "mobile_use"])
    assert alone.exit_code == 2 and "--tool is for --style tool_call" in alone.stderr


def test_the_mobile_tool_reaches_the_prompt(tiny_checkpoint, screenshot):
    def answer(prompt):
        tool = "mobile_use" if '"name": "mobile_use"' in prompt else "computer_use"
        return f'<tool_call>\n{{"name": "{tool}", "arguments": {{"action": "click", "coordinate": [63, 42]}}}}\n</tool_call>'

    with forced_loading(answer):
        res = runner.invoke(app, ["point", str(screenshot), "Submit", "--style", "tool_call", "--tool", "mobile_use", "--json",
                                  "--model", str(tiny_checkpoint("qwen2.5-vl")), "--device", "cpu", "--max-new-tokens", "200"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["detections"][0]["attributes"]["tool"] == "mobile_use"
