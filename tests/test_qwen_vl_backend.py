"""The native Qwen-VL (v1) runtime on tiny random checkpoints: batching, stopping, lengths, dtypes."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlground.core.families import get_family
from vlground.core.options import GenerationOptions
from vlground.models.base import Request
from vlground.models.qwen_vl.backend import QwenVLBackend
from vlground.models.qwen_vl.model import KVCache
from vlground.models.qwen_vl.vision import preprocess
from vlground.prompts import Prompt, build_prompt
from vlground.testing.qwen_vl import make_tiny_qwen_vl


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_qwen_vl")
    return {"chat": make_tiny_qwen_vl(root / "Qwen-VL-Chat", chat=True), "base": make_tiny_qwen_vl(root / "Qwen-VL", chat=False)}


@pytest.fixture(scope="module")
def chat(folders) -> QwenVLBackend:
    return QwenVLBackend.load(folders["chat"], get_family(folders["chat"]), device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def base(folders) -> QwenVLBackend:
    return QwenVLBackend.load(folders["base"], get_family(folders["base"]), device="cpu", dtype="fp32")


def _images(sizes) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@contextmanager
def forward_lengths(backend: QwenVLBackend):
    """The token count of every model forward (prefill, then decode steps) run inside the block."""
    lengths: list[int] = []
    hook = backend.model.register_forward_pre_hook(lambda _, args: lengths.append(args[0].shape[1]))
    try:
        yield lengths
    finally:
        hook.remove()


def _last_logits(backend: QwenVLBackend, request: Request) -> torch.Tensor:
    encoded = backend.encode_prompt(request)
    ids = torch.tensor([encoded.ids])
    model = backend.model
    with torch.inference_mode():
        cache = KVCache(model.config, [ids.shape[1]], ids.shape[1], "cpu", torch.float32)
        embeds = model.embed(ids, preprocess([request.image], model.config.vision.image_size), torch.tensor([encoded.image_start]))
        return model.logits(model(embeds, torch.ones_like(ids, dtype=torch.bool), cache, torch.arange(ids.shape[1])))[0, -1]


def test_the_folders_are_recognized_as_their_families(folders, chat, base):
    assert (chat.family.name, base.family.name) == ("qwen-vl-chat", "qwen-vl")


def test_a_left_padded_batch_answers_as_one_at_a_time(chat):
    fam = chat.family
    prompts = [
        build_prompt("ground", fam, phrase="the red car"),
        build_prompt("caption", fam),
        build_prompt("ask", fam, question="What is written on the sign above the door?"),
    ]
    requests = [Request(image, prompt) for image, prompt in zip(_images([(60, 40), (30, 100), (64, 64)]), prompts)]
    options = GenerationOptions(max_new_tokens=10, batch_size=3)
    batched = [g.text for g in chat.generate(requests, options)]
    alone = [chat.generate([r], options)[0].text for r in requests]
    assert batched == alone
    assert any(batched)


def test_the_image_reaches_the_answer(base):
    prompt = build_prompt("grounded_caption", base.family)
    first, second = (_last_logits(base, Request(image, prompt)) for image in _images([(50, 50), (50, 50)]))
    assert not torch.allclose(first, second)


def test_max_new_tokens_comes_from_the_prompt_unless_options_set_it(base):
    prompt = build_prompt("ground", base.family, phrase="the dog")
    assert prompt.max_new_tokens == 28
    request = Request(_images([(40, 40)])[0], prompt)
    with forward_lengths(base) as lengths:
        base.generate([request], GenerationOptions(min_new_tokens=28))
    assert lengths == [len(base.encode_prompt(request).ids)] + [1] * 27  # the 28th token needs no forward
    with forward_lengths(base) as lengths:
        base.generate([request], GenerationOptions(max_new_tokens=3, min_new_tokens=3))
    assert len(lengths) == 3


def test_chat_stops_at_im_end_and_min_new_tokens_holds_it_off(chat, monkeypatch):
    scores = torch.zeros(chat.model.config.vocab_size)
    scores[chat.tokenizer.im_end_id], scores[ord("a")] = 10.0, 5.0  # <|im_end|> first, then "a"
    monkeypatch.setattr(chat.model, "logits", lambda hidden: scores.expand(hidden.shape[0], -1))
    request = Request(_images([(40, 30)])[0], build_prompt("caption", chat.family))
    with forward_lengths(chat) as lengths:
        [stopped] = chat.generate([request], GenerationOptions(max_new_tokens=20))
    assert stopped.text == "" and len(lengths) == 1
    with forward_lengths(chat) as lengths:
        [held] = chat.generate([request], GenerationOptions(max_new_tokens=20, min_new_tokens=4))
    assert held.text == "aaaa"
    assert len(lengths) == 5  # prefill + 4 steps, then <|im_end|> ends it


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_runs(folders, dtype):
    backend = QwenVLBackend.load(folders["base"], get_family(folders["base"]), device="cpu", dtype=dtype)
    assert backend.model.lm_head.weight.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    [answer] = backend.generate([Request(_images([(80, 20)])[0], build_prompt("ground", backend.family, phrase="a cat"))],
                                GenerationOptions(max_new_tokens=4, min_new_tokens=4))
    assert isinstance(answer.text, str) and answer.input_size is None


def test_a_raw_prompt_without_an_image_slot_is_an_error(base):
    with pytest.raises(ValueError, match="exactly one <img></img>"):
        base.generate([Request(_images([(10, 10)])[0], Prompt(text="<ref>x</ref><box>", task="ground", chat=False))])


def test_a_scripted_answer_comes_back_as_a_box_on_the_original_image(folders, monkeypatch):
    import vlground

    model = vlground.load_model(folders["base"], device="cpu")
    backend = model.backend
    script = iter(backend.tokenizer.encode("(100,200),(500,800)</box>") + [backend.tokenizer.eod_id])

    def scripted_logits(hidden):
        scores = torch.zeros(hidden.shape[0], backend.model.config.vocab_size)
        scores[:, next(script)] = 1.0
        return scores

    monkeypatch.setattr(backend.model, "logits", scripted_logits)
    result = model.ground(_images([(200, 100)])[0], "the red car")
    assert [d.box for d in result.detections] == [(20.0, 20.0, 100.0, 80.0)]
    assert result.detections[0].label == "the red car"


def test_native_sampling_options_reach_the_sampler(chat):
    request = Request(_images([(40, 40)])[0], build_prompt("caption", chat.family))
    [greedy] = chat.generate([request], GenerationOptions(max_new_tokens=8, min_new_tokens=8))
    [top1] = chat.generate([request], GenerationOptions(max_new_tokens=8, min_new_tokens=8, do_sample=True, top_k=1, seed=1))
    [nucleus] = chat.generate([request], GenerationOptions(max_new_tokens=8, min_new_tokens=8, do_sample=True, top_p=1e-6, seed=1))
    assert top1.text == greedy.text == nucleus.text  # one token kept either way: greedy
    hot = GenerationOptions(max_new_tokens=8, min_new_tokens=8, do_sample=True, temperature=50.0, seed=2)
    first, again = (chat.generate([request], hot)[0].text for _ in range(2))
    assert first == again and first != greedy.text
