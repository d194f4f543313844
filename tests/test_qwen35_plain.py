"""Done-when check of Qwen3.5 support: tiny Qwen3.5 dense and MoE checkpoints written with plain
transformers and tokenizers (nothing of `vlground.testing`), as a user's own conversion would be, run
through `vlground detect --model DIR` in a fresh process."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
            "<|video_pad|>"]
# Qwen3.5's template shape: the assistant turn opens <think> unless enable_thinking is false
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for p in m['content'] %}{% if p['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}{% endif %}"
)


def write_plain_checkpoint(folder, moe: bool):
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(['Locate every instance [{"bbox_2d": [1, 2, 3, 4], "label": "cat"}]'] * 8, trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_tokens(["<think>", "</think>"])
    image_processor = transformers.Qwen2VLImageProcessor(size={"shortest_edge": 65536, "longest_edge": 16777216},
                                                         patch_size=16, merge_size=2, temporal_patch_size=2,
                                                         image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = transformers.Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                              video_processor=transformers.Qwen3VLVideoProcessor(), chat_template=TEMPLATE)
    ids = {key: tokenizer.convert_tokens_to_ids(token) for key, token in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    end_of_text, end_of_turn = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    # every field given: the class defaults are the released sizes
    text = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, head_dim=16, hidden_act="silu", max_position_embeddings=4096, rms_norm_eps=1e-6,
                tie_word_embeddings=False, attention_bias=False, layer_types=["linear_attention", "full_attention"],
                linear_conv_kernel_dim=4, linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2,
                linear_num_value_heads=2, bos_token_id=end_of_text, eos_token_id=end_of_turn, pad_token_id=end_of_text,
                rope_parameters={"rope_type": "default", "rope_theta": 1e7, "mrope_section": [2, 1, 1],
                                 "mrope_interleaved": True, "partial_rotary_factor": 0.5})
    if moe:
        text.update(moe_intermediate_size=16, shared_expert_intermediate_size=16, num_experts=4, num_experts_per_tok=2)
        config_class, model_class = transformers.Qwen3_5MoeConfig, transformers.Qwen3_5MoeForConditionalGeneration
    else:
        text.update(intermediate_size=64)
        config_class, model_class = transformers.Qwen3_5Config, transformers.Qwen3_5ForConditionalGeneration
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64, in_channels=3)
    torch.manual_seed(0)
    model = model_class(config_class(text_config=text, vision_config=vision, **ids))
    model.generation_config = transformers.GenerationConfig(eos_token_id=[end_of_turn, end_of_text],
                                                            pad_token_id=end_of_text, do_sample=False)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("moe", [False, True], ids=["dense", "moe"])
def test_a_plain_transformers_qwen35_checkpoint_runs_through_detect(tmp_path, moe):
    folder = write_plain_checkpoint(tmp_path / ("Qwen3.5-MoE-plain" if moe else "Qwen3.5-plain"), moe)
    assert json.loads((folder / "config.json").read_text())["model_type"] == ("qwen3_5_moe" if moe else "qwen3_5")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(photo)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "vlground.cli.main", "detect", str(photo), "a cat", "--model", str(folder),
                          "--device", "cpu", "--json", "--max-new-tokens", "8", "--max-thinking-tokens", "8"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert set(result) >= {"detections", "text"} and "Traceback" not in run.stderr
    # it thought (the template opened <think>), and the budget closed the reasoning: an answer came
    assert result.get("reasoning") is not None and not result.get("reasoning_cut_short")
