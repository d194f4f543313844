"""Tiny random checkpoints of the transformers-native families (Qwen2-VL, Qwen2.5-VL, Qwen3-VL), built
offline in seconds.

Each one is the real architecture with every size field shrunk, a byte-level BPE tokenizer holding the
Qwen special tokens, and a processor with the family's real patch size, merge size and min/max pixels,
so smart_resize (factor 28, or 32 for Qwen3-VL) and `image_grid_thw` behave as in the released
checkpoints and input-size bugs show up. The weights are random: answers are noise, but every step
from `from_pretrained` to decoding runs exactly as it does for a real checkpoint.

The pieces (`build_processor`, `build_config`, `generation_config`, `model_class`) also let benchmarks
build random-weight models of a released size without a checkpoint folder."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlground.families import Family, get_family

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# The released templates' shape, minus the default system turn: an image becomes
# <|vision_start|><|image_pad|><|vision_end|>, which the processor expands to one pad per visual token.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

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
    "qwen3-vl": _Recipe(
        config="Qwen3VLConfig",
        model="Qwen3VLForConditionalGeneration",
        processor="Qwen3VLProcessor",
        video_processor="Qwen3VLVideoProcessor",
        text=dict(_TEXT_SIZES, head_dim=16, attention_bias=False,
                  rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [4, 2, 2],
                                   "mrope_interleaved": True}),
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=16,
                    spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64,
                    deepstack_visual_indexes=[1]),
        image_mean=(0.5, 0.5, 0.5),
        image_std=(0.5, 0.5, 0.5),
    ),
}

TINY_FAMILIES = tuple(_RECIPES)


def _build_tokenizer(family: Family):
    """A byte-level BPE (about 400 tokens plus the Qwen special tokens) as a Qwen2 tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([*family.prompts.values(), *_ANSWERS] * 4, trainer)
    with tempfile.TemporaryDirectory() as scratch:
        PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>").save_pretrained(scratch)
        return Qwen2TokenizerFast.from_pretrained(scratch)


def _recipe(family: Family) -> _Recipe:
    recipe = _RECIPES.get(family.name)
    if recipe is None:
        raise ValueError(f"no tiny transformers recipe for {family.name!r}; families: {', '.join(TINY_FAMILIES)}")
    return recipe


def build_processor(family: str | Family):
    """The family's processor around a tiny tokenizer: released patch/merge sizes, min/max pixels and
    normalization, and the chat template's shape."""
    import transformers

    fam = get_family(family)
    recipe = _recipe(fam)
    # `size` is passed whole: some transformers 5 releases update the class-level default dict in place
    # when given min_pixels / max_pixels.
    image_processor = transformers.Qwen2VLImageProcessor(
        size={"shortest_edge": fam.min_pixels, "longest_edge": fam.max_pixels},
        patch_size=fam.patch_size, merge_size=fam.merge_size, temporal_patch_size=2,
        image_mean=list(recipe.image_mean), image_std=list(recipe.image_std))
    return getattr(transformers, recipe.processor)(
        image_processor=image_processor, tokenizer=_build_tokenizer(fam),
        video_processor=getattr(transformers, recipe.video_processor)(), chat_template=CHAT_TEMPLATE)


def build_config(family: str | Family, tokenizer, text: dict[str, Any] | None = None, vision: dict[str, Any] | None = None,
                 **top_level: Any):
    """The family's model config with the tiny sizes, or with `text` / `vision` sizes given in full
    (benchmarks pass a released model's, and `top_level` fields such as tie_word_embeddings); special
    token ids come from `tokenizer`."""
    import transformers

    fam = get_family(family)
    recipe = _recipe(fam)
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

    return getattr(transformers, _recipe(get_family(family)).model)


def make_tiny_hf_model(family: str | Family, path: str | Path) -> Path:
    """Write a tiny random checkpoint of `family` (qwen2-vl, qwen2.5-vl or qwen3-vl) into `path` and
    return it; `AutoProcessor` and `AutoModelForImageTextToText.from_pretrained(path)` load it offline."""
    import torch

    fam = get_family(family)
    processor = build_processor(fam)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = model_class(fam)(build_config(fam, processor.tokenizer)).eval()
    model.generation_config = generation_config(processor.tokenizer)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
