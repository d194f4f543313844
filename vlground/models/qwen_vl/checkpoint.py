"""Reading a Qwen-VL (v1) release folder: its config.json and its weights by their ORIGINAL key names
(`transformer.h.0.attn.c_attn.weight`, ...), through one explicit map to the native module names.

Weights may be `model.safetensors`, `pytorch_model.bin`, or shards of either with their index json.
Shards are read one at a time and cast straight to the target device and dtype, so peak host memory
is about one shard. A missing or unexpected key is an error naming the keys; GPTQ/Int4 checkpoints
(a `quantization_config`) are refused."""
from __future__ import annotations

import json
import pickle
import re
from contextlib import contextmanager
from pathlib import Path

import torch

from vlground.models.qwen_vl.model import QwenVL, QwenVLConfig

# Constant buffers that some exports of the original code carry (rotary frequencies, causal masks);
# the native model recomputes them, so they are skipped rather than reported as unexpected.
IGNORED_KEYS = re.compile(r".*\.(rotary_emb\.inv_freq|attn\.bias|attn\.masked_bias|logn_tensor)$")
LLM_LAYER = re.compile(r"transformer\.h\.(\d+)\.")
VISION_LAYER = re.compile(r"transformer\.visual\.transformer\.resblocks\.(\d+)\.")
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
    """Tensors of one weight file on the CPU (memory-mapped where the format allows). A pickle holding
    anything but tensors is refused."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        with _safetensors_errors(path):
            return load_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors{what}, which could run code when "
            "unpickled; use a safetensors or plain tensor checkpoint from a source you trust"
        ) from error
    except Exception as error:
        raise CheckpointError(f"cannot read {path} as a PyTorch weight file ({error}); download it again") from error


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor in one weight file, from its header (safetensors) or its memory-mapped
    pickle (PyTorch): no tensor data is read."""
    if path.suffix != ".safetensors":
        return {k: tuple(t.shape) for k, t in read_weight_file(path).items()}
    from safetensors import safe_open

    with _safetensors_errors(path), safe_open(path, framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


@contextmanager
def _safetensors_errors(path: Path):
    """A file that is not valid safetensors (truncated, a bad header) becomes a CheckpointError."""
    from safetensors import SafetensorError

    try:
        yield
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path} as a safetensors file ({error}); download it again") from error


def _describe(keys: set[str], limit: int = 8) -> str:
    shown = sorted(keys)[:limit]
    return ", ".join(shown) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _layer_count(keys: set[str], pattern: re.Pattern) -> int:
    return len({m.group(1) for k in keys if (m := pattern.match(k))})


def check_against_weights(folder: Path, config: QwenVLConfig, shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse a config.json that does not describe these weights, before anything is built: layer
    counts first (a config asking for millions of layers must not even list their names), then every
    weight's shape, then missing and unexpected weights."""
    for what, asked, pattern in [
        ("num_hidden_layers", config.num_layers, LLM_LAYER),
        ("visual.layers", config.vision.layers, VISION_LAYER),
    ]:
        held = _layer_count(set(shapes), pattern)
        if asked > held:  # more layers in the weights than asked for are reported as unexpected below
            raise CheckpointError(
                f"{folder}/config.json says {what}={asked} but the weights hold {held} such layers; "
                "the config does not belong to these weights: download the checkpoint again"
            )
    names = key_map(config)
    with torch.device("meta"):
        implied = {k: tuple(v.shape) for k, v in QwenVL(config).state_dict().items()}
    wrong = [
        f"{key} has shape {shape}, config.json implies {implied[names[key]]}"
        for key, shape in sorted(shapes.items()) if key in names and shape != implied[names[key]]
    ]
    if wrong:
        raise CheckpointError(
            f"{folder}: config.json does not match the weights' shapes ({'; '.join(wrong[:4])}"
            f"{f' and {len(wrong) - 4} more' if len(wrong) > 4 else ''}); download the checkpoint again"
        )
    missing = set(names) - set(shapes)
    unexpected = {k for k in shapes if k not in names and not IGNORED_KEYS.fullmatch(k)}
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


def load_model(folder: Path, device: str | torch.device, dtype: torch.dtype) -> QwenVL:
    """The model of `folder` with its weights on `device` in `dtype`, in eval mode. The config is
    checked against the weights' shapes (read from the file headers) before anything is allocated."""
    config = read_config(folder)
    files = weight_files(folder)
    shapes = {}
    for path in files:
        shapes.update(weight_shapes(path))
    check_against_weights(folder, config, shapes)
    names = key_map(config)
    with torch.device("meta"):
        model = QwenVL(config)
    for path in files:
        state = {names[k]: t.to(device=device, dtype=dtype) for k, t in read_weight_file(path).items() if k in names}
        model.load_state_dict(state, strict=False, assign=True)
        del state
    model.vision.resampler.pos_table.requires_grad_(False)
    return model.eval()
