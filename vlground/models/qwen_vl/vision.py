"""The Qwen-VL (v1) vision tower: preprocessing, a pre-LN ViT and the 256-query resampler.

Every image is squashed (aspect ratio NOT kept) to `image_size` x `image_size` with PIL bicubic and
normalized with CLIP's mean and std, exactly as the release does. The tower always returns 256 features
of the language model's width per image, whatever the image size, so model coordinates are on
[0, 1000) of the original image in both axes."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
LAYER_NORM_EPS = 1e-6
RESAMPLER_HEAD_DIM = 128  # the release gives the resampler output_dim // 128 heads


@dataclass(frozen=True)
class VisionConfig:
    """The `visual` block of the release's config.json (Qwen-VL 7B: 448, 14, 1664, 48, 16, 4.9231, 4096)."""

    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    mlp_ratio: float
    output_dim: int
    image_start_id: int = 151857
    n_queries: int = 256

    @classmethod
    def from_dict(cls, d: dict) -> VisionConfig:
        return cls(
            image_size=int(d["image_size"]),
            patch_size=int(d["patch_size"]),
            width=int(d["width"]),
            layers=int(d["layers"]),
            heads=int(d["heads"]),
            mlp_ratio=float(d["mlp_ratio"]),
            output_dim=int(d["output_dim"]),
            image_start_id=int(d.get("image_start_id", 151857)),
            n_queries=int(d.get("n_queries", 256)),
        )

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)


def to_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    """A PIL RGB image from a PIL image of any mode or an HxW / HxWxC uint8 array."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"image arrays must be uint8 (got {image.dtype}); scale to 0..255 first")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    return image.convert("RGB")


def preprocess(images: Sequence[Image.Image | np.ndarray], image_size: int) -> torch.Tensor:
    """Pixel tensor [batch, 3, image_size, image_size], float32: bicubic squash, then CLIP normalization."""
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)
    std = np.asarray(CLIP_STD, dtype=np.float32)
    arrays = []
    for image in images:
        squashed = to_rgb(image).resize((image_size, image_size), Image.Resampling.BICUBIC)
        pixels = np.asarray(squashed, dtype=np.float32) / 255.0
        arrays.append(((pixels - mean) / std).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays))


def sincos_table_2d(dim: int, grid: int) -> np.ndarray:
    """The resampler's fixed 2D sine-cosine table [grid*grid, dim], rows in raster order: the first half
    of each row encodes the column (x), the second half the row (y), each as sines then cosines."""
    if dim % 4:
        raise ValueError("the 2D sin-cos table needs a width divisible by 4")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float32) / (dim / 4))
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32), indexing="ij")

    def encode(coords: np.ndarray) -> np.ndarray:
        angles = np.outer(coords.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([encode(xs), encode(ys)], axis=1).astype(np.float32)


def resize_table(table: torch.Tensor, tokens: int) -> torch.Tensor:
    """A square grid of positional rows [n*n, dim] resized bicubically (in float32) to `tokens` rows."""
    source, target = math.isqrt(table.shape[0]), math.isqrt(tokens)
    if source == target:
        return table
    grid = table.float().reshape(1, source, source, -1).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(target, target), mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1).reshape(target * target, -1).to(table.dtype)


class VisionAttention(nn.Module):
    """Self-attention whose fused projection is laid out per head as [q_h | k_h | v_h]."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(x).view(batch, length, self.heads, 3, width // self.heads).permute(3, 0, 2, 1, 4)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.out(attended.transpose(1, 2).reshape(batch, length, width))


class VisionBlock(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width, eps=LAYER_NORM_EPS)
        self.attn = VisionAttention(config.width, config.heads)
        self.norm2 = nn.LayerNorm(config.width, eps=LAYER_NORM_EPS)
        self.fc = nn.Linear(config.width, config.mlp_width)
        self.proj = nn.Linear(config.mlp_width, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.proj(F.gelu(self.fc(self.norm2(x))))


class Resampler(nn.Module):
    """One cross-attention layer: `n_queries` learned queries read the ViT patches. The fixed sin-cos
    table is added to the queries as stored and to the keys resized to the patch grid."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        dim = config.output_dim
        self.heads = dim // RESAMPLER_HEAD_DIM
        self.query = nn.Parameter(torch.zeros(config.n_queries, dim))
        self.pos_table = nn.Parameter(torch.zeros(config.n_queries, dim), requires_grad=False)
        self.kv_proj = nn.Linear(config.width, dim, bias=False)
        self.query_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.kv_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.in_proj = nn.Linear(dim, 3 * dim)  # [W_q; W_k; W_v] blocks, as torch's MultiheadAttention
        self.out_proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        batch, dim = patches.shape[0], self.query.shape[1]
        kv = self.kv_norm(self.kv_proj(patches))
        queries = (self.query_norm(self.query) + self.pos_table).expand(batch, -1, -1)
        keys = kv + resize_table(self.pos_table, patches.shape[1])
        w_q, w_k, w_v = self.in_proj.weight.chunk(3)
        b_q, b_k, b_v = self.in_proj.bias.chunk(3)
        attended = F.scaled_dot_product_attention(
            self._heads(F.linear(queries, w_q, b_q)),
            self._heads(F.linear(keys, w_k, b_k)),
            self._heads(F.linear(kv, w_v, b_v)),
        )
        return self.out_proj(attended.transpose(1, 2).reshape(batch, -1, dim))


class VisionTower(nn.Module):
    """Pixels [batch, 3, image_size, image_size] -> image features [batch, n_queries, output_dim]."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.patch_embed = nn.Conv2d(3, config.width, config.patch_size, stride=config.patch_size, bias=False)
        self.pos_embed = nn.Parameter(torch.zeros(256, config.width))  # a 16x16 grid, resized to the patch grid
        self.norm_pre = nn.LayerNorm(config.width, eps=LAYER_NORM_EPS)
        self.blocks = nn.ModuleList(VisionBlock(config) for _ in range(config.layers))
        self.resampler = Resampler(config)
        self.norm_post = nn.LayerNorm(config.output_dim, eps=LAYER_NORM_EPS)
        self.proj = nn.Parameter(torch.zeros(config.output_dim, config.output_dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels.to(self.proj.dtype)).flatten(2).transpose(1, 2)
        x = self.norm_pre(x + resize_table(self.pos_embed, x.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.norm_post(self.resampler(x)) @ self.proj
