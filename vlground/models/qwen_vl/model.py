"""The Qwen-VL (v1) network: the Qwen-7B language model with the vision tower's 256 features written over
the positions between <img> and </img>, and a preallocated KV cache so the image is encoded once.

Numerics follow the release: RMSNorm in float32, rotary embedding (rotate-half, float32) with dynamic NTK
scaling fixed at prefill from the prompt length, logn query scaling past `seq_length` tokens, untied
lm_head. Positions count real tokens only, so a left-padded batch gives every row the positions (and
the answer) it gets alone."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from vlground.models.qwen_vl.vision import VisionConfig, VisionTower


@dataclass(frozen=True)
class QwenVLConfig:
    """The fields of the release's config.json that shape the network (Qwen-VL 7B values in comments)."""

    vocab_size: int  # 151936
    hidden_size: int  # 4096
    num_layers: int  # 32
    num_heads: int  # 32
    head_dim: int  # kv_channels, 128
    intermediate_size: int  # 22016; each MLP branch is half of it
    layer_norm_epsilon: float  # 1e-6
    rotary_base: float  # 10000
    seq_length: int  # 2048: past it, dynamic NTK and logn attention take effect
    use_dynamic_ntk: bool
    use_logn_attn: bool
    vision: VisionConfig

    @classmethod
    def from_dict(cls, d: dict) -> QwenVLConfig:
        if float(d.get("rotary_pct", 1.0)) != 1.0:
            raise ValueError("rotary_pct other than 1.0 is not supported (no Qwen-VL release uses it)")
        if not d.get("no_bias", True):
            raise ValueError("no_bias=false is not supported (no Qwen-VL release uses it)")
        return cls(
            vocab_size=int(d["vocab_size"]),
            hidden_size=int(d["hidden_size"]),
            num_layers=int(d["num_hidden_layers"]),
            num_heads=int(d["num_attention_heads"]),
            head_dim=int(d.get("kv_channels", d["hidden_size"] // d["num_attention_heads"])),
            intermediate_size=int(d["intermediate_size"]),
            layer_norm_epsilon=float(d.get("layer_norm_epsilon", 1e-6)),
            rotary_base=float(d.get("rotary_emb_base", 10000)),
            seq_length=int(d.get("seq_length", 2048)),
            use_dynamic_ntk=bool(d.get("use_dynamic_ntk", True)),
            use_logn_attn=bool(d.get("use_logn_attn", True)),
            vision=VisionConfig.from_dict(d["visual"]),
        )

    def ntk_alpha(self, prompt_length: int) -> float:
        """Dynamic NTK factor for a prompt of this many tokens: 1 up to `seq_length`, then 2^k - 1."""
        if not self.use_dynamic_ntk:
            return 1.0
        return max(2 ** math.ceil(math.log(prompt_length / self.seq_length, 2) + 1) - 1, 1)


# cuDNN attention builds a plan per new shape, ~1.5 ms of host time per call (it made eager decoding
# host-bound); the memory-efficient kernel takes the padding mask without that cost.
ATTENTION_KERNELS = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]
MASK_ALIGNMENT = 16  # the memory-efficient kernel wants mask rows aligned to 16 elements


class KVCache:
    """Keys and values of every layer, [batch, heads, width, head_dim], zero where nothing is written.

    Every forward attends over the whole width under a mask, so shapes stay fixed from one decode step
    to the next (what a CUDA graph needs). `valid[b, j]` says whether slot j of row b holds a real
    token (False for left padding and unwritten slots). Each row's rotary frequencies are fixed here
    from its prompt length (dynamic NTK), as the release fixes them at prefill."""

    def __init__(self, config: QwenVLConfig, prompt_lengths: Sequence[int], capacity: int, device, dtype: torch.dtype):
        width = -(-capacity // MASK_ALIGNMENT) * MASK_ALIGNMENT
        shape = (len(prompt_lengths), config.num_heads, width, config.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_layers)]
        self.valid = torch.zeros(len(prompt_lengths), width, dtype=torch.bool, device=device)
        self.inv_freq = torch.stack([rotary_inv_freq(config, config.ntk_alpha(n)) for n in prompt_lengths]).to(device)

    @property
    def width(self) -> int:
        return self.valid.shape[1]


def rotary_inv_freq(config: QwenVLConfig, alpha: float) -> torch.Tensor:
    """Rotary inverse frequencies [head_dim / 2], float32, with the base stretched by NTK factor `alpha`."""
    dim = config.head_dim
    base = config.rotary_base * alpha ** (dim / (dim - 2))
    return 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))


def rotary_tables(positions: torch.Tensor, inv_freq: torch.Tensor):
    """cos and sin [batch, 1, tokens, head_dim] in float32 for integer `positions` [batch, tokens]."""
    angles = positions.float()[:, :, None] * inv_freq[:, None, :]
    angles = torch.cat([angles, angles], dim=-1)[:, None]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half rotary embedding, computed in float32 and returned in x's dtype."""
    x32 = x.float()
    half = x32.shape[-1] // 2
    rotated = torch.cat([-x32[..., half:], x32[..., :half]], dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)


class RMSNorm(nn.Module):
    """RMSNorm computed in float32 whatever the input dtype (torch's rms_norm upcasts; the release's
    fused CUDA kernel likewise applies the weight before rounding back)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class Attention(nn.Module):
    def __init__(self, config: QwenVLConfig):
        super().__init__()
        self.config = config
        width = config.num_heads * config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * width)  # [W_q; W_k; W_v] blocks
        self.out = nn.Linear(width, config.hidden_size, bias=False)

    def forward(self, x, layer: int, cache: KVCache, slots, rotary, logn, mask) -> torch.Tensor:
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).view(batch, tokens, 3, self.config.num_heads, -1).permute(2, 0, 3, 1, 4)
        (q, k), v = apply_rotary(qkv[:2], *rotary), qkv[2]
        if logn is not None:
            q = q * logn
        cache.keys[layer].index_copy_(2, slots, k)
        cache.values[layer].index_copy_(2, slots, v)
        attended = F.scaled_dot_product_attention(q, cache.keys[layer], cache.values[layer], attn_mask=mask)
        return self.out(attended.transpose(1, 2).reshape(batch, tokens, -1))


class MLP(nn.Module):
    def __init__(self, config: QwenVLConfig):
        super().__init__()
        inner = config.intermediate_size // 2
        self.w1 = nn.Linear(config.hidden_size, inner, bias=False)
        self.w2 = nn.Linear(config.hidden_size, inner, bias=False)
        self.out = nn.Linear(inner, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.w1(x) * F.silu(self.w2(x)))


class Block(nn.Module):
    def __init__(self, config: QwenVLConfig):
        super().__init__()
        self.norm1 = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.attn = Attention(config)
        self.norm2 = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x, layer, cache, slots, rotary, logn, mask) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), layer, cache, slots, rotary, logn, mask)
        return x + self.mlp(self.norm2(x))


class QwenVL(nn.Module):
    """The whole model. Use `embed` to build input embeddings with images, `forward` to run (and extend
    the cache with) a chunk of tokens, and `logits` on the hidden states you need scores for."""

    def __init__(self, config: QwenVLConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.layer_norm_epsilon)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.vision = VisionTower(config.vision)

    def embed(self, ids: torch.Tensor, pixels: torch.Tensor, image_starts: torch.Tensor) -> torch.Tensor:
        """Token embeddings [batch, tokens, hidden] of `ids`, with the 256 features of `pixels[b]` written
        over the positions right after row b's <img> token at index `image_starts[b]`."""
        embeds = self.embed_tokens(ids)
        features = self.vision(pixels).to(embeds.dtype)
        slots = image_starts[:, None] + 1 + torch.arange(features.shape[1], device=ids.device)
        embeds[torch.arange(ids.shape[0], device=ids.device)[:, None], slots] = features
        return embeds

    def forward(self, embeds: torch.Tensor, valid: torch.Tensor, cache: KVCache, slots: torch.Tensor) -> torch.Tensor:
        """Hidden states [batch, tokens, hidden] of the next chunk of `embeds`, written into the cache at
        `slots` [tokens] (increasing, below the cache width; a tensor, so a decode step can be replayed
        as a CUDA graph). `valid` [batch, tokens] marks real tokens (False for left padding)."""
        cache.valid.index_copy_(1, slots, valid)
        positions = (cache.valid.cumsum(dim=1).index_select(1, slots) - 1).clamp(min=0)  # real tokens before
        rotary = rotary_tables(positions, cache.inv_freq)
        logn = None
        if self.config.use_logn_attn:  # exactly 1 up to seq_length
            scale = torch.log(positions.double() + 1) / math.log(self.config.seq_length)
            logn = scale.clamp(min=1.0).to(embeds.dtype)[:, None, :, None]
        # A row attends to earlier real tokens; a padding row attends to itself only (no empty softmax).
        query_slots = slots[:, None]
        key_slots = torch.arange(cache.width, device=embeds.device)[None, :]
        mask = (key_slots <= query_slots) & (cache.valid[:, None, :] | (key_slots == query_slots))
        x = embeds
        with sdpa_kernel(ATTENTION_KERNELS):
            for layer, block in enumerate(self.blocks):
                x = block(x, layer, cache, slots, rotary, logn, mask[:, None])
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)
