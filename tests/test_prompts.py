import pytest

from vlground.prompts import TASKS, build_prompt


def test_official_wording():
    assert build_prompt("ground", "qwen2.5-vl", phrase="the red car").text == (
        "Locate the red car in this image and output the bbox coordinates in JSON format."
    )
    assert build_prompt("detect", "qwen3-vl", categories=["car", "bus"]).text == (
        'Locate every instance that belongs to the following categories: "car, bus". Report bbox coordinates in JSON format.'
    )
    assert build_prompt("read_text", "qwen2.5-vl").text == "Read all the text in the image."


def test_qwen_vl_base_refcoco_prefix():
    p = build_prompt("ground", "Qwen/Qwen-VL", phrase="the red car")
    assert not p.chat
    assert p.text == "<img></img><ref>the red car</ref><box>"
    assert p.response_prefix == "<ref>the red car</ref><box>"
    assert p.max_new_tokens == 28


def test_qwen_vl_chat_detect_says_all():
    assert "all" in build_prompt("detect", "qwen-vl-chat", categories="cars").text.split()


@pytest.mark.parametrize("family", ["qwen-vl", "qwen-vl-chat", "qwen2-vl", "qwen2.5-vl", "qwen3-vl"])
def test_every_task_for_every_family(family):
    for task in TASKS:
        p = build_prompt(task, family, phrase="x", categories=["y"], question="what?")
        assert p.text and "{" not in p.text


def test_missing_argument_and_unknown_task():
    with pytest.raises(ValueError, match="needs phrase"):
        build_prompt("ground", "qwen2.5-vl")
    with pytest.raises(ValueError, match="unknown task"):
        build_prompt("segment", "qwen2.5-vl")
