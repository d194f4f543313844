"""Numerics of the native Qwen-VL (v1): dynamic NTK and logn attention start past `seq_length` tokens,
per row of a batch; the KV cache gives what a full pass gives; RMSNorm rounds once from float32; a
left-padded batch scores every step as each row alone; half precision stays close to float32."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlground.core.families import get_family
from vlground.core.options import GenerationOptions
from vlground.models.base import Request
from vlground.models.qwen_vl.backend import QwenVLBackend
from vlground.models.qwen_vl.model import KVCache, QwenVL, QwenVLConfig, RMSNorm
from vlground.prompts import build_prompt
from vlground.testing.qwen_vl import TINY_CONFIG, make_tiny_qwen_vl


@pytest.fixture(scope="module")
def model() -> QwenVL:
    torch.manual_seed(0)
    model = QwenVL(QwenVLConfig.from_dict(TINY_CONFIG)).eval()
    with torch.no_grad():
        model.embed_tokens.weight.normal_(0, 1.0)
    return model


def _last_hidden(model: QwenVL, embeds: torch.Tensor, valid: torch.Tensor | None = None, chunks=None) -> torch.Tensor:
    """Hidden states of the whole sequence, fed in `chunks` (token counts) through one cache."""
    batch, tokens, _ = embeds.shape
    valid = torch.ones(batch, tokens, dtype=torch.bool) if valid is None else valid
    cache = KVCache(model.config, valid.sum(dim=1).tolist(), tokens, "cpu", torch.float32)
    outputs, start = [], 0
    with torch.inference_mode():
        for size in chunks or [tokens]:
            slots = torch.arange(start, start + size)
            outputs.append(model(embeds[:, start : start + size], valid[:, start : start + size], cache, slots))
            start += size
    return torch.cat(outputs, dim=1)


def test_ntk_alpha_follows_the_release_formula():
    config = QwenVLConfig.from_dict(TINY_CONFIG)
    assert [config.ntk_alpha(n) for n in (1, 271, 2048, 2049, 4096, 4097, 8193)] == [1, 1, 1, 3, 3, 7, 15]
    assert dataclasses.replace(config, use_dynamic_ntk=False).ntk_alpha(5000) == 1


@pytest.mark.parametrize("length,changes", [(2048, False), (2100, True)])
def test_logn_scaling_starts_past_seq_length(model, length, changes):
    embeds = torch.randn(1, length, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    plain = QwenVL(dataclasses.replace(model.config, use_logn_attn=False)).eval()
    plain.load_state_dict(model.state_dict())
    with_logn, without = _last_hidden(model, embeds)[0, -1], _last_hidden(plain, embeds)[0, -1]
    assert torch.allclose(with_logn, without, atol=1e-6) is not changes


def test_cached_chunks_equal_one_pass_past_seq_length(model):
    embeds = torch.randn(1, 2060, model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    whole = _last_hidden(model, embeds)
    chunked = _last_hidden(model, embeds, chunks=[2040, 14, 1, 1, 1, 1, 1, 1])
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_a_padded_long_and_short_batch_gives_each_row_its_own_ntk_and_positions(model):
    hidden = model.config.hidden_size
    long_row = torch.randn(2100, hidden, generator=torch.Generator().manual_seed(3))
    short_row = torch.randn(40, hidden, generator=torch.Generator().manual_seed(4))
    batch = torch.zeros(2, 2100, hidden)
    batch[0], batch[1, -40:] = long_row, short_row
    valid = torch.zeros(2, 2100, dtype=torch.bool)
    valid[0], valid[1, -40:] = True, True
    together = _last_hidden(model, batch, valid)
    assert torch.allclose(together[0], _last_hidden(model, long_row[None])[0], atol=1e-5)
    assert torch.allclose(together[1, -40:], _last_hidden(model, short_row[None])[0], atol=1e-5)


def test_dynamic_ntk_stretches_the_rotary_base_by_alpha_to_the_dim_over_dim_minus_2():
    """Past a small seq_length (32), a 40-token prompt (alpha 3) must run exactly as a model without
    dynamic NTK whose base is 10000 * 3^(d/(d-2)); under seq_length nothing changes."""
    config = QwenVLConfig.from_dict({**TINY_CONFIG, "seq_length": 32})
    torch.manual_seed(5)
    dynamic = QwenVL(config).eval()
    dim = config.head_dim
    stretched = QwenVL(dataclasses.replace(config, use_dynamic_ntk=False, rotary_base=10000 * 3 ** (dim / (dim - 2)))).eval()
    plain = QwenVL(dataclasses.replace(config, use_dynamic_ntk=False)).eval()
    for other in (stretched, plain):
        other.load_state_dict(dynamic.state_dict())
    embeds = torch.randn(1, 40, config.hidden_size, generator=torch.Generator().manual_seed(6))
    assert config.ntk_alpha(40) == 3
    assert torch.allclose(_last_hidden(dynamic, embeds), _last_hidden(stretched, embeds), atol=1e-5)
    assert not torch.allclose(_last_hidden(dynamic, embeds), _last_hidden(plain, embeds), atol=1e-3)
    short = embeds[:, :32]
    assert torch.allclose(_last_hidden(dynamic, short), _last_hidden(plain, short), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rms_norm_computes_in_float32_and_rounds_once(dtype):
    """In half precision the output is the float32 result (weight included) rounded once: normalizing in
    the input dtype, or applying the weight after rounding back, changes thousands of these values."""
    norm = RMSNorm(128, 1e-6)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(128, generator=generator))
    norm = norm.to(dtype)
    x = (3 * torch.randn(64, 128, generator=generator)).to(dtype)
    x32, w32 = x.float(), norm.weight.float()
    expected = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6) * w32).to(dtype)
    with torch.no_grad():
        assert torch.equal(norm(x), expected)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return make_tiny_qwen_vl(tmp_path_factory.mktemp("tiny") / "Qwen-VL-Chat")


def _backend(folder: Path, dtype: str) -> QwenVLBackend:
    return QwenVLBackend.load(folder, get_family(folder), device="cpu", dtype=dtype)


def _requests(family) -> list[Request]:
    """Three prompts of different lengths (so a batch pads them by different amounts) on three images."""
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in [(60, 40), (30, 100), (64, 64)]]
    prompts = [
        build_prompt("ground", family, phrase="the red car"),
        build_prompt("caption", family),
        build_prompt("ask", family, question="What is written on the sign above the door?"),
    ]
    return [Request(image, prompt) for image, prompt in zip(images, prompts)]


def _step_scores(backend: QwenVLBackend, requests: list[Request], steps: int, batch_size: int) -> list[torch.Tensor]:
    """The float32 scores over the vocabulary at every generated position [steps, vocab], per request."""
    seen: list[torch.Tensor] = []
    original = backend.model.logits
    backend.model.logits = lambda hidden: seen.append(original(hidden).float()) or seen[-1]
    try:
        backend.generate(requests, GenerationOptions(max_new_tokens=steps, min_new_tokens=steps, batch_size=batch_size))
    finally:
        del backend.model.logits
    rows = [s.reshape(-1, s.shape[-1]) for s in seen]  # one [batch, vocab] per step
    return [torch.stack([r[i] for r in rows]) for i in range(len(requests))]


def test_a_left_padded_batch_scores_every_step_as_each_row_alone(tiny_folder):
    """Whole score vectors, not greedy tokens: random tiny weights repeat one token, which would hide
    positions counted wrongly at prefill or decode; the scores at each of 6 steps do not."""
    backend = _backend(tiny_folder, "fp32")
    requests = _requests(backend.family)
    lengths = {len(backend.encode_prompt(r).ids) for r in requests}
    assert len(lengths) == 3  # three different paddings
    together = _step_scores(backend, requests, 6, batch_size=3)  # rows in the order the batch ran them
    # a batch runs its rows ordered by prompt length, not by request: each request's scores alone must
    # be exactly one of the batch's rows, and each row one request's
    matched = []
    for request in requests:
        [alone] = _step_scores(backend, [request], 6, batch_size=1)
        assert all(batched.shape == alone.shape == (6, backend.model.config.vocab_size) for batched in together)
        rows = [i for i, batched in enumerate(together) if torch.allclose(batched, alone, atol=1e-4)]
        assert len(rows) == 1, min((batched - alone).abs().max() for batched in together)
        matched += rows
    assert sorted(matched) == [0, 1, 2]
    assert not torch.allclose(together[0][0], together[0][1], atol=1e-2)  # the steps differ from each other


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_scores_stay_close_to_float32_and_give_its_answer(tiny_folder, dtype):
    full, half = _backend(tiny_folder, "fp32"), _backend(tiny_folder, dtype)
    assert half.model.lm_head.weight.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    requests = _requests(full.family)
    expected = _step_scores(full, requests, 4, batch_size=3)
    got = _step_scores(half, requests, 4, batch_size=3)
    for e, g in zip(expected, got):  # within 5% of the largest score (bf16 rounding gives about 2%)
        assert (g - e).abs().max().item() < 0.05 * e.abs().max().item(), ((g - e).abs().max().item(), e.abs().max().item())
    options = GenerationOptions(max_new_tokens=4, min_new_tokens=4)
    assert [a.text for a in half.generate(requests, options)] == [a.text for a in full.generate(requests, options)]
