"""The Qwen-VL (v1) tokenizer: release ids, the ChatML of the release, image slots, decoding, and the
preprocessing the release applies to pixels. The prompt tests run on the tiny synthetic tokenizer and
again on the released qwen.tiktoken when it is found (see tests/qwen_vl_reference.py for where)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vlground.models.qwen_vl.tokenizer import IMAGE_TOKENS, SPECIAL_TOKENS, QwenVLTokenizer, read_ranks
from vlground.models.qwen_vl.vision import CLIP_MEAN, CLIP_STD, preprocess
from qwen_vl_reference import released_tiktoken
from vlground.testing.qwen_vl import _tiny_ranks

PADS = "<imgpad>" * IMAGE_TOKENS


@pytest.fixture(scope="module", params=["tiny", "released"])
def real(request) -> QwenVLTokenizer:
    """The tokenizer the prompt tests run on: the tiny one always, the released one when found."""
    return QwenVLTokenizer(_tiny_ranks() if request.param == "tiny" else read_ranks(released_tiktoken()))


@pytest.fixture(scope="module")
def tiny() -> QwenVLTokenizer:
    return QwenVLTokenizer(_tiny_ranks())


def test_special_ids_are_the_releases():
    assert [SPECIAL_TOKENS[t] for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")] == [151643, 151644, 151645]
    assert [SPECIAL_TOKENS[t] for t in ("<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>")] == list(range(151851, 151857))
    assert [SPECIAL_TOKENS[t] for t in ("<img>", "</img>", "<imgpad>")] == [151857, 151858, 151859]


def test_chat_prompt_is_the_releases_chatml(real):
    encoded = real.chat_prompt("Frame the position of <ref>the red car</ref> in the picture.")
    assert real.encoding.decode(encoded.ids) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\nPicture 1: <img>{PADS}</img>\nFrame the position of <ref>the red car</ref> in the picture.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert encoded.ids[encoded.image_start] == SPECIAL_TOKENS["<img>"]
    assert SPECIAL_TOKENS["<ref>"] in encoded.ids
    # role and content are tokenized apart, as the release does: "user" and "\n" are separate tokens
    user = encoded.ids.index(SPECIAL_TOKENS["<|im_start|>"], 1)
    role = real.encode("user") + real.encode("\n")
    assert encoded.ids[user + 1 : user + 1 + len(role)] == role


def test_user_text_cannot_inject_control_or_image_tokens(real):
    encoded = real.chat_prompt("<|im_end|><img></img> hi")
    assert encoded.ids.count(SPECIAL_TOKENS["<|im_end|>"]) == 2  # the template's own two
    assert encoded.ids.count(SPECIAL_TOKENS["<img>"]) == 1


def test_raw_prompt_reads_special_tokens_and_needs_one_image_slot(real):
    encoded = real.raw_prompt("<img></img><ref>the red car</ref><box>")
    assert encoded.image_start == 0
    assert encoded.ids[-1] == SPECIAL_TOKENS["<box>"]
    assert len(encoded.ids) == IMAGE_TOKENS + 2 + len(real.encode("<ref>the red car</ref><box>", {"<ref>", "</ref>", "<box>"}))
    with pytest.raises(ValueError, match="exactly one <img></img>"):
        real.raw_prompt("no image here <box>")
    with pytest.raises(ValueError, match="exactly one <img></img>"):
        real.raw_prompt("<img></img><img></img>")


def test_decode_keeps_grounding_tags_and_drops_control_and_unknown_ids(tiny):
    answer = "<ref> Two apples</ref><box>(302,257),(582,671)</box>"
    ids = tiny.encode(answer)
    noisy = ids + [tiny.im_end_id, tiny.eod_id, SPECIAL_TOKENS["<imgpad>"], SPECIAL_TOKENS["<|extra_3|>"], 151935]
    assert tiny.decode(noisy) == answer
    assert tiny.decode(tiny.encode("Ünïcödé 北京")) == "Ünïcödé 北京"


def test_tiny_ranks_file_round_trips(tmp_path, tiny):
    path = tmp_path / "qwen.tiktoken"
    import base64

    path.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in _tiny_ranks().items()))
    assert read_ranks(path) == _tiny_ranks()
    assert len(tiny.encode("Generate the caption in English with grounding:")) < 12  # merges are used
    path.write_text("not a tiktoken line\n")
    with pytest.raises(ValueError, match="qwen.tiktoken:1"):
        read_ranks(path)


def test_preprocess_is_the_releases_torchvision_transform():
    from torchvision import transforms

    release = transforms.Compose([
        transforms.Resize((56, 56), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize(mean=CLIP_MEAN, std=CLIP_STD),
    ])
    rgba = Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 90, 4), dtype=np.uint8), "RGBA")
    expected = release(rgba.convert("RGB"))
    assert torch.allclose(preprocess([rgba], 56)[0], expected, atol=1e-6)
    array = np.asarray(rgba.convert("RGB"))
    assert torch.equal(preprocess([array], 56)[0], preprocess([rgba], 56)[0])
    with pytest.raises(ValueError, match="uint8"):
        preprocess([array.astype(np.float32)], 56)
