"""Reading a Qwen-VL (v1) release folder: its config.json and its weights by their ORIGINAL key names
(`transformer.h.0.attn.c_attn.weight`, ...), through one explicit map to the native module names.

Weights may be `model.safetensors`, `pytorch_model.bin`, or shards of either with their index json.
Shards are read one at a time and cast straight to the target device and dtype, so peak host memory
is about one shard. A missing or unexpected key is an error naming the keys; GPTQ/Int4 checkpoints
(a `quantization_config`) are refused."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from vlground.models.qwen_vl.model import QwenVL, QwenVLConfig

# Constant buffers that some exports of the original code carry (rotary frequencies, causal masks);
# the native model recomputes them, so they are skipped rather than reported as unexpected.
IGNORED_KEYS = re.compile(r".*\.(rotary_emb\.inv_freq|attn\.bias|attn\.masked_bias|logn_tensor)$")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")


class CheckpointError(ValueError):
    """The folder is not a loadable Qwen-VL (v1) checkpoint; the message says why and what to do."""


def read_config(folder: Path) -> QwenVLConfig:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json; point --model at a Qwen-VL checkpoint folder")
    raw = json.loads(path.read_text())
    if "quantization_config" in raw:
        method = raw["quantization_config"].get("quant_method", "unknown")
        raise CheckpointError(
            f"{folder} is a quantized checkpoint ({method}, e.g. Qwen-VL-Chat-Int4); vlground's native Qwen-VL "
            "runs the full-precision releases only: use Qwen/Qwen-VL-Chat or Qwen/Qwen-VL"
        )
    if "visual" not in raw:
        raise CheckpointError(f"{path} has no `visual` block: it is a text-only Qwen model, not Qwen-VL")
    try:
        return QwenVLConfig.from_dict(raw)
    except KeyError as error:
        raise CheckpointError(f"{path} lacks the field {error.args[0]!r} of a Qwen-VL config") from error


def key_map(config: QwenVLConfig) -> dict[str, str]:
    """Original checkpoint key -> native parameter name, for every weight the model needs."""
    names = {
        "transformer.wte.weight": "embed_tokens.weight",
        "transformer.ln_f.weight": "norm.weight",
        "lm_head.weight": "lm_head.weight",
    }
    for i in range(config.num_layers):
        for original, native in [
            ("ln_1.weight", "norm1.weight"),
            ("attn.c_attn.weight", "attn.qkv.weight"),
            ("attn.c_attn.bias", "attn.qkv.bias"),
            ("attn.c_proj.weight", "attn.out.weight"),
            ("ln_2.weight", "norm2.weight"),
            ("mlp.w1.weight", "mlp.w1.weight"),
            ("mlp.w2.weight", "mlp.w2.weight"),
            ("mlp.c_proj.weight", "mlp.out.weight"),
        ]:
            names[f"transformer.h.{i}.{original}"] = f"blocks.{i}.{native}"
    visual = {
        "conv1.weight": "patch_embed.weight",
        "positional_embedding": "pos_embed",
        "ln_pre.weight": "norm_pre.weight",
        "ln_pre.bias": "norm_pre.bias",
        "attn_pool.query": "resampler.query",
        "attn_pool.pos_embed": "resampler.pos_table",
        "attn_pool.kv_proj.weight": "resampler.kv_proj.weight",
        "attn_pool.ln_q.weight": "resampler.query_norm.weight",
        "attn_pool.ln_q.bias": "resampler.query_norm.bias",
        "attn_pool.ln_kv.weight": "resampler.kv_norm.weight",
        "attn_pool.ln_kv.bias": "resampler.kv_norm.bias",
        "attn_pool.attn.in_proj_weight": "resampler.in_proj.weight",
        "attn_pool.attn.in_proj_bias": "resampler.in_proj.bias",
        "attn_pool.attn.out_proj.weight": "resampler.out_proj.weight",
        "attn_pool.attn.out_proj.bias": "resampler.out_proj.bias",
        "ln_post.weight": "norm_post.weight",
        "ln_post.bias": "norm_post.bias",
        "proj": "proj",
    }
    for i in range(config.vision.layers):
        for original, native in [
            ("ln_1", "norm1"), ("ln_2", "norm2"), ("attn.in_proj", "attn.qkv"), ("attn.out_proj", "attn.out"),
            ("mlp.c_fc", "fc"), ("mlp.c_proj", "proj"),
        ]:
            for leaf in ("weight", "bias"):
                visual[f"transformer.resblocks.{i}.{original}.{leaf}"] = f"blocks.{i}.{native}.{leaf}"
    names.update({f"transformer.visual.{k}": f"vision.{v}" for k, v in visual.items()})
    return names


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder: the shards an index names, or the single file."""
    folder = Path(folder)
    for index_name in INDEX_FILES:
        index = folder / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing:
                raise CheckpointError(f"{index} names shards that are not in the folder: {missing}; download them again")
            return [folder / s for s in shards]
    for name in SINGLE_FILES:
        if (folder / name).is_file():
            return [folder / name]
    raise CheckpointError(
        f"{folder} holds no weights (looked for {', '.join(INDEX_FILES + SINGLE_FILES)}); download the checkpoint again"
    )


def read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of one weight file on the CPU (memory-mapped where the format allows)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise CheckpointError(f"cannot read {path} as a PyTorch weight file ({error}); download it again") from error


def _describe(keys: set[str], limit: int = 8) -> str:
    shown = sorted(keys)[:limit]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_model(folder: Path, device: str | torch.device, dtype: torch.dtype) -> QwenVL:
    """The model of `folder` with its weights on `device` in `dtype`, in eval mode."""
    config = read_config(folder)
    names = key_map(config)
    with torch.device("meta"):
        model = QwenVL(config)
    expected = dict(model.state_dict())
    seen: set[str] = set()
    unexpected: set[str] = set()
    for path in weight_files(folder):
        tensors = read_weight_file(path)
        state = {}
        for key, tensor in tensors.items():
            if key not in names:
                if not IGNORED_KEYS.fullmatch(key):
                    unexpected.add(key)
                continue
            native = names[key]
            if tuple(tensor.shape) != tuple(expected[native].shape):
                raise CheckpointError(
                    f"{path.name}: {key} has shape {tuple(tensor.shape)}, config.json implies {tuple(expected[native].shape)}"
                )
            state[native] = tensor.to(device=device, dtype=dtype)
            seen.add(key)
        if not unexpected:
            model.load_state_dict(state, strict=False, assign=True)
        del tensors, state
    missing = set(names) - seen
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)} weights: {_describe(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected weights: {_describe(unexpected)}")
        raise CheckpointError(
            f"{folder} does not match a Qwen-VL (v1) model of its config.json ({'; '.join(problems)}); "
            "check the download is complete and that this is Qwen/Qwen-VL or Qwen/Qwen-VL-Chat"
        )
    model.vision.resampler.pos_table.requires_grad_(False)
    return model.eval()
