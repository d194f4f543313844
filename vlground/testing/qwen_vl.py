"""A tiny random Qwen-VL (v1) checkpoint in the release's own layout, built offline in about a second.

The folder looks like Qwen/Qwen-VL(-Chat): config.json in the original format (with `visual`),
generation_config.json ("chatml" for Chat, "raw" for the base model), weights under their original key
names, and a `qwen.tiktoken` holding every single byte plus merges learned from the family's prompts.
Special tokens keep their release ids (151643..151859) and the vocabulary its release size, so id
handling is exercised as with the real checkpoint. The lm_head rows of ids outside that small
vocabulary (and of the unused special tokens) are zero, so greedy answers are decodable noise."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import torch

from vlground.core.families import FAMILIES
from vlground.models.qwen_vl.checkpoint import key_map
from vlground.models.qwen_vl.model import QwenVL, QwenVLConfig
from vlground.models.qwen_vl.tokenizer import GROUNDING_TAGS, SPECIAL_TOKENS, TIKTOKEN_FILE
from vlground.models.qwen_vl.vision import sincos_table_2d

TINY_CONFIG = {
    "architectures": ["QWenLMHeadModel"],
    "auto_map": {"AutoConfig": "configuration_qwen.QWenConfig", "AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel"},
    "model_type": "qwen",
    "bf16": True, "fp16": False, "fp32": False,
    "hidden_size": 128,  # the resampler has hidden_size // 128 heads: 128 is the smallest width that works
    "intermediate_size": 256,
    "kv_channels": 32,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "layer_norm_epsilon": 1e-6,
    "max_position_embeddings": 8192,
    "no_bias": True,
    "rotary_emb_base": 10000,
    "rotary_pct": 1.0,
    "scale_attn_weights": True,
    "seq_length": 2048,
    "tie_word_embeddings": False,
    "tokenizer_type": "QWenTokenizer",
    "use_cache": True,
    "use_dynamic_ntk": True,
    "use_flash_attn": False,
    "use_logn_attn": True,
    "vocab_size": 151936,
    "visual": {"heads": 2, "image_size": 56, "image_start_id": 151857, "layers": 2, "mlp_ratio": 2.0,
               "output_dim": 128, "patch_size": 14, "width": 32},
}
_ANSWERS = [
    "<ref>the red car</ref><box>(123,456),(789,999)</box>",
    "<ref> Two apples</ref><box>(302,257),(582,671)</box> and a bowl <quad>(1,2),(3,4),(5,6),(7,8)</quad>",
    "0123456789 Picture user assistant system You are a helpful assistant.",
]
WEIGHT_FORMATS = ("safetensors", "bin")
REFERENCE_SEED = 20261126  # the seed of the reference checkpoint in tests/data/qwen_vl_v1


def _tiny_ranks() -> dict[bytes, int]:
    """Every single byte, then each prefix of the prompts' words (so every merge joins a known token
    and one byte, as BPE needs)."""
    ranks = {bytes([b]): b for b in range(256)}
    texts = [*FAMILIES["qwen-vl"].prompts.values(), *FAMILIES["qwen-vl-chat"].prompts.values(), *_ANSWERS]
    for word in re.findall(r" ?[A-Za-z]+| ?[^\sA-Za-z0-9]+", " ".join(texts)):
        piece = word.encode()
        for end in range(2, len(piece) + 1):
            ranks.setdefault(piece[:end], len(ranks))
    return ranks


POS_TABLE_KEY = "transformer.visual.attn_pool.pos_embed"


def draw_weights(config: QwenVLConfig, seed: int) -> dict[str, torch.Tensor]:
    """Random float32 weights under the original key names, drawn from numpy's PCG64 (`seed`) in sorted
    key order: norms near 1, small biases, matrices scaled by fan-in. The resampler's fixed sin-cos
    table is computed, not drawn (it takes nothing from the generator). With the reference config and
    seed 20261126 this is the checkpoint the original code's logits in tests/data were computed on."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in QwenVL(config).state_dict().items()}
    rng = np.random.default_rng(seed)
    weights = {}
    for original, native in sorted(key_map(config).items()):
        if original == POS_TABLE_KEY:
            table = sincos_table_2d(config.vision.output_dim, int(np.sqrt(config.vision.n_queries)))
            weights[original] = torch.from_numpy(table)
            continue
        shape = shapes[native]
        x = rng.standard_normal(shape).astype(np.float32)
        leaf = native.rsplit(".", 1)[-1]
        if "norm" in native and leaf == "weight":
            x = 1.0 + 0.1 * x
        elif leaf == "bias":
            x = 0.02 * x
        else:
            x = (x.astype(np.float64) * (0.5 / np.sqrt(shape[-1]))).astype(np.float32)  # scaled in float64, as drawn
        weights[original] = torch.from_numpy(x)
    return weights


def _tiny_weights(config: QwenVLConfig, known_ids: list[int], seed: int) -> dict[str, torch.Tensor]:
    """`draw_weights` in bf16, with the lm_head rows of ids outside the tiny vocabulary zeroed."""
    weights = draw_weights(config, seed)
    keep = torch.zeros(config.vocab_size, dtype=torch.bool)
    keep[known_ids] = True
    weights["lm_head.weight"][~keep] = 0.0
    return {k: v.to(torch.bfloat16).contiguous() for k, v in weights.items()}


def _save(weights: dict[str, torch.Tensor], folder: Path, weight_format: str, shards: int) -> None:
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"weight_format must be one of {WEIGHT_FORMATS}")
    keys = sorted(weights)
    groups = [keys[i::shards] for i in range(shards)]
    stem, suffix = ("model", "safetensors") if weight_format == "safetensors" else ("pytorch_model", "bin")
    names = [f"{stem}.{suffix}"] if shards == 1 else [f"{stem}-{i + 1:05d}-of-{shards:05d}.{suffix}" for i in range(shards)]
    for name, group in zip(names, groups):
        part = {k: weights[k] for k in group}
        if weight_format == "safetensors":
            from safetensors.torch import save_file

            save_file(part, folder / name, metadata={"format": "pt"})
        else:
            torch.save(part, folder / name)
    if shards > 1:
        index = {
            "metadata": {"total_size": sum(t.numel() * t.element_size() for t in weights.values())},
            "weight_map": {k: name for name, group in zip(names, groups) for k in group},
        }
        (folder / f"{stem}.{suffix}.index.json").write_text(json.dumps(index, indent=2))


def _write_config_and_ranks(folder: Path, config: dict) -> dict[bytes, int]:
    folder.mkdir(parents=True, exist_ok=True)
    ranks = _tiny_ranks()
    (folder / TIKTOKEN_FILE).write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in ranks.items()))
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return ranks


def make_tiny_qwen_vl(
    path: str | Path, chat: bool = True, *, weight_format: str = "safetensors", shards: int = 1, seed: int = 0
) -> Path:
    """Write a tiny Qwen-VL-Chat (`chat=True`) or Qwen-VL base checkpoint into `path` and return it.
    `weight_format` "safetensors" or "bin" and `shards` choose the weight layout (an index json is
    written for more than one shard), as the releases ship either."""
    folder = Path(path)
    ranks = _write_config_and_ranks(folder, TINY_CONFIG)
    generation = {"chat_format": "chatml" if chat else "raw", "eos_token_id": SPECIAL_TOKENS["<|endoftext|>"],
                  "pad_token_id": SPECIAL_TOKENS["<|endoftext|>"], "max_new_tokens": 512, "do_sample": False}
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=1))
    config = QwenVLConfig.from_dict(TINY_CONFIG)
    answer_ids = [*ranks.values(), *(SPECIAL_TOKENS[t] for t in (*GROUNDING_TAGS, "<|endoftext|>", "<|im_start|>", "<|im_end|>"))]
    _save(_tiny_weights(config, answer_ids, seed), folder, weight_format, shards)
    return folder


def make_reference_qwen_vl(path: str | Path, config: dict, seed: int = REFERENCE_SEED) -> Path:
    """Write the checkpoint the original code's reference logits were computed on: `config` (an original
    config.json) with `draw_weights(seed)` in float32, nothing masked, in one safetensors file. The
    tiktoken file is the tiny one: the reference prompt's ids are stored with the reference."""
    folder = Path(path)
    _write_config_and_ranks(folder, config)
    _save(draw_weights(QwenVLConfig.from_dict(config), seed), folder, "safetensors", 1)
    return folder
