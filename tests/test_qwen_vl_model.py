"""Long-context behaviour of the native Qwen-VL (v1) LLM: dynamic NTK and logn attention start past
`seq_length` (2048) tokens, per row of a batch, and the KV cache gives what a full pass gives."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from vlground.models.qwen_vl.model import KVCache, QwenVL, QwenVLConfig
from vlground.testing.qwen_vl import TINY_CONFIG


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
