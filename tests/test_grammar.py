"""Every dialect and malformed shape of DESIGN.md §1, on the verbatim outputs quoted there."""
import pytest

from vlground.grammar import parse

APPLES = "<ref> Two apples</ref><box>(302,257),(582,671)</box><box>(603,252),(878,642)</box> and<ref> a bowl</ref><box>(2,269),(304,674)</box>"
RECEIPT = (
    '```json\n[\n\t{"bbox_2d": [125, 169, 754, 208], "text_content": "UNIHAKKA INTERNATIONAL SDN BHD",},\n'
    '\t{"bbox_2d": [300, 220, 580, 250], "text_content": "12, Jalan Tampoi 7/4",},\n]\n```'
)
CAKE = '```json\n[\n\t{"bbox_2d": [765, 394, 891, 550], "label": "top right brown cake"}\n]\n```'


def boxes(result):
    return [d.box for d in result.detections]


def test_qwen_vl_single_box_in_thousandths_of_the_original():
    r = parse("<ref>击掌</ref><box>(536,509),(588,602)</box>", "qwen-vl", (2000, 1000))
    assert boxes(r) == [(1072.0, 509.0, 1176.0, 602.0)]
    assert r.detections[0].label == "击掌" and r.text == "击掌"


def test_qwen_vl_divisor_999_is_a_choice():
    r = parse("<ref>x</ref><box>(0,0),(999,999)</box>", "qwen-vl", (999, 999), scale=999)
    assert boxes(r) == [(0.0, 0.0, 999.0, 999.0)]


def test_several_boxes_after_one_ref_keep_the_label_and_leading_space_is_trimmed():
    r = parse(APPLES, "qwen-vl-chat", (1000, 1000))
    assert [d.label for d in r.detections] == ["Two apples", "Two apples", "a bowl"]
    assert boxes(r)[1] == (603.0, 252.0, 878.0, 642.0)
    assert r.text == "Two apples and a bowl"


def test_tags_removed_by_skip_special_tokens():
    r = parse("击掌(536,509),(588,602)", "qwen-vl", (1000, 1000))
    assert boxes(r) == [(536.0, 509.0, 588.0, 602.0)] and r.detections[0].label == "击掌"
    stripped = "Two apples(302,257),(582,671)(603,252),(878,642) and a bowl(2,269),(304,674)"
    r = parse(stripped, "qwen-vl", (1000, 1000))
    assert [d.label for d in r.detections] == ["Two apples", "Two apples", "and a bowl"]


def test_quad():
    r = parse("<ref>EXIT</ref><quad>(100,100),(300,110),(290,200),(95,190)</quad>", "qwen-vl", (500, 1000))
    assert r.detections[0].quad == ((50.0, 100.0), (150.0, 110.0), (145.0, 200.0), (47.5, 190.0))
    assert r.detections[0].box is None


def test_qwen2_vl_special_tokens():
    text = "<|object_ref_start|>the car<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|>"
    r = parse(text, "qwen2-vl", (640, 480))
    assert boxes(r) == [(64.0, 96.0, 192.0, 192.0)] and r.detections[0].label == "the car"
    q = parse("<|quad_start|>(0,0),(10,0),(10,10),(0,10)<|quad_end|>", "qwen2-vl", (1000, 1000))
    assert q.detections[0].quad[2] == (10.0, 10.0)


def test_qwen25_input_pixel_frame_uses_the_resized_input():
    # 1024x1024 is fed as 1036x1036: the box shrinks by 1024/1036
    r = parse(CAKE, "qwen2.5-vl", (1024, 1024))
    assert boxes(r)[0] == pytest.approx((765 * 1024 / 1036, 394 * 1024 / 1036, 891 * 1024 / 1036, 550 * 1024 / 1036))
    assert r.detections[0].label == "top right brown cake"


def test_explicit_input_size_wins_over_derived():
    r = parse(CAKE, "qwen2.5-vl", (1024, 1024), input_size=(1024, 1024))
    assert boxes(r)[0] == (765.0, 394.0, 891.0, 550.0)


def test_ocr_items_with_trailing_commas():
    r = parse(RECEIPT, "qwen2.5-vl", (870, 1398))  # model input 868x1400
    assert [d.text for d in r.detections] == ["UNIHAKKA INTERNATIONAL SDN BHD", "12, Jalan Tampoi 7/4"]
    assert r.detections[0].box == pytest.approx((125 * 870 / 868, 169 * 1398 / 1400, 754 * 870 / 868, 208 * 1398 / 1400))
    assert r.text == "UNIHAKKA INTERNATIONAL SDN BHD\n12, Jalan Tampoi 7/4"


def test_output_cut_mid_list_keeps_complete_objects():
    cut = RECEIPT[: RECEIPT.index("12, Jalan") + 4]
    r = parse(cut, "qwen2.5-vl", (870, 1398))
    assert [d.text for d in r.detections] == ["UNIHAKKA INTERNATIONAL SDN BHD"]


def test_single_dict_prose_after_and_no_fence():
    r = parse('{"bbox_2d": [10, 20, 30, 40], "label": "cat"}\nThe cat sits on the mat.', "qwen3-vl", (1000, 1000))
    assert boxes(r) == [(10.0, 20.0, 30.0, 40.0)] and r.text == "The cat sits on the mat."


def test_reversed_corners_and_past_the_edge_are_ordered_and_clipped():
    r = parse('[{"bbox_2d": [900, 1100, -20, 300], "label": "x"}]', "qwen3-vl", (500, 400))
    assert boxes(r) == [(0.0, 120.0, 450.0, 400.0)]


def test_repeated_boxes_are_kept_once():
    item = '{"bbox_2d": [10, 20, 30, 40], "label": "cup"}'
    r = parse(f"[{item}, {item}, {item}]", "qwen3-vl", (1000, 1000))
    assert len(r.detections) == 1


def test_point_and_extra_keys_become_attributes():
    r = parse('[{"point_2d": [500, 250], "label": "nose", "confidence": "high"}]', "qwen3-vl", (200, 100))
    d = r.detections[0]
    assert d.point == (100.0, 25.0) and d.attributes == {"confidence": "high"}


def test_single_quotes_are_read():
    r = parse("[{'bbox_2d': [1, 2, 3, 4], 'label': 'a'}]", "qwen3-vl", (1000, 1000))
    assert boxes(r) == [(1.0, 2.0, 3.0, 4.0)]


def test_html_data_bbox():
    html = '<html><body><h1 data-bbox="10 10 500 60">Invoice</h1><p data-bbox="10 80 900 120">Total: <b>42</b></p></body></html>'
    r = parse(html, "qwen2.5-vl", (1000, 1000), input_size=(1000, 1000))
    assert [(d.label, d.text) for d in r.detections] == [("h1", "Invoice"), ("p", "Total: 42")]
    assert boxes(r)[1] == (10.0, 80.0, 900.0, 120.0)
    assert "Invoice" in r.text and "<" not in r.text


def test_qwen3_markdown_image_comment():
    r = parse("# Report\n<!-- Image (100, 200, 500, 600) -->\nSales rose.", "qwen3-vl", (2000, 1000))
    assert boxes(r) == [(200.0, 200.0, 1000.0, 600.0)] and r.detections[0].label == "image"
    assert "<!--" not in r.text


def test_plain_line_form():
    r = parse("10,20,30,40 red car\n50,60,70,80 blue car", "qwen2.5-vl", (1000, 1000), input_size=(1000, 1000))
    assert [(d.label, d.box) for d in r.detections] == [("red car", (10.0, 20.0, 30.0, 40.0)), ("blue car", (50.0, 60.0, 70.0, 80.0))]


@pytest.mark.parametrize("family", ["qwen-vl", "qwen2-vl", "qwen2.5-vl", "qwen3-vl"])
def test_no_geometry_is_no_detection(family):
    r = parse("I cannot see a red car in this picture.", family, (640, 480))
    assert r.detections == [] and r.text == "I cannot see a red car in this picture."


def test_truncated_tag_box_is_not_a_box():
    r = parse("<ref>dog</ref><box>(10,20),(3", "qwen-vl", (1000, 1000))
    assert r.detections == []
