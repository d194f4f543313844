"""The transformers backend on tiny random checkpoints of each family, on CPU in fp32."""
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from vlground.core.families import get_family
from vlground.core.geometry import model_input_size
from vlground.core.options import GenerationOptions
from vlground.grammar import parse
from vlground.models.base import Request
from vlground.models.hf import HFBackend
from vlground.models.weights import WeightsNotFoundError
from vlground.prompts import build_prompt
from vlground.testing.hf import TINY_FAMILIES


@pytest.fixture(scope="module")
def checkpoints(tiny_checkpoint):
    return {name: tiny_checkpoint(name) for name in TINY_FAMILIES}


@pytest.fixture(scope="module")
def backends(checkpoints):
    return {name: HFBackend.load(path, get_family(name), device="cpu") for name, path in checkpoints.items()}


def noise_images(count, seed=0):
    """Random RGB images of different sizes and aspect ratios (width 60-330, height 50-300)."""
    rng = np.random.default_rng(seed)
    sizes = [(int(rng.integers(60, 330)), int(rng.integers(50, 300))) for _ in range(count)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


# Qwen3.5 and Qwen4-Exp think by default: a small reasoning budget keeps random weights quick and puts
# the budget's forced closer inside every batch
THINKING = dict(max_thinking_tokens=6)


def mixed_requests(family, images):
    """Alternating tasks with different token limits, so one batch mixes prompt lengths and limits."""
    prompts = [
        build_prompt("ground", family, phrase="the red car", max_new_tokens=5),
        build_prompt("read_text", family, max_new_tokens=9),
        build_prompt("ask", family, question="What colour is the sky?", max_new_tokens=7),
    ]
    return [Request(image, prompts[i % len(prompts)]) for i, image in enumerate(images)]


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_hf_batched_answers_equal_one_at_a_time(backends, name):
    backend = backends[name]
    requests = mixed_requests(name, noise_images(7))
    alone = [backend.generate([r], GenerationOptions(batch_size=1, **THINKING))[0] for r in requests]
    batched = backend.generate(requests, GenerationOptions(batch_size=4, **THINKING))
    assert batched == alone
    # the images steer the answers, and no row stopped at once: the comparison means something
    assert len({g.text for g in batched}) > 1 and all(g.text for g in batched)


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_hf_input_size_is_what_the_processor_produced(backends, name):
    images = noise_images(4, seed=1)
    answers = backends[name].generate(mixed_requests(name, images), GenerationOptions(max_new_tokens=1, batch_size=4, **THINKING))
    assert [a.input_size for a in answers] == [model_input_size(name, image.size) for image in images]


def test_hf_pixel_limits_change_the_input_size(checkpoints):
    family = get_family("qwen2.5-vl")
    backend = HFBackend.load(checkpoints["qwen2.5-vl"], family, device="cpu", min_pixels=100_000, max_pixels=200_000)
    image = Image.new("RGB", (700, 500))  # 350k pixels: shrunk under max_pixels
    small = Image.new("RGB", (120, 90))  # raised over min_pixels
    answers = backend.generate([Request(image, build_prompt("caption", family)), Request(small, build_prompt("caption", family))],
                               GenerationOptions(max_new_tokens=1))
    assert [a.input_size for a in answers] == [
        model_input_size(family, image.size, min_pixels=100_000, max_pixels=200_000),
        model_input_size(family, small.size, min_pixels=100_000, max_pixels=200_000),
    ]
    assert all(100_000 <= w * h <= 200_000 for w, h in (a.input_size for a in answers))


# What a trained model of each family would answer, and where the box must land on a 870x1398 image.
FORCED = {
    "qwen2-vl": ("<|object_ref_start|>red car<|object_ref_end|><|box_start|>(100,200),(500,750)<|box_end|>",
                 (87.0, 279.6, 435.0, 1048.5)),
    "qwen2.5-vl": ('```json\n[{"bbox_2d": [217, 350, 434, 700], "label": "red car"}]\n```',  # input is 868x1400
                   (217 * 870 / 868, 350 * 1398 / 1400, 434 * 870 / 868, 700 * 1398 / 1400)),
    "qwen3-vl": ('```json\n[{"bbox_2d": [100, 200, 500, 750], "label": "red car"}]\n```', (87.0, 279.6, 435.0, 1048.5)),
}
FORCED.update({name: FORCED["qwen3-vl"] for name in ("qwen3-vl-moe", "qwen3.5", "qwen3.5-moe", "qwen4-exp")})


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_hf_answer_decodes_and_parses_into_original_pixels(backends, name, monkeypatch):
    """load -> prompt -> generate -> parse, with the model's tokens replaced by a known answer followed
    by end-of-turn and padding: grounding tokens survive decoding, control tokens do not."""
    backend = backends[name]
    answer, expected_box = FORCED[name]
    tokenizer = backend.tokenizer
    answer_ids = tokenizer(answer + "<|im_end|><|endoftext|><|endoftext|>", add_special_tokens=False, return_tensors="pt")["input_ids"]

    def fake_generate(input_ids, **kwargs):
        return torch.cat([input_ids, answer_ids.expand(len(input_ids), -1)], dim=1)

    monkeypatch.setattr(backend.model, "generate", fake_generate)
    image = Image.new("RGB", (870, 1398))
    generation = backend.generate([Request(image, build_prompt("ground", name, phrase="red car"))])[0]
    assert generation.text == answer
    result = parse(generation.text, name, image.size, generation.input_size)
    assert [d.label for d in result.detections] == ["red car"]
    assert result.detections[0].box == pytest.approx(expected_box)


@pytest.mark.parametrize("name", TINY_FAMILIES)
def test_hf_end_to_end_on_random_weights(checkpoints, name):
    backend = HFBackend.load(checkpoints[name], get_family(name), device="cpu", dtype="fp32")
    images = noise_images(2, seed=2)
    answers = backend.generate(mixed_requests(name, images), GenerationOptions(min_new_tokens=4, max_new_tokens=4, **THINKING))
    for image, answer in zip(images, answers):
        assert answer.text and "<|im_end|>" not in answer.text
        assert parse(answer.text, name, image.size, answer.input_size).image_size == image.size


def test_hf_out_of_memory_splits_the_batch_and_keeps_every_answer(backends, monkeypatch, caplog):
    backend = backends["qwen2.5-vl"]
    requests = mixed_requests("qwen2.5-vl", noise_images(5, seed=3))
    expected = backend.generate(requests, GenerationOptions(batch_size=8))
    real_generate = backend.model.generate
    batch_sizes = []

    def generate_or_run_out(input_ids, **kwargs):
        batch_sizes.append(len(input_ids))
        if len(input_ids) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_generate(input_ids=input_ids, **kwargs)

    monkeypatch.setattr(backend.model, "generate", generate_or_run_out)
    with caplog.at_level(logging.WARNING, logger="vlground"):
        answers = backend.generate(requests, GenerationOptions(batch_size=8))
    assert answers == expected
    assert batch_sizes.count(1) == len(requests)
    assert "out of memory on a batch of 5" in caplog.text


def test_hf_load_refuses_incomplete_or_foreign_checkpoints(checkpoints, tmp_path):
    (tmp_path / "config.json").write_text((checkpoints["qwen2-vl"] / "config.json").read_text())
    with pytest.raises(WeightsNotFoundError, match="no weights"):
        HFBackend.load(tmp_path, get_family("qwen2-vl"), device="cpu")
    with pytest.raises(ValueError, match="qwen2_vl"):
        HFBackend.load(checkpoints["qwen2-vl"], get_family("qwen3-vl"), device="cpu")
    with pytest.raises(ValueError, match="min_pixels"):
        HFBackend.load(checkpoints["qwen2-vl"], get_family("qwen2-vl"), device="cpu", min_pixels=10**6, max_pixels=10**5)


def _broken_copy(source, folder, drop=(), config=None, template=None, processor=None):
    """A copy of checkpoint `source` without the files `drop`, with `config(dict)` applied to its
    config.json, `processor(dict)` to its processor_config.json and `template` as its chat template."""
    import json
    import shutil

    shutil.copytree(source, folder)
    for name in drop:
        (folder / name).unlink()
    if config is not None:
        data = json.loads((folder / "config.json").read_text())
        config(data)
        (folder / "config.json").write_text(json.dumps(data))
    if processor is not None:
        data = json.loads((folder / "processor_config.json").read_text())
        processor(data)
        (folder / "processor_config.json").write_text(json.dumps(data))
    if template is not None:
        (folder / "chat_template.jinja").write_text(template)
    return folder


def _shrink_mlp(data):
    data["text_config"]["intermediate_size"] = 96


BROKEN = {
    "no tokenizer.json": (dict(drop=["tokenizer.json"]), r"does not spell the image token <\|image_pad\|>.*no tokenizer.json"),
    "sandbox": (dict(template="{{ ''.__class__.__mro__[1].__subclasses__() }}"), "chat template .*cannot be rendered .*SecurityError"),
    "size mismatch": (dict(config=_shrink_mlp), r"6 weights do not have the shapes config.json describes \(e.g. .*mlp"),
    # the image processor's settings are the checkpoint's: never filled in from the family registry
    "no preprocessor config": (dict(drop=["processor_config.json"]), "has no preprocessor_config.json .*does not guess"),
    "other patch size": (dict(processor=lambda data: data["image_processor"].update(patch_size=16)),
                         "cuts 16-pixel patches merged 2x2, the model's vision tower expects 14"),
}


def test_a_transformers_without_the_family_says_which_release_it_needs(checkpoints, monkeypatch):
    """The GPU image's transformers may predate a family: one line naming the release, at load."""
    from transformers.models.auto import configuration_auto

    from vlground.models.weights import InvalidCheckpointError

    known = {k: v for k, v in configuration_auto.CONFIG_MAPPING_NAMES.items() if k not in ("qwen3_5", "qwen3_5_moe")}
    monkeypatch.setattr(configuration_auto, "CONFIG_MAPPING", configuration_auto._LazyConfigMapping(known))
    with pytest.raises(InvalidCheckpointError, match=r"qwen3.5 \(model_type 'qwen3_5'\) needs transformers>=5.2.0; "
                                                     r"this is transformers .*pip install -U 'transformers>=5.2.0'"):
        HFBackend.load(checkpoints["qwen3.5"], get_family("qwen3.5"), device="cpu")


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_checkpoint_fails_at_load_with_one_clear_line(checkpoints, tmp_path, case):
    from typer.testing import CliRunner

    from vlground.cli.main import app
    from vlground.models.weights import InvalidCheckpointError

    changes, message = BROKEN[case]
    folder = _broken_copy(checkpoints["qwen2.5-vl"], tmp_path / "Qwen2.5-VL-broken", **changes)
    with pytest.raises(InvalidCheckpointError, match=message):
        HFBackend.load(folder, get_family("qwen2.5-vl"), device="cpu")
    image = tmp_path / "photo.png"
    Image.new("RGB", (64, 48)).save(image)
    result = CliRunner().invoke(app, ["detect", str(image), "a cat", "--model", str(folder), "--device", "cpu"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    # one line (beside transformers' progress bar): no loading report table before it
    [line] = [text for text in result.stderr.strip().splitlines() if "Loading weights" not in text]
    assert line.startswith("error: ") and str(folder) in line


def test_hf_packed_vision_attention_matches_one_call_per_window(checkpoints):
    """The Qwen2.5-VL tower with all windows in one padded call gives the features of transformers' own
    per-window loop, for images with partial edge windows and one large enough for the per-image path."""
    from transformers import AutoProcessor

    from vlground.models.hf import PACKED_VISION_ATTENTION, use_packed_vision_attention

    backend = HFBackend.load(checkpoints["qwen2.5-vl"], get_family("qwen2.5-vl"), device="cpu")
    visual = backend.model.model.visual
    assert visual.config._attn_implementation == "sdpa"  # on CPU the per-window loop is the faster one
    assert use_packed_vision_attention(backend.model)
    assert visual.config._attn_implementation == PACKED_VISION_ATTENTION
    images = [*noise_images(2, seed=4), Image.new("RGB", (448, 476), "red"), Image.new("RGB", (476, 448), "blue")]
    inputs = AutoProcessor.from_pretrained(checkpoints["qwen2.5-vl"]).image_processor(images=images, return_tensors="pt")
    # windows take the padded single call; whole images (full-attention blocks) average over 512
    # patches here, so they take the one-call-per-image path
    assert inputs["image_grid_thw"].prod(-1).float().mean() >= 512

    def features():
        with torch.inference_mode():
            output = visual(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
        return getattr(output, "pooler_output", output)

    packed = features()
    assert not use_packed_vision_attention(backend.model, False)
    assert visual.config._attn_implementation == "sdpa"
    torch.testing.assert_close(packed, features(), rtol=1e-5, atol=1e-5)
    for other in ("qwen2-vl", "qwen3-vl"):  # towers without windows keep transformers' own path
        model = HFBackend.load(checkpoints[other], get_family(other), device="cpu").model
        assert not use_packed_vision_attention(model)
        assert model.config.vision_config._attn_implementation == "sdpa"


def test_hf_sampling_options_reach_generation(backends):
    backend = backends["qwen3-vl"]
    requests = mixed_requests("qwen3-vl", noise_images(3, seed=7))
    greedy = [g.text for g in backend.generate(requests, GenerationOptions(max_new_tokens=8))]
    top1 = [g.text for g in backend.generate(requests, GenerationOptions(max_new_tokens=8, do_sample=True, top_k=1, seed=3))]
    assert top1 == greedy  # sampling from the single most likely token is greedy decoding
    hot = GenerationOptions(max_new_tokens=8, do_sample=True, temperature=50.0, seed=3)
    first, again = ([g.text for g in backend.generate(requests, hot)] for _ in range(2))
    assert first == again and first != greedy  # the seed repeats; the temperature reached the sampler


def test_weights_missing_from_a_checkpoint_are_named_in_one_warning(checkpoints, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    folder = _broken_copy(checkpoints["qwen3-vl"], tmp_path / "Qwen3-VL-partial")
    weights = load_file(folder / "model.safetensors")
    dropped = sorted(k for k in weights if k.endswith("mlp.down_proj.weight"))[0]
    del weights[dropped]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="vlground"):
        HFBackend.load(folder, get_family("qwen3-vl"), device="cpu")
    [record] = [r for r in caplog.records if "missing from the checkpoint" in r.getMessage()]
    assert "1 weights are missing" in record.getMessage() and "down_proj" in record.getMessage()
