"""Tiny random checkpoints of the transformers-native families (Qwen2-VL, Qwen2.5-VL, Qwen3-VL dense and
MoE, Qwen3.5 dense and MoE, Qwen4-Exp), built offline in seconds.

Each one is the real architecture with every size field shrunk, a byte-level BPE tokenizer holding the
Qwen special tokens, and a processor with the family's real patch size, merge size and min/max pixels,
so smart_resize (factor 28, or 32 for Qwen3-VL and later) and `image_grid_thw` behave as in the
released checkpoints and input-size bugs show up. Qwen3.5 and Qwen4-Exp get their hybrid layers (linear
attention beside full attention), the MoE variants real routed experts, and the chat template the
released thinking shape (see CHAT_TEMPLATES: a Qwen3.5 template opens `<think>` unless told
enable_thinking=False; a Thinking checkpoint's always opens it). The weights are random: answers are noise, but every step
from `from_pretrained` to decoding runs exactly as it does for a real checkpoint.

The pieces (`build_processor`, `build_config`, `generation_config`, `model_class`) also let benchmarks
build random-weight models of a released size without a checkpoint folder."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlground.core.families import Family, get_family

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# Qwen3 and later spell reasoning with these two ordinary (not special) added tokens.
THINK_TOKENS = ["<think>", "</think>"]

# The released templates' shape, minus the default system turn: an image becomes
# <|vision_start|><|image_pad|><|vision_end|>, which the processor expands to one pad per visual token.
_TURNS = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
)
# How the generation prompt opens (or not) a reasoning block, per `vlground.core.families.THINKING` value.
_OPENINGS = {
    "never": "",
    "default": "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
               "{% else %}<think>\n{% endif %}",
    "always": "<think>\n",
}
CHAT_TEMPLATES = {mode: _TURNS + "{% if add_generation_prompt %}<|im_start|>assistant\n" + opening + "{% endif %}"
                  for mode, opening in _OPENINGS.items()}
CHAT_TEMPLATE = CHAT_TEMPLATES["never"]

# Text the BPE merges are learned from: the prompts and the shapes of grounded answers.
_ANSWERS = [
    '```json\n[{"bbox_2d": [12, 345, 678, 901], "label": "red car", "text_content": "OPEN 24 HOURS"}]\n```',
    '[{"point_2d": [250, 760], "label": "cake"}] <!-- Image (10, 20, 300, 400) --> <p data-bbox="1 2 3 4">',
    "(123,456),(789,999) Two apples and a bowl 0123456789",
]

_TEXT_SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=8192, rms_norm_eps=1e-6, tie_word_embeddings=False)


@dataclass(frozen=True)
class _Recipe:
    """How one family's tiny checkpoint is put together (transformers class names and tiny sizes)."""

    config: str
    model: str
    processor: str
    video_processor: str
    text: dict[str, Any]
    vision: dict[str, Any]
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)  # CLIP, as released
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    thinking: str = "never"  # the template's default shape (a key of CHAT_TEMPLATES)
    think_tokens: bool = False  # the tokenizer spells <think> and </think> as single tokens


_QWEN3_VISION = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=16,
                     spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64)
_QWEN3_TEXT = dict(_TEXT_SIZES, head_dim=16, attention_bias=False,
                   rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [4, 2, 2],
                                    "mrope_interleaved": True})
# Qwen3.5's text stack: linear-attention (Gated DeltaNet) layers beside full attention, partial rotary.
# Every field is given: the class defaults are the released sizes.
_HYBRID_TEXT = dict(
    _TEXT_SIZES, num_hidden_layers=4, head_dim=16, attention_bias=False, hidden_act="silu",
    layer_types=["linear_attention", "full_attention", "linear_attention", "full_attention"],
    linear_conv_kernel_dim=4, linear_key_head_dim=16, linear_value_head_dim=16, linear_num_key_heads=2,
    linear_num_value_heads=4,
    rope_parameters={"rope_type": "default", "rope_theta": 1e7, "mrope_section": [2, 1, 1], "mrope_interleaved": True,
                     "partial_rotary_factor": 0.5},
)
_MOE = dict(moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2)
_HYBRID_MOE_TEXT = dict({k: v for k, v in _HYBRID_TEXT.items() if k != "intermediate_size"}, **_MOE,
                        shared_expert_intermediate_size=32)


def _qwen3_recipe(config: str, model: str, text: dict[str, Any], vision: dict[str, Any], thinking: str = "never") -> _Recipe:
    """Qwen3-VL and its successors: Qwen3VLProcessor, normalization to [-1, 1], <think> tokens."""
    return _Recipe(config=config, model=model, processor="Qwen3VLProcessor", video_processor="Qwen3VLVideoProcessor",
                   text=text, vision=vision, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5), thinking=thinking,
                   think_tokens=True)


_RECIPES = {
    "qwen2-vl": _Recipe(
        config="Qwen2VLConfig",
        model="Qwen2VLForConditionalGeneration",
        processor="Qwen2VLProcessor",
        video_processor="Qwen2VLVideoProcessor",
        text=dict(_TEXT_SIZES, rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}),
        vision=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                    spatial_merge_size=2, temporal_patch_size=2),
    ),
    "qwen2.5-vl": _Recipe(
        config="Qwen2_5_VLConfig",
        model="Qwen2_5_VLForConditionalGeneration",
        processor="Qwen2_5_VLProcessor",
        video_processor="Qwen2VLVideoProcessor",
        text=dict(_TEXT_SIZES, rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}),
        # The real window (112 px) and a full-attention block, so the windowed attention path runs.
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                    spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1]),
    ),
    "qwen3-vl": _qwen3_recipe("Qwen3VLConfig", "Qwen3VLForConditionalGeneration", _QWEN3_TEXT,
                              dict(_QWEN3_VISION, deepstack_visual_indexes=[1])),
    "qwen3-vl-moe": _qwen3_recipe("Qwen3VLMoeConfig", "Qwen3VLMoeForConditionalGeneration",
                                  dict(_QWEN3_TEXT, **_MOE, decoder_sparse_step=1, mlp_only_layers=[]),
                                  dict(_QWEN3_VISION, deepstack_visual_indexes=[1])),
    "qwen3.5": _qwen3_recipe("Qwen3_5Config", "Qwen3_5ForConditionalGeneration", _HYBRID_TEXT, _QWEN3_VISION,
                             thinking="default"),
    "qwen3.5-moe": _qwen3_recipe("Qwen3_5MoeConfig", "Qwen3_5MoeForConditionalGeneration", _HYBRID_MOE_TEXT,
                                 _QWEN3_VISION, thinking="default"),
    # Qwen4-Exp's stack on top of Qwen3.5-MoE's, each part switched on at a tiny size: hyper-connections,
    # per-layer n-gram embeddings (PLE) on a linear layer, and the QSA token indexer on the full-attention ones.
    "qwen4-exp": _qwen3_recipe(
        "Qwen4ExpConfig", "Qwen4ExpForConditionalGeneration",
        dict(_HYBRID_MOE_TEXT, norm_topk_prob=True, output_gate_type="sigmoid", hc_count=2, hc_lowrank=8,
             ple_layer_ids=[1], ple_embed_dim=32, ple_conv_kernel_size=4, ngram_size=3, heads_per_ngram=2,
             ngram_vocab_size_base=1000, make_ngram_vocab_size_divisible_by=8, split_ngram_parts=2, seed=1234,
             indexer_n_heads=2, indexer_kv_heads=1, indexer_head_dim=16, indexer_budget=32, indexer_compress_ratio=4),
        _QWEN3_VISION, thinking="default"),
}

TINY_FAMILIES = tuple(_RECIPES)  # family names, and the MoE variants of a family ("qwen3-vl-moe", "qwen3.5-moe")


def _build_tokenizer(family: Family, think_tokens: bool = False):
    """A byte-level BPE (about 400 tokens plus the Qwen special tokens) as a Qwen2 tokenizer; with
    `think_tokens`, <think> and </think> added as single ordinary tokens, as Qwen3 and later have them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator([*family.prompts.values(), *_ANSWERS] * 4, trainer)
    with tempfile.TemporaryDirectory() as scratch:
        PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>").save_pretrained(scratch)
        tokenizer = Qwen2TokenizerFast.from_pretrained(scratch)
    if think_tokens:
        tokenizer.add_tokens(THINK_TOKENS)
    return tokenizer


def _recipe(name: str | Family) -> _Recipe:
    key = name if isinstance(name, str) and name in _RECIPES else get_family(name).name
    recipe = _RECIPES.get(key)
    if recipe is None:
        raise ValueError(f"no tiny transformers recipe for {key!r}; families: {', '.join(TINY_FAMILIES)}")
    return recipe


def build_processor(family: str | Family, thinking: str | None = None):
    """The family's processor around a tiny tokenizer: released patch/merge sizes, min/max pixels and
    normalization, and the chat template's shape; `thinking` (a key of CHAT_TEMPLATES) picks how its
    generation prompt opens a reasoning block (default: as the family's released checkpoints do)."""
    import transformers

    fam = get_family(family)
    recipe = _recipe(family)
    template = CHAT_TEMPLATES.get(thinking or recipe.thinking)
    if template is None:
        raise ValueError(f"unknown thinking template {thinking!r}; choose one of {', '.join(CHAT_TEMPLATES)}")
    # `size` is passed whole: some transformers 5 releases update the class-level default dict in place
    # when given min_pixels / max_pixels.
    image_processor = transformers.Qwen2VLImageProcessor(
        size={"shortest_edge": fam.min_pixels, "longest_edge": fam.max_pixels},
        patch_size=fam.patch_size, merge_size=fam.merge_size, temporal_patch_size=2,
        image_mean=list(recipe.image_mean), image_std=list(recipe.image_std))
    return getattr(transformers, recipe.processor)(
        image_processor=image_processor, tokenizer=_build_tokenizer(fam, recipe.think_tokens),
        video_processor=getattr(transformers, recipe.video_processor)(), chat_template=template)


def build_config(family: str | Family, tokenizer, text: dict[str, Any] | None = None, vision: dict[str, Any] | None = None,
                 **top_level: Any):
    """The family's model config with the tiny sizes, or with `text` / `vision` sizes given in full
    (benchmarks pass a released model's, and `top_level` fields such as tie_word_embeddings); special
    token ids come from `tokenizer`."""
    import transformers

    recipe = _recipe(family)
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    end_of_text, end_of_turn = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    text = {"vocab_size": len(tokenizer), **(text or recipe.text)}
    text.update(bos_token_id=end_of_text, eos_token_id=end_of_turn, pad_token_id=end_of_text)
    return getattr(transformers, recipe.config)(text_config=text, vision_config=vision or recipe.vision, **ids, **top_level)


def generation_config(tokenizer):
    """Greedy decoding that ends at <|im_end|> or <|endoftext|> and pads with <|endoftext|>, as released."""
    from transformers import GenerationConfig

    end_of_text, end_of_turn = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    return GenerationConfig(bos_token_id=end_of_text, eos_token_id=[end_of_turn, end_of_text], pad_token_id=end_of_text,
                            do_sample=False)


def model_class(family: str | Family):
    """The transformers class of `family`'s model (what AutoModelForImageTextToText resolves to)."""
    import transformers

    return getattr(transformers, _recipe(family).model)


def make_tiny_hf_model(family: str | Family, path: str | Path, thinking: str | None = None) -> Path:
    """Write a tiny random checkpoint of `family` (one of TINY_FAMILIES) into `path` and return it;
    `AutoProcessor` and `AutoModelForImageTextToText.from_pretrained(path)` load it offline.
    `thinking`: the chat template's reasoning shape (see `build_processor`)."""
    import torch

    processor = build_processor(family, thinking)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = model_class(family)(build_config(family, processor.tokenizer)).eval()
    model.generation_config = generation_config(processor.tokenizer)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
