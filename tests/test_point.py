"""Model.point end to end on tiny random checkpoints with forced answers: load -> point prompt (plain or
tool call) -> generate -> parse -> one click per target in pixels of the original screenshot.

The screenshot is 260x180; Qwen2.5-VL sees it as 252x168 (smart_resize, factor 28) and Qwen3-VL as
256x192 (factor 32), so an answer read in the wrong frame lands elsewhere."""
import re

import numpy as np
import pytest
from PIL import Image

import vlground
from vlground.prompts import point_prompt
from vlground.testing.forced import forced_answers

SUBMIT, CANCEL = (65.0, 45.0), (195.0, 135.0)  # where each button is on the 260x180 screenshot


@pytest.fixture(scope="module")
def screenshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("screen") / "screen.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (180, 260, 3), dtype=np.uint8)).save(path)
    return path


def _call(x, y, action="left_click"):
    return f'<tool_call>\n{{"name": "computer_use", "arguments": {{"action": "{action}", "coordinate": [{x}, {y}]}}}}\n</tool_call>'


def _points(results):
    return [[(d.label, d.point, d.attributes["point_from"]) for d in r.detections] for r in results]


def test_qwen25_plain_points_in_input_pixels(tiny_checkpoint, screenshot):
    model = vlground.load_model(tiny_checkpoint("qwen2.5-vl"), device="cpu")
    answers = {"the Submit button": '```json\n[{"point_2d": [63, 42], "label": "the Submit button"}]\n```',
               "the Cancel button": '[{"point_2d": [189, 126], "label": "the Cancel button"}]'}
    with forced_answers(model.backend, answers):
        results = model.point([screenshot, screenshot], ["the Submit button", "the Cancel button"], max_new_tokens=60)
    assert _points(results) == [[("the Submit button", pytest.approx(SUBMIT), "point")],
                                [("the Cancel button", pytest.approx(CANCEL), "point")]]


def test_qwen25_tool_call_is_told_the_input_size_and_answers_in_it(tiny_checkpoint, screenshot):
    model = vlground.load_model(tiny_checkpoint("qwen2.5-vl"), device="cpu")
    seen = []

    def answer(prompt_text):
        seen.append(re.search(r"The screen's resolution is (\d+)x(\d+)\.", prompt_text).groups())
        return _call(63, 42) if "Submit" in prompt_text.rsplit("<|im_start|>user", 1)[1] else _call(189, 126)

    with forced_answers(model.backend, answer):
        results = model.point(screenshot, ["the Submit button", "the Cancel button"], style="tool_call", max_new_tokens=200)
    assert seen == [("252", "168")] * 2  # the cookbook's screen size: the resized input, not the screenshot
    assert _points(results) == [[("the Submit button", pytest.approx(SUBMIT), "point")],
                                [("the Cancel button", pytest.approx(CANCEL), "point")]]
    assert results[0].detections[0].attributes == {"tool": "computer_use", "action": "left_click", "point_from": "point"}


def test_qwen3_tools_read_on_the_screen_their_cookbook_tells(tiny_checkpoint, screenshot):
    """Qwen3-VL's computer-use cookbook tells the model 1000x1000, its mobile-agent cookbook 999x999; the plain
    point prompt is on 1000. Each answer is read with the size its prompt told."""
    model = vlground.load_model(tiny_checkpoint("qwen3-vl"), device="cpu")
    told = []

    def answer(prompt_text):
        screen = re.search(r"The screen's resolution is (\d+)x\1\.", prompt_text)
        told.append(screen and screen.group(1))
        return _call(250, 250) if screen else '{"point_2d": [250, 250]}'

    with forced_answers(model.backend, answer):
        desktop = model.point(screenshot, "the Submit button", style="tool_call", max_new_tokens=200)
        mobile = model.point(screenshot, "the Submit button", style="tool_call", tool="mobile_use", max_new_tokens=200)
        plain = model.point(screenshot, "the Submit button", max_new_tokens=60)
    assert told == ["1000", "999", None]
    assert desktop.detections[0].point == pytest.approx(SUBMIT)
    assert mobile.detections[0].point == pytest.approx((250 / 999 * 260, 250 / 999 * 180))
    assert plain.detections[0].point == pytest.approx(SUBMIT)


def test_a_box_answer_gives_its_centre(tiny_checkpoint, screenshot):
    """Qwen2-VL has no point syntax: it is asked for the box, and a UI-TARS-style click is read too."""
    model = vlground.load_model(tiny_checkpoint("qwen2-vl"), device="cpu")
    answers = {"Submit": "<|object_ref_start|>the Submit button<|object_ref_end|><|box_start|>(200,200),(300,300)<|box_end|>",
               "Cancel": "Action: click(start_box='<|box_start|>(750,750)<|box_end|>')"}
    with forced_answers(model.backend, answers):
        results = model.point(screenshot, ["the Submit button", "the Cancel button"], max_new_tokens=80)
    assert _points(results) == [[("the Submit button", pytest.approx(SUBMIT), "box")],
                                [("the Cancel button", pytest.approx(CANCEL), "point")]]
    assert results[0].detections[0].box is None  # the click is a point either way


def test_no_click_in_the_answer_is_no_detection(tiny_checkpoint, screenshot):
    model = vlground.load_model(tiny_checkpoint("qwen3-vl"), device="cpu")
    with forced_answers(model.backend, {"Submit": "I cannot see a submit button."}):
        result = model.point(screenshot, "the Submit button", max_new_tokens=40)
    assert result.detections == [] and result.text == "I cannot see a submit button."


def test_point_prompts_per_family():
    assert point_prompt("qwen3-vl", "the OK button").text == "Locate the OK button in this image. Output the point coordinates in JSON format."
    assert point_prompt("qwen2-vl", "the OK button").text == (
        "Output the bounding box of <|object_ref_start|>the OK button<|object_ref_end|> in the image.")
    base = point_prompt("qwen-vl", "the OK button")
    assert base.text == "<img></img><ref>the OK button</ref><box>" and base.max_new_tokens == 28
    tool = point_prompt("qwen2.5-vl", "open the settings", style="tool_call", input_size=(1092, 2408))
    assert tool.text == "open the settings" and tool.scale == 1000
    assert tool.system.startswith("You are a helpful assistant.\n\n# Tools\n") and "resolution is 1092x2408." in tool.system
    assert tool.system.endswith('<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')
    qwen3 = point_prompt("qwen3.5", "open the settings", style="tool_call")
    assert qwen3.system.startswith("You are a helpful assistant.\n\n# Tools\n") and "resolution is 1000x1000." in qwen3.system
    assert qwen3.scale == 1000
    # the computer-use cookbook hands the tool to qwen_agent's NousFnCallPrompt, which writes the function
    # with name_for_human and args_format (as for Qwen2.5-VL); the mobile-agent cookbook's literal prompt has neither
    assert '<tools>\n{"type": "function", "function": {"name_for_human": "computer_use", "name": "computer_use", ' in qwen3.system
    assert '"args_format": "Format the arguments as a JSON object."}}\n</tools>' in qwen3.system
    mobile = point_prompt("qwen3.5", "open the settings", style="tool_call", tool="mobile_use")
    assert mobile.system.startswith("\n\n# Tools\n") and "resolution is 999x999." in mobile.system and mobile.scale == 999
    assert "name_for_human" not in mobile.system and "args_format" not in mobile.system
    with pytest.raises(ValueError, match="qwen2-vl has no tool-call prompt"):
        point_prompt("qwen2-vl", "x", style="tool_call")
    with pytest.raises(ValueError, match="needs the model input size"):
        point_prompt("qwen2.5-vl", "x", style="tool_call")
    with pytest.raises(ValueError, match="unknown point style"):
        point_prompt("qwen2.5-vl", "x", style="xml")


def test_a_tool_with_the_plain_style_is_refused_not_ignored(tiny_checkpoint, screenshot):
    model = vlground.load_model(tiny_checkpoint("qwen3-vl"), device="cpu")
    with pytest.raises(ValueError, match=r"the tool \(mobile_use\) is for the tool_call style"):
        model.point(screenshot, "the Submit button", tool="mobile_use")
    with pytest.raises(ValueError, match="unknown tool 'desktop'"):
        model.point(screenshot, "the Submit button", style="tool_call", tool="desktop")


@pytest.mark.parametrize("max_pixels, seen", [(None, "644x476"), (100000, "364x252")])
def test_a_server_gets_the_tool_in_a_system_turn_with_its_own_resize(max_pixels, seen):
    """Behind a server the screen size told is what the server's processor makes of the screenshot
    (its min/max pixels), and the answer is read in that frame."""
    from test_server_backend import QWEN25, FakeServer, completion  # tests/ is on sys.path

    width, height = (int(v) for v in seen.split("x"))
    server = FakeServer(lambda body: completion(_call(width // 2, height // 2)), [{"id": QWEN25, "object": "model", "root": QWEN25}])
    try:
        model = vlground.load_model(server.url, served_model=QWEN25, max_pixels=max_pixels)
        result = model.point(Image.new("RGB", (640, 480), "white"), "the OK button", style="tool_call")
    finally:
        server.stop()
    [(_, body)] = server.chats
    system, user = body["messages"]
    assert system["role"] == "system" and f"The screen's resolution is {seen}." in system["content"][0]["text"]
    assert user["role"] == "user" and user["content"][1] == {"type": "text", "text": "the OK button"}
    assert result.detections[0].point == pytest.approx((width // 2 * 640 / width, height // 2 * 480 / height))


def test_a_thinking_model_clicks_where_its_answer_says(tiny_checkpoint, screenshot):
    """Qwen3.5 reasons first by default: a click drafted in the reasoning is not the one taken."""
    from vlground.testing.forced import with_reasoning

    model = vlground.load_model(tiny_checkpoint("qwen3.5"), device="cpu")
    with forced_answers(model.backend, lambda p: with_reasoning(_call(250, 250), _call(900, 900))):
        result = model.point(screenshot, "the Submit button", style="tool_call", max_new_tokens=400)
    assert result.detections[0].point == pytest.approx(SUBMIT)
    assert "900" in result.reasoning


def test_qwen_vl_base_completes_the_box_and_the_click_is_its_centre(tiny_checkpoint, screenshot):
    """Qwen-VL (2023) is a prefix completion: "<ref>target</ref><box>" is continued with the corners."""
    model = vlground.load_model(tiny_checkpoint("qwen-vl"), device="cpu")
    with forced_answers(model.backend, {"Submit": "(200,200),(300,300)</box>"}):
        result = model.point(screenshot, "the Submit button", max_new_tokens=28)
    assert _points([result]) == [[("the Submit button", pytest.approx(SUBMIT), "box")]]


def test_tool_call_system_turns_equal_the_cookbooks():
    """The mobile-agent cookbooks' system turns, verbatim (tests/data/gui/system_turns.json): the
    rendering of the tool, the screen size and the function-call instructions match to the character."""
    import json
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "data" / "gui" / "system_turns.json").read_text(encoding="utf-8"))
    for turn in data["turns"]:
        input_size = tuple(turn["input_size"]) if turn["input_size"] else None
        built = point_prompt(turn["family"], "x", style="tool_call", tool=turn["tool"], input_size=input_size)
        assert built.system == turn["system"], turn["source"]
    with pytest.raises(ValueError, match="unknown tool 'keyboard'"):
        point_prompt("qwen3-vl", "x", style="tool_call", tool="keyboard")
