import pytest
from hypothesis import example, given, settings, strategies as st
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

import numpy as np

from vlground.core.geometry import Frame, model_input_size, smart_resize

sides = st.integers(min_value=1, max_value=9000)
settings_ = st.sampled_from([(28, 3136, 12845056), (28, 3136, 1280 * 28 * 28), (32, 65536, 16777216), (28, 56 * 56, 256 * 28 * 28)])


@settings(max_examples=3000, deadline=None)
@given(h=sides, w=sides, cfg=settings_)
@example(h=14, w=14, cfg=(28, 3136, 12845056))  # round(0.5) == 0: ties go to even
@example(h=42, w=70, cfg=(28, 3136, 12845056))  # 1.5 and 2.5 ties
@example(h=1, w=201, cfg=(28, 3136, 12845056))  # aspect ratio just over 200
@example(h=3, w=600, cfg=(28, 3136, 12845056))  # aspect ratio exactly 200
def test_smart_resize_is_transformers(h, w, cfg):
    factor, lo, hi = cfg
    try:
        expected = hf_smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi)
    except ValueError:
        with pytest.raises(ValueError):
            smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi)
        return
    assert smart_resize(h, w, factor=factor, min_pixels=lo, max_pixels=hi) == expected


@pytest.mark.parametrize(
    "size, expected",
    [((1024, 1024), (1036, 1036)), ((870, 1398), (868, 1400)), ((1014, 1532), (1008, 1540)), ((3840, 2160), (3836, 2156))],
)
def test_released_checkpoint_sizes(size, expected):
    # DESIGN.md §2 examples, (width, height) of original and model input
    assert model_input_size("qwen2.5-vl", size) == expected


def test_max_pixels_override_changes_input():
    assert model_input_size("qwen2.5-vl", (3840, 2160), max_pixels=1280 * 28 * 28) != (3836, 2156)


def test_qwen3_uses_factor_32():
    w, h = model_input_size("qwen3-vl", (1000, 700))
    assert w % 32 == 0 and h % 32 == 0


def test_nonpositive_size_is_an_error():
    with pytest.raises(ValueError):
        smart_resize(0, 10)


def test_frames_to_pixels():
    assert list(Frame("norm1000", (2000, 1000)).to_pixels([500, 250])) == [1000, 250]
    assert list(Frame("norm1000", (999, 999), scale=999).to_pixels([999, 999])) == [999, 999]
    assert list(Frame("input_pixels", (870, 1398), (868, 1400)).to_pixels([434, 700])) == pytest.approx([435.0, 699.0])
    with pytest.raises(ValueError):
        Frame("input_pixels", (10, 10))
    with pytest.raises(ValueError):
        Frame("percent", (10, 10))


@settings(deadline=None)  # hypothesis' default 200 ms per example fails on a stall of a loaded machine, not on this arithmetic
@given(x=st.floats(0, 870), y=st.floats(0, 1398))
def test_from_pixels_inverts_to_pixels_within_one_unit(x, y):
    frame = Frame("input_pixels", (870, 1398), (868, 1400))
    again = frame.to_pixels(frame.from_pixels([x, y]))
    assert abs(again[0] - x) <= 870 / 868 and abs(again[1] - y) <= 1398 / 1400 + 1e-9


FRAMES = [
    Frame("norm1000", (640, 480)),
    Frame("norm1000", (640, 480), scale=999),
    Frame("input_pixels", (870, 1398), (868, 1400)),
    Frame.for_family("qwen3-vl", (3000, 200)),
]


@pytest.mark.parametrize("frame", FRAMES, ids=repr)
@settings(deadline=None)
@given(x=st.floats(-1e7, 1e7), y=st.floats(-1e7, 1e7))
def test_from_pixels_clamps_points_outside_the_image_into_the_frame(frame, x, y):
    # whatever the pixels, what a model would write lies inside its frame
    out = frame.from_pixels([x, y, -50.0, -50.0, frame.image_size[0] * 3.0, frame.image_size[1] * 3.0])
    ex, ey = frame.extent
    assert (out[0::2] >= 0).all() and (out[0::2] <= ex).all() and (out[1::2] >= 0).all() and (out[1::2] <= ey).all()
    assert list(out[2:4]) == [0, 0] and list(out[4:]) == [ex, ey]


def test_for_family_builds_the_frame_each_family_writes_in():
    assert Frame.for_family("qwen2.5-vl", (1024, 1024)) == Frame("input_pixels", (1024, 1024), (1036, 1036))
    assert Frame.for_family("qwen2.5-vl", (1024, 1024), (1000, 1000)).sx == 1.024
    assert Frame.for_family("qwen3-vl", (1000, 700)).input_size == model_input_size("qwen3-vl", (1000, 700))
    assert Frame.for_family("qwen-vl", (640, 480), scale=999) == Frame("norm1000", (640, 480), None, 999)
    with pytest.raises(ValueError, match="scale"):
        Frame.for_family("qwen-vl", (640, 480), scale=0)
    with pytest.raises(ValueError, match="max_pixels"):
        Frame.for_family("qwen2.5-vl", (640, 480), max_pixels=0)
    with pytest.raises(ValueError, match="aspect ratio"):
        Frame.for_family("qwen2.5-vl", (20000, 20))
    with pytest.raises(ValueError, match="image size"):
        Frame("norm1000", (0, 10))


def test_boxes_to_pixels_orders_clips_and_drops_garbage():
    frame = Frame("norm1000", (500, 400))
    px, kept, clipped = frame.boxes_to_pixels(np.array([[900, 1100, -20, 300], [1, 2, 3, np.nan], [1e300, 0, 0, 0], [0, 0, 1000, 1000]]))
    assert kept.tolist() == [True, False, False, True]
    assert px.tolist() == [[0.0, 120.0, 450.0, 400.0], [0.0, 0.0, 500.0, 400.0]]
    assert clipped == 2  # 1100 and -20; 1000 is the edge itself


def test_place_is_boxes_to_pixels_for_one_item():
    frame = Frame("input_pixels", (870, 1398), (868, 1400))
    assert frame.place([754, 208, 125, 169]) == tuple(frame.boxes_to_pixels(np.array([[754, 208, 125, 169]]))[0][0])
    assert frame.place([434, 2000]) == (435.0, 1398.0)
    assert frame.place(["1", "2", "3", "4"]) == frame.place([1, 2, 3, 4])
    assert frame.place([1, 2, 3]) is None and frame.place(["a", 1, 2, 3]) is None and frame.place([10**400, 1, 2, 3]) is None
    quad = frame.place([0, 0, 868, 0, 868, 1400, 0, 1400])
    assert quad == ((0.0, 0.0), (870.0, 0.0), (870.0, 1398.0), (0.0, 1398.0))


def test_a_full_image_box_is_written_as_999_on_the_1000_grid_and_998_when_dividing_by_999():
    """The grid's largest value is scale - 1, written out here rather than read from `Frame.extent`."""
    for family in ("qwen2-vl", "qwen3-vl", "qwen-vl"):
        assert Frame.for_family(family, (640, 480)).from_pixels([0, 0, 640, 480]).tolist() == [0, 0, 999, 999]
    assert Frame.for_family("qwen3-vl", (640, 480), scale=999).from_pixels([640, 480]).tolist() == [998, 998]
