import pytest
from hypothesis import example, given, settings, strategies as st
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize

from vlground.geometry import from_pixels, model_input_size, smart_resize, to_pixels

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
    assert list(to_pixels([500, 250], "norm1000", (2000, 1000))) == [1000, 250]
    assert list(to_pixels([999, 999], "norm1000", (999, 999), scale=999)) == [999, 999]
    assert list(to_pixels([434, 700], "input_pixels", (870, 1398), input_size=(868, 1400))) == pytest.approx([435.0, 699.0])
    with pytest.raises(ValueError):
        to_pixels([1, 2], "input_pixels", (10, 10))
    with pytest.raises(ValueError):
        to_pixels([1, 2], "percent", (10, 10))


@given(x=st.floats(0, 870), y=st.floats(0, 1398))
def test_from_pixels_inverts_to_pixels_within_one_unit(x, y):
    back = from_pixels([x, y], "input_pixels", (870, 1398), (868, 1400))
    again = to_pixels(back, "input_pixels", (870, 1398), (868, 1400))
    assert abs(again[0] - x) <= 870 / 868 and abs(again[1] - y) <= 1398 / 1400 + 1e-9

