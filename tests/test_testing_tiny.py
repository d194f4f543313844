"""The tiny offline checkpoints: real architecture, real processor semantics, loadable without network."""
import sys
import types

import pytest
from PIL import Image

from vlground.core.families import UnknownFamilyError, get_family
from vlground.core.geometry import model_input_size
from vlground.testing import make_tiny_model
from vlground.testing.hf import SPECIAL_TOKENS, THINK_TOKENS, TINY_FAMILIES

# (image size, input size the released checkpoints' processors produce), width x height
RESIZES = {
    "qwen2-vl": [((1024, 1024), (1036, 1036)), ((870, 1398), (868, 1400))],
    "qwen2.5-vl": [((1024, 1024), (1036, 1036)), ((1014, 1532), (1008, 1540))],
    "qwen3-vl": [((1024, 1024), (1024, 1024)), ((120, 90), (320, 224))],  # the second is raised to min_pixels
}
# Qwen3-VL MoE, Qwen3.5 (dense and MoE) and Qwen4-Exp: the same processor (patch 16, merge 2) and pixel bounds
RESIZES.update({name: RESIZES["qwen3-vl"] for name in ("qwen3-vl-moe", "qwen3.5", "qwen3.5-moe", "qwen4-exp")})


@pytest.fixture(scope="module")
def checkpoints(tiny_checkpoint):
    return {name: tiny_checkpoint(name) for name in TINY_FAMILIES}


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_tiny_checkpoint_loads_offline_as_its_family(checkpoints, name, monkeypatch):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = checkpoints[name]
    family = get_family(name)
    assert get_family(path) is family  # config.json's model_type names the family
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
    assert model.config.model_type in family.model_types
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    image_processor = processor.image_processor
    assert (image_processor.patch_size, image_processor.merge_size) == (family.patch_size, family.merge_size)
    assert (image_processor.size["shortest_edge"], image_processor.size["longest_edge"]) == (family.min_pixels, family.max_pixels)
    tokenizer = processor.tokenizer
    for token in SPECIAL_TOKENS:  # each special token is one id, and the config points at the right ones
        assert tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(token)) == token
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_tiny_processor_resizes_like_the_released_checkpoints(checkpoints, name):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(checkpoints[name])
    family = get_family(name)
    images = [Image.new("RGB", size) for size, _ in RESIZES[name]]
    grids = processor.image_processor(images=images, return_tensors="pt")["image_grid_thw"].tolist()
    seen = [(w * family.patch_size, h * family.patch_size) for _, h, w in grids]
    assert seen == [expected for _, expected in RESIZES[name]]
    assert seen == [model_input_size(family, image.size) for image in images]


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_tiny_chat_template_has_the_released_shape(checkpoints, name):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(checkpoints[name])
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # Qwen3.5 and Qwen4-Exp open the reasoning in the prompt, as the released template does
    opening = "<think>\n" if get_family(name).thinking == "default" else ""
    assert text == (
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe this image.<|im_end|>\n"
        "<|im_start|>assistant\n" + opening
    )


@pytest.mark.parametrize(("name", "chat"), [("qwen-vl", False), ("qwen-vl-chat", True)])
def test_tiny_qwen_vl_goes_to_the_native_builder(monkeypatch, tmp_path, name, chat):
    calls = []
    fake = types.ModuleType("vlground.testing.qwen_vl")
    fake.make_tiny_qwen_vl = lambda path, chat: calls.append((path, chat)) or path
    monkeypatch.setitem(sys.modules, "vlground.testing.qwen_vl", fake)
    assert make_tiny_model(name, tmp_path) == tmp_path
    assert calls == [(tmp_path, chat)]


@pytest.mark.parametrize("thinking, off, on", [
    ("never", "", ""),
    ("default", "<think>\n\n</think>\n\n", "<think>\n"),  # Qwen3.5: the switch is honoured
    ("always", "<think>\n", "<think>\n"),  # a Thinking checkpoint: no switch
])
def test_tiny_thinking_templates_open_reasoning_as_released(tmp_path, thinking, off, on):
    from transformers import AutoProcessor

    from vlground.models.thinking import template_thinking

    processor = AutoProcessor.from_pretrained(make_tiny_model("qwen3-vl", tmp_path, thinking=thinking))
    messages = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    for switch, opening in ((False, off), (True, on)):
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, enable_thinking=switch)
        assert text.endswith("<|im_start|>assistant\n" + opening)
    assert template_thinking(processor) == thinking
    tokenizer = processor.tokenizer
    assert [len(tokenizer.encode(t, add_special_tokens=False)) for t in THINK_TOKENS] == [1, 1]


def test_tiny_unknown_family_is_refused(tmp_path):
    with pytest.raises(UnknownFamilyError):
        make_tiny_model("llava", tmp_path)
    assert not any(tmp_path.iterdir())
