"""The native Qwen-VL (v1) reproduces what the ORIGINAL remote code computed on the tiny reference
checkpoint: prompt ids, logits, logsumexp, argmax and 8 cached greedy tokens. The checkpoint is rebuilt
from its recipe (`make_reference_qwen_vl`) and the original's results are read from tests/data/qwen_vl_v1,
so all of this runs on a bare clone; only the prompt-ids test needs the released qwen.tiktoken."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qwen_vl_reference import DATA, IMAGE_PLACEHOLDER, reference_config, reference_facts, released_tiktoken
from vlground.core.families import FAMILIES
from vlground.core.options import GenerationOptions
from vlground.models.base import Request
from vlground.models.qwen_vl.backend import QwenVLBackend
from vlground.models.qwen_vl.checkpoint import load_model
from vlground.models.qwen_vl.model import KVCache
from vlground.models.qwen_vl.tokenizer import SPECIAL_TOKENS, EncodedPrompt, QwenVLTokenizer, read_ranks
from vlground.models.qwen_vl.vision import preprocess, sincos_table_2d
from vlground.prompts import IMAGE_SLOT, Prompt
from vlground.testing.qwen_vl import make_reference_qwen_vl

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference() -> dict:
    return reference_facts()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_reference_qwen_vl(tmp_path_factory.mktemp("qwen_vl_reference"), reference_config())


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_model(checkpoint, "cpu", torch.float32)


@pytest.fixture(scope="module")
def encoded(reference) -> EncodedPrompt:
    """The reference prompt's ids as the original tokenizer gave them, <imgpad> at the image positions."""
    ids = reference["input_ids"].tolist()
    placeholder = ids.index(IMAGE_PLACEHOLDER)
    ids[placeholder : placeholder + 1] = [SPECIAL_TOKENS["<imgpad>"]] * reference["n_image_tokens"]
    return EncodedPrompt(ids, int(reference["image_span"][0]))


@pytest.fixture(scope="module")
def prompt_text(reference) -> str:
    """The reference prompt with its spelled-in file name replaced by the image slot."""
    text = reference["prompt"].replace("<img>image.png</img>", IMAGE_SLOT)
    assert IMAGE_SLOT in text
    return text


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.open(DATA / "image.png")


def test_prompt_ids_match_the_original_tokenizer(reference, prompt_text):
    tokenizer = QwenVLTokenizer(read_ranks(released_tiktoken()))
    encoded = tokenizer.raw_prompt(prompt_text)
    start, end = reference["image_span"].tolist()
    stored = reference["input_ids"].tolist()
    placeholder = stored.index(IMAGE_PLACEHOLDER)
    expected = stored[:placeholder] + [None] * reference["n_image_tokens"] + stored[placeholder + 1 :]
    assert encoded.image_start == start
    assert [None if e is None else g for g, e in zip(encoded.ids, expected)] == expected
    assert len(encoded.ids) == len(expected)
    assert (encoded.ids[start], encoded.ids[end]) == (151857, 151858)


def test_resampler_table_is_the_released_sincos_table(reference):
    """Bit for bit: the sha256 of the table the original checkpoint stores (attn_pool.pos_embed)."""
    released = reference["attn_pool_pos_embed"]
    rows, dim = released["shape"]
    table = sincos_table_2d(dim, int(np.sqrt(rows)))
    assert (table.shape, str(table.dtype)) == ((rows, dim), released["dtype"])
    assert hashlib.sha256(table.tobytes()).hexdigest() == released["sha256"]


def test_logits_match_the_original(model, reference, encoded, image):
    ids = torch.tensor([encoded.ids])
    with torch.inference_mode():
        cache = KVCache(model.config, [ids.shape[1]], ids.shape[1], "cpu", torch.float32)
        pixels = preprocess([image], model.config.vision.image_size)
        embeds = model.embed(ids, pixels, torch.tensor([encoded.image_start]))
        logits = model.logits(model(embeds, torch.ones_like(ids, dtype=torch.bool), cache, torch.arange(ids.shape[1])))[0]
    subset = logits[-16:, torch.from_numpy(reference["vocab_subset"])]
    assert torch.allclose(subset, torch.from_numpy(reference["logits_last16_subset"]), atol=TOLERANCE, rtol=0)
    assert torch.allclose(torch.logsumexp(logits, dim=-1), torch.from_numpy(reference["logsumexp_all"]), atol=TOLERANCE, rtol=0)
    assert logits.argmax(dim=-1).tolist() == reference["argmax_all"].tolist()


def test_cached_greedy_tokens_match_and_the_image_is_encoded_once(checkpoint, model, reference, encoded, prompt_text, image,
                                                                  monkeypatch):
    backend = QwenVLBackend(model, QwenVLTokenizer.from_checkpoint(checkpoint), FAMILIES["qwen-vl"])
    monkeypatch.setattr(backend, "encode_prompt", lambda request: encoded)  # the original tokenizer's ids
    greedy = reference["greedy_8"].tolist()
    vision_calls, chunk_lengths, fed_ids = [], [], []
    hooks = [
        model.vision.register_forward_hook(lambda *_: vision_calls.append(1)),
        model.embed_tokens.register_forward_pre_hook(lambda _, args: fed_ids.append(args[0][0].tolist())),
        model.register_forward_pre_hook(lambda _, args: chunk_lengths.append(args[0].shape[1])),
    ]
    try:
        [answer] = backend.generate(
            [Request(image, Prompt(text=prompt_text, task="grounded_caption", chat=False))],
            GenerationOptions(max_new_tokens=8),
        )
    finally:
        for hook in hooks:
            hook.remove()
    assert [ids[0] for ids in fed_ids[1:]] == greedy[:7]  # each greedy token fed back alone
    assert answer.text == backend.tokenizer.decode(greedy)
    assert answer.input_size is None
    assert len(vision_calls) == 1
    prompt_length = len(reference["input_ids"]) - 1 + reference["n_image_tokens"]
    assert chunk_lengths == [prompt_length] + [1] * 7  # prefill, then one token per step
