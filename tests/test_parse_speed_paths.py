"""The columnar path (long answers, numpy) and the item-by-item path (short answers) of the
placement give the same detections: same boxes, clipping, corner order, de-duplication, labels,
texts and attributes, whatever the items."""
import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from vlground.core.geometry import Frame
from vlground.grammar import json_items, parse
from vlground.grammar.placement import COLUMNAR_FROM, place

_ints = st.integers(-200, 1400)
# mostly numbers (so most answers take the columnar path), sometimes what no box may hold
number = st.one_of(
    _ints, _ints, _ints, _ints, _ints, _ints, _ints, _ints, st.floats(-200, 1400, allow_nan=False),
    st.sampled_from([10**400, float("nan"), float("inf"), "12", "x", None, True, [1], 1e300]),
)
box = st.lists(number, min_size=4, max_size=4)
item = st.fixed_dictionaries(
    {"bbox_2d": box},
    optional={
        "label": st.sampled_from(["car", " car ", "dog", "", "the  red car", 7, None]),
        "text_content": st.sampled_from(["EXIT", "12.00", None]),
        "score": st.sampled_from([0.5, "high", [1, 2]]),
    },
)


def found_of(items):
    found = json_items.Extraction()
    json_items._collect(items, found)
    return found


def same(a, b):
    assert [d.to_dict() for d in a.detections] == [d.to_dict() for d in b.detections]
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    assert a.clipped == b.clipped


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(item, min_size=1, max_size=40),
    repeats=st.lists(st.integers(0, 39), max_size=10),
    frame=st.sampled_from([Frame("input_pixels", (870, 1398), (868, 1400)), Frame("norm1000", (640, 480)), Frame("norm1000", (999, 999), scale=999)]),
)
def test_columnar_and_item_paths_agree(items, repeats, frame):
    items = items + [items[i % len(items)] for i in repeats]  # exact repeats, a generation loop
    found = found_of(items)
    same(place(found, frame, "", columnar_from=0), place(found, frame, "", columnar_from=10**9))


def test_long_answers_take_the_columnar_path_and_keep_every_check():
    items = [{"bbox_2d": [900, 1100, -20, 300], "label": "x"}] * 3 + [
        {"bbox_2d": [i, i, i + 10, i + 10], "label": f"  item {i % 5}"} for i in range(COLUMNAR_FROM)
    ]
    r = parse(json.dumps(items), "qwen3-vl", (500, 400))
    assert r._columns is not None  # the columns, not Detection objects yet
    assert r.detections[0].box == (0.0, 120.0, 450.0, 400.0)  # ordered and clipped
    assert len(r.detections) == COLUMNAR_FROM + 1  # the repeats kept once
    assert r.detections[1].label == "item 0"
    assert r.xyxy.shape == (COLUMNAR_FROM + 1, 4)


def test_fingerprint_collisions_are_settled_by_the_rows():
    # two different rows whose fingerprints are equal must both stay
    from vlground.grammar import placement

    boxes = np.array([[1.0, 0, 0, 0], [0.0, 0, 0, 0]])
    w = placement._WEIGHTS
    boxes[1, 1] = w[0] / w[1]  # same dot product as row 0
    assert np.isclose(boxes[0] @ w, boxes[1] @ w)
    assert placement._first_of_repeats(boxes, ["a", "a"], None, None) is None
    assert placement._first_of_repeats(np.array([[1.0, 2, 3, 4]] * 3), ["a", "b", "a"], None, None) == [0, 1]


EDGES = ['["\\ud800"]', "[NaN]", "[1e400]", "[" + "9" * 400 + "]", "[" * 990 + "]" * 990, "[1,]", "\ufeff[1]", "[1] x", " [1] ",
         '{"a": 1, "a": 2}', '[1.0000000000000002, 5e-324, -0.0]', '"\\u00e9"']
json_text = st.recursive(
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=5), st.booleans(), st.none()).map(json.dumps),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(st.tuples(st.text(max_size=3).map(json.dumps), inner), max_size=3).map(lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"),
    ),
    max_leaves=12,
)


def decoded(text):
    try:
        return ("ok", json_items.loads(text))
    except (ValueError, RecursionError) as error:
        return ("error", type(error).__name__)


@pytest.mark.skipif(json_items.orjson is None, reason="orjson is not installed: only Python's decoder runs")
@settings(max_examples=200, deadline=None)
@given(text=st.one_of(json_text, st.sampled_from(EDGES), st.text(max_size=20)))
def test_the_fast_decoder_reads_what_pythons_reads(text):
    expected = decoded_by_python(text)
    got = decoded(text)
    assert got[0] == expected[0]
    if got[0] == "ok":
        assert json.dumps(got[1]) == json.dumps(expected[1])  # NaN and -0.0 compare by their writing


def decoded_by_python(text):
    try:
        return ("ok", json.loads(text))
    except (ValueError, RecursionError) as error:
        return ("error", type(error).__name__)


@pytest.mark.parametrize("big", [2**63, -(2**63) - 1, 2**70])
def test_integers_past_64_bits_are_dropped_whichever_decoder_reads_them(big, monkeypatch):
    text = f'[{{"bbox_2d": [1, 2, 3, 4], "label": "a", "n": {big}, "m": 5}}]'
    fast = parse(text, "qwen3-vl", (100, 100)).detections[0].attributes
    monkeypatch.setattr(json_items, "orjson", None)
    assert parse(text, "qwen3-vl", (100, 100)).detections[0].attributes == fast == {"m": 5}


def test_a_repeat_is_found_at_every_position():
    from vlground.grammar import placement

    rng = np.random.default_rng(0)
    for n in range(2, 130):
        boxes = rng.uniform(0, 1000, (n, 4))
        j = int(rng.integers(0, n - 1))
        boxes[-1] = boxes[j]
        assert placement._first_of_repeats(boxes, ["a"] * n, None, None) == list(range(n - 1))


# plain boxes, now and then with what the bulk read must leave to the walk
VARIANTS = {
    "plain": lambda c: {"bbox_2d": c, "label": "car"},
    "score": lambda c: {"bbox_2d": c, "label": "car", "score": 0.5},
    "number label": lambda c: {"bbox_2d": c, "label": 7},
    "pairs": lambda c: {"bbox_2d": [c[:2], c[2:], c[:2], c[2:]], "label": "car"},
    "digits": lambda c: {"bbox_2d": "1234", "label": "car"},
    "five": lambda c: {"bbox_2d": c + [1], "label": "car"},
    "point key": lambda c: {"point_2d": c[:2], "label": "car"},
    "strings": lambda c: {"bbox_2d": [str(v) for v in c], "label": " the  car "},
    "odd value": lambda c: {"bbox_2d": c[:3] + [None], "label": "car"},
}
plain_item = st.tuples(st.sampled_from(["plain"] * 40 + list(VARIANTS)), st.lists(_ints, min_size=4, max_size=4)).map(lambda vc: VARIANTS[vc[0]](vc[1]))


@settings(max_examples=300, deadline=None)
@given(items=st.lists(plain_item, min_size=json_items._BULK_FROM, max_size=40))
def test_the_bulk_read_of_plain_boxes_is_the_walk(items):
    # the bulk read takes only lists of plain boxes; whatever it takes, the walk reads the same
    text = json.dumps(items)
    bulk = json_items.extract(text)
    walked = found_of(json.loads(text))
    assert (bulk.coords, bulk.labels, bulk.texts, bulk.attributes) == (walked.coords, walked.labels, walked.texts, walked.attributes)
    frame = Frame("norm1000", (640, 480))
    for columnar_from in (0, 10**9):
        a, b = place(bulk, frame, text, columnar_from=columnar_from), place(walked, frame, text, columnar_from=columnar_from)
        same(a, b)


def test_plain_boxes_are_read_in_bulk():
    items = [{"bbox_2d": [1, 2, 3, 4], "label": " a  b"}] * json_items._BULK_FROM
    assert json_items.extract(json.dumps(items)).boxes.shape == (json_items._BULK_FROM, 4)
    pairs = [{"bbox_2d": [[0, 0], [10, 0], [10, 10], [0, 10]], "label": "q"}] * json_items._BULK_FROM  # a quad as pairs: walked
    assert json_items.extract(json.dumps(pairs)).boxes is None
    assert parse(json.dumps(pairs), "qwen3-vl", (100, 100)).detections[0].quad == ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))
