"""GUI answers (where to click) land on the right pixel of the original screenshot: published model
outputs of every dialect (tests/data/gui/cases.json, the source beside each), then the shapes around
them: boxes given to a click, reasoning before the action, answers that are not actions, garbage."""
import json
from pathlib import Path

import math

import pytest
from hypothesis import given, settings, strategies as st

from test_parse_fuzz import best_time
from vlground.grammar import parse

CASES = json.loads((Path(__file__).parent / "data" / "gui" / "cases.json").read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_published_answers_land_on_the_right_pixel(case):
    assert case["source"].startswith("https://")
    sizes = {k: case[k] for k in ("min_pixels", "max_pixels") if k in case}
    result = parse(case["text"], case["family"], tuple(case["image_size"]), scale=case.get("scale", 1000), **sizes)
    assert len(result.detections) == 1, result.detections
    found = result.detections[0]
    assert found.point == pytest.approx(tuple(case["point"]), abs=case["tolerance"])
    assert found.attributes == case["attributes"]


def test_the_frame_follows_the_family():
    """One tool call, three generations: Qwen2.5-VL pixels of the resized input, the others 0-1000."""
    call = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [500, 250]}}\n</tool_call>'
    # 1000x500 is fed to Qwen2.5-VL as 1008x504 (factor 28)
    assert parse(call, "qwen2.5-vl", (1000, 500)).detections[0].point == pytest.approx((500 * 1000 / 1008, 250 * 500 / 504))
    for family in ("qwen3-vl", "qwen3.5"):
        assert parse(call, family, (1000, 500)).detections[0].point == pytest.approx((500.0, 125.0))
    assert parse(call, "qwen3-vl", (1000, 500), scale=999).detections[0].point == pytest.approx((500 / 999 * 1000, 250 / 999 * 500))


def test_a_box_given_as_the_click_target_is_a_box():
    r = parse("Action: click(start_box='(100,200,300,400)')", "qwen2-vl", (1000, 1000))
    assert r.detections[0].box == (100.0, 200.0, 300.0, 400.0) and r.detections[0].point is None
    call = '<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [10, 20, 30, 40]}}</tool_call>'
    assert parse(call, "qwen3-vl", (1000, 1000)).detections[0].box == (10.0, 20.0, 30.0, 40.0)
    assert parse("click(start_box='[10, 20, 30, 40]')", "qwen3-vl", (1000, 1000)).detections[0].box == (10.0, 20.0, 30.0, 40.0)


def test_action_values_in_every_spelling():
    for value in ("(250,500)", "( 250 , 500 )", "<|box_start|>(250,500)<|box_end|>", "<point>250 500</point>", "[250, 500]"):
        for key in ("start_box", "point", "start_point"):
            r = parse(f"click({key}='{value}')", "qwen3-vl", (2000, 1000))
            assert [d.point for d in r.detections] == [(500.0, 500.0)], (key, value)
    assert parse('left_double(start_box="(250,500)")', "qwen3-vl", (2000, 1000)).detections[0].attributes == {"action": "left_double"}


def test_a_click_drafted_in_a_ui_tars_thought_is_not_the_action():
    """UI-TARS writes its reasoning as "Thought: ..." and the action after "Action:" (its parser reads after the last one)."""
    answer = "Thought: Last time click(start_box='(100,100)') missed the button.\nAction: click(start_box='(235,512)')"
    for family in ("qwen2.5-vl", "qwen3-vl"):
        assert [d.point for d in parse(answer, family, (1000, 1000), input_size=(1000, 1000)).detections] == [(235.0, 512.0)]


def test_arguments_as_a_json_string_and_calls_cut_off():
    call = '<tool_call>{"name": "computer_use", "arguments": "{\\"action\\": \\"left_click\\", \\"coordinate\\": [100, 100]}"}</tool_call>'
    assert parse(call, "qwen3-vl", (1000, 1000)).detections[0].point == (100.0, 100.0)
    cut = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [100, 100]}}'
    assert parse(cut, "qwen3-vl", (1000, 1000)).detections[0].point == (100.0, 100.0)
    trailing = '<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [100, 100],},}</tool_call>'
    assert parse(trailing, "qwen3-vl", (1000, 1000)).detections[0].point == (100.0, 100.0)
    # cut inside its JSON: the coordinate is read where it was written out whole, never a part of it
    inside = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [100, 200]'
    [click] = parse(inside, "qwen3-vl", (1000, 1000)).detections
    assert click.point == (100.0, 200.0) and click.attributes == {"tool": "computer_use", "action": "left_click"}
    assert parse(inside[:-2], "qwen3-vl", (1000, 1000)).detections == []  # "[100, 2": no click at y 2
    closed = '<tool_call>{"name": "computer_use", "arguments": {"coordinate": [100, 200]</tool_call>'
    assert parse(closed, "qwen3-vl", (1000, 1000)).detections == []  # ended, yet not JSON: skipped


def test_several_calls_keep_their_order_and_calls_without_a_point_are_skipped():
    text = ('<tool_call>{"name": "computer_use", "arguments": {"action": "type", "text": "hi"}}</tool_call>'
            '<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [1, 2]}}</tool_call>'
            '<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [3, 4]}}</tool_call>')
    assert [d.point for d in parse(text, "qwen3-vl", (1000, 1000)).detections] == [(1.0, 2.0), (3.0, 4.0)]


def test_reasoning_before_the_action_is_not_read():
    """A thinking checkpoint drafts a click in its reasoning; only the answer's call counts."""
    draft = '<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [900, 900]}}</tool_call>'
    final = '<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [100, 200]}}</tool_call>'
    r = parse(f"Maybe {draft}? No, the button is higher.\n</think>\n\n{final}", "qwen3.5", (1000, 1000))
    assert [d.point for d in r.detections] == [(100.0, 200.0)] and "900" in r.reasoning
    cut = parse(f"<think>Maybe {draft}", "qwen3.5", (1000, 1000))
    assert cut.detections == [] and cut.reasoning_cut_short


def test_the_family_dialect_comes_first():
    """A box answer is read as before; the GUI shapes only where the family's dialect finds nothing."""
    r = parse('[{"bbox_2d": [1, 2, 3, 4], "label": "point:5,6"}]', "qwen3-vl", (1000, 1000))
    assert [(d.box, d.point) for d in r.detections] == [((1.0, 2.0, 3.0, 4.0), None)]


@pytest.mark.parametrize("text", [
    "The button says (not clickable).", "Click at (12, 34) or (56, 78).", "point: none", "click(start_box='')",
    "<tool_call>not json</tool_call>", '<tool_call>{"name": "computer_use", "arguments": {"coordinate": [1, 2, 3]}}</tool_call>',
    '<tool_call>{"arguments": {"coordinate": ["a", "b"]}}</tool_call>', "<|box_start|>(1,2)", "",
])
def test_answers_that_are_not_a_click_give_nothing(text):
    assert parse(text, "qwen3-vl", (1000, 1000)).detections == []


@pytest.mark.parametrize("unit", ["<tool_call>{", "<tool_call>{}</tool_call>", "click(start_box='(", "point:1,",
                                  "<|box_start|>(1,", "a(point='", "(1, "])
def test_linear_time_on_pathological_answers(unit):
    """Each marker repeated without what completes it: 4 times the text takes at most 8 times as long
    (a quadratic search takes 16), measured with the suite's timer and measured once more when a
    burst of load on this shared machine is the likelier cause."""
    def times() -> tuple[float, float]:
        return best_time("qwen3-vl", unit * (25_000 // len(unit))), best_time("qwen3-vl", unit * (100_000 // len(unit)))

    small, large = times()
    if large >= 8 * max(small, 5e-3):
        small, large = (min(a, b) for a, b in zip((small, large), times()))
    assert large < 2.0 and large < 8 * max(small, 5e-3), (unit, small, large)


def test_one_pair_in_box_tags_is_a_point():
    r = parse("<ref>the OK button</ref><box>(500,250)</box>", "qwen-vl-chat", (200, 100))
    assert [(d.label, d.point) for d in r.detections] == [("the OK button", (100.0, 25.0))]
    r = parse("<|object_ref_start|>OK<|object_ref_end|><|box_start|>(500,250)<|box_end|>", "qwen2-vl", (200, 100))
    assert [(d.label, d.point) for d in r.detections] == [("OK", (100.0, 25.0))]


@pytest.mark.parametrize("family", ["qwen-vl", "qwen-vl-chat", "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qwen3.5"])
@pytest.mark.parametrize("style", ["plain", "tool_call"])
def test_written_clicks_read_back_within_the_frame_rounding(family, style):
    """format_click writes what the family answers (training data); parse reads it back to within
    half a unit of the model's integer frame."""
    from vlground.core.geometry import Frame
    from vlground.grammar import format_click

    size, click = (1366, 768), (1000.4, 123.6)
    scale = 999 if style == "tool_call" and family.startswith("qwen3") else 1000
    text = format_click(click, family, size, style=style, scale=scale)
    assert ("<tool_call>" in text) == (style == "tool_call")
    frame = Frame.for_family(family, size, scale=scale)
    read = parse(text, family, size, scale=scale).detections
    assert len(read) == 1 and read[0].point == pytest.approx(click, abs=max(frame.sx, frame.sy) / 2 + 1e-9)


def test_gelab_points_in_its_upper_case_reasoning_are_not_read():
    text = "<THINK> point:100,100 is an ad, the real button is lower </THINK>\nexplain:tap\taction:CLICK\tpoint:500,800\tsummary:ok"
    assert [d.point for d in parse(text, "qwen3-vl", (1000, 1000)).detections] == [(500.0, 800.0)]


_PIECES = ["<tool_call>", "</tool_call>", "{", "}", "[", "]", '"coordinate"', '"arguments"', '"action"', ":", ",", " ",
           "\n", "\t", "1", "-2.5", "1e309", "999", "click(", "start_box=", "point=", "'", '"', "(", ")", "<|box_start|>",
           "<|box_end|>", "point:", "action:CLICK", "<THINK>", "</THINK>", "</think>", "<point>", "</point>", "NaN", "\\"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=60), st.sampled_from(["qwen2-vl", "qwen2.5-vl", "qwen3-vl", "qwen-vl"]))
def test_any_mix_of_gui_markup_never_raises_and_stays_on_the_image(pieces, family):
    result = parse("".join(pieces), family, (300, 200))
    for d in result.detections:
        for x, y in [d.point] if d.point is not None else [d.box[:2], d.box[2:]]:
            assert math.isfinite(x) and math.isfinite(y) and 0 <= x <= 300 and 0 <= y <= 200
