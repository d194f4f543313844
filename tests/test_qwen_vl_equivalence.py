"""The native Qwen-VL (v1) reproduces what the ORIGINAL remote code computed on the shared tiny reference
checkpoint (../shared/reference/qwen_vl_v1): prompt ids, logits, logsumexp, argmax and 8 cached greedy
tokens."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlground.models.base import GenerationOptions, Request
from vlground.models.qwen_vl.backend import QwenVLBackend
from vlground.models.qwen_vl.checkpoint import load_model
from vlground.models.qwen_vl.model import KVCache
from vlground.models.qwen_vl.tokenizer import QwenVLTokenizer
from vlground.models.qwen_vl.vision import preprocess, sincos_table_2d
from vlground.families import FAMILIES
from vlground.prompts import IMAGE_SLOT, Prompt

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "qwen_vl_v1"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference() -> dict:
    assert (REFERENCE / "reference.json").is_file(), f"the shared reference is missing at {REFERENCE.resolve()}"
    return json.loads((REFERENCE / "reference.json").read_text())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, reference) -> Path:
    folder = tmp_path_factory.mktemp("qwen_vl_reference")
    subprocess.run([sys.executable, str(REFERENCE / "make_checkpoint.py"), str(folder)], check=True, capture_output=True)
    shutil.copy(REFERENCE / "qwen.tiktoken", folder / "qwen.tiktoken")
    return folder


@pytest.fixture(scope="module")
def tokenizer(checkpoint) -> QwenVLTokenizer:
    return QwenVLTokenizer.from_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_model(checkpoint, "cpu", torch.float32)


@pytest.fixture(scope="module")
def prompt_text(reference) -> str:
    """The reference prompt with its spelled-in file name replaced by the image slot."""
    text = reference["prompt"].replace("<img>image.png</img>", IMAGE_SLOT)
    assert IMAGE_SLOT in text
    return text


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.open(REFERENCE / "image.png")


def test_prompt_ids_match_the_original_tokenizer(tokenizer, reference, prompt_text):
    encoded = tokenizer.raw_prompt(prompt_text)
    start, end = reference["image_span"]
    placeholder = reference["input_ids"].index("IMAGE")
    expected = reference["input_ids"][:placeholder] + [None] * reference["n_image_tokens"] + reference["input_ids"][placeholder + 1 :]
    assert encoded.image_start == start
    assert [None if e is None else g for g, e in zip(encoded.ids, expected)] == expected
    assert len(encoded.ids) == len(expected)
    assert (encoded.ids[start], encoded.ids[end]) == (151857, 151858)


def test_resampler_table_is_the_released_sincos_table():
    stored = np.load(REFERENCE / "attn_pool_pos_embed.npy")
    np.testing.assert_array_equal(sincos_table_2d(stored.shape[1], int(np.sqrt(stored.shape[0]))), stored)


def test_logits_match_the_original(model, tokenizer, reference, prompt_text, image):
    encoded = tokenizer.raw_prompt(prompt_text)
    ids = torch.tensor([encoded.ids])
    with torch.inference_mode():
        cache = KVCache(model.config, [ids.shape[1]], ids.shape[1], "cpu", torch.float32)
        pixels = preprocess([image], model.config.vision.image_size)
        embeds = model.embed(ids, pixels, torch.tensor([encoded.image_start]))
        logits = model.logits(model(embeds, torch.ones_like(ids, dtype=torch.bool), cache, torch.arange(ids.shape[1])))[0]
    subset = logits[-16:, reference["vocab_subset"]]
    assert torch.allclose(subset, torch.tensor(reference["logits_last16_subset"]), atol=TOLERANCE, rtol=0)
    assert torch.allclose(torch.logsumexp(logits, dim=-1), torch.tensor(reference["logsumexp_all"]), atol=TOLERANCE, rtol=0)
    assert logits.argmax(dim=-1).tolist() == reference["argmax_all"]


def test_cached_greedy_tokens_match_and_the_image_is_encoded_once(checkpoint, model, tokenizer, reference, prompt_text, image):
    backend = QwenVLBackend(model, tokenizer, FAMILIES["qwen-vl"])
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
    assert [ids[0] for ids in fed_ids[1:]] == reference["greedy_8"][:7]  # each greedy token fed back alone
    assert answer.text == tokenizer.decode(reference["greedy_8"])
    assert answer.input_size is None
    assert len(vision_calls) == 1
    prompt_length = len(reference["input_ids"]) - 1 + reference["n_image_tokens"]
    assert chunk_lengths == [prompt_length] + [1] * 7  # prefill, then one token per step
