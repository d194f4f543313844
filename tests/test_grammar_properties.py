"""The parser never raises and never returns a box outside the image, whatever the text."""
import random

from hypothesis import given, settings, strategies as st

from vlground.core.geometry import Frame
from vlground.core.results import Detection
from vlground.grammar import format_detections, parse
from test_grammar import APPLES, CAKE, RECEIPT

REAL = [
    APPLES,
    CAKE,
    RECEIPT,
    "<ref>击掌</ref><box>(536,509),(588,602)</box>",
    "击掌(536,509),(588,602)",
    "<|object_ref_start|>car<|object_ref_end|><|box_start|>(10,20),(500,600)<|box_end|>",
    '<p data-bbox="10 20 300 40">Hello</p>',
    "<!-- Image (10, 20, 500, 600) -->",
    "10,20,30,40 red car",
    '[{"point_2d": [5, 6], "label": "p"}]',
    '<think>\nA draft: [{"bbox_2d": [1, 2, 3, 4]}]\n</think>\n\n```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "a"}]\n```',
    'maybe (1,2),(3,4)</think><answer><ref>dog</ref><box>(10,20),(30,40)</box></answer>',
]
FAMILIES = ["qwen-vl", "qwen-vl-chat", "qwen2-vl", "qwen2.5-vl", "qwen3-vl"]
ALPHABET = st.sampled_from(
    list('{}[]()<>,:"\'`|0123456789-. \n')
    + ["bbox_2d", "<box>", "</box>", "<ref>", "point_2d", "```json", "data-bbox=\"", "<!-- Image (", "<think>", "</think>", "<answer>", "</answer>"]
)


def mutate(text: str, seed: int) -> str:
    rng = random.Random(seed)
    chars = list(text)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        i = rng.randrange(len(chars) + 1)
        if op < 0.4 and chars:
            del chars[min(i, len(chars) - 1)]
        elif op < 0.7:
            chars.insert(i, rng.choice('{}[](),"<>-9 '))
        else:
            chars = chars[:i]  # cut off, as by max_new_tokens
    return "".join(chars)


def check_inside(result, size):
    w, h = size
    for d in result.detections:
        x1, y1, x2, y2 = d.xyxy
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h


sizes = st.tuples(st.integers(1, 5000), st.integers(1, 5000)).filter(lambda s: max(s) / min(s) <= 200)


@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=300), family=st.sampled_from(FAMILIES), size=sizes, thinking=st.sampled_from(["auto", "on", "off"]))
def test_random_text_never_raises(text, family, size, thinking):
    check_inside(parse(text, family, size, thinking=thinking), size)


@settings(max_examples=300, deadline=None)
@given(
    reasoning=st.one_of(st.lists(ALPHABET, max_size=40).map("".join), st.sampled_from(REAL), st.text(max_size=100)),
    answer=st.sampled_from(REAL[:-2]),
    family=st.sampled_from(FAMILIES),
    thinking=st.sampled_from(["auto", "on", "off"]),
)
def test_whatever_the_reasoning_holds_the_boxes_are_the_answers(reasoning, answer, family, thinking):
    # reasoning (with no closer of its own), then "</think>", then an answer: exactly the answer's detections
    reasoning = reasoning.replace("</think>", "")
    alone = parse(answer, family, (1000, 1000))
    after = parse(reasoning + "</think>" + answer, family, (1000, 1000), thinking=thinking)
    assert after.detections == alone.detections and after.text == alone.text
    assert after.reasoning == (reasoning.replace("<think>", "", 1).strip() or None)


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(ALPHABET, max_size=60), family=st.sampled_from(FAMILIES), size=sizes)
def test_grammar_soup_never_raises(parts, family, size):
    check_inside(parse("".join(parts), family, size), size)


@settings(max_examples=600, deadline=None)
@given(base=st.sampled_from(REAL), seed=st.integers(0, 10**9), family=st.sampled_from(FAMILIES), size=sizes)
def test_mutated_real_outputs_never_raise(base, seed, family, size):
    check_inside(parse(mutate(base, seed), family, size), size)


coord = st.floats(0, 1, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    family=st.sampled_from(FAMILIES),
    size=st.tuples(st.integers(50, 4000), st.integers(50, 4000)),
    raw=st.lists(st.tuples(coord, coord, coord, coord, st.sampled_from(["car", "the red car", "标志"])), min_size=1, max_size=5),
)
def test_format_then_parse_round_trips(family, size, raw):
    w, h = size
    dets = [
        Detection(label=label, box=(min(a, c) * w, min(b, d) * h, max(a, c) * w, max(b, d) * h)) for a, b, c, d, label in raw
    ]
    unit = Frame.for_family(family, size).to_pixels([1, 1])  # one step of the model's integer frame, in pixels
    back = parse(format_detections(dets, family, size), family, size).detections
    for d in dets:  # each comes back within one step (rounding, and 999 as the largest 0-1000 value)
        assert any(
            b.label == d.label
            and all(abs(p - q) <= unit[i % 2] + 1e-6 for i, (p, q) in enumerate(zip(b.box, d.box)))
            for b in back
        )


def test_round_trip_of_points_quads_and_text():
    size = (870, 1398)
    dets = [
        Detection(label="nose", point=(100.0, 200.0)),
        Detection(label=None, box=(10.0, 20.0, 300.0, 60.0), text="TOTAL 42.00"),
    ]
    back = parse(format_detections(dets, "qwen2.5-vl", size), "qwen2.5-vl", size).detections
    assert abs(back[0].point[0] - 100) <= 1.01 and abs(back[0].point[1] - 200) <= 1.01
    assert back[1].text == "TOTAL 42.00"
    quad = Detection(label="EXIT", quad=((100.0, 100.0), (300.0, 110.0), (290.0, 200.0), (95.0, 190.0)))
    again = parse(format_detections([quad], "qwen-vl", (1000, 1000)), "qwen-vl", (1000, 1000)).detections
    assert again == [quad]
