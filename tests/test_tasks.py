"""The task layer over a scripted backend: prompts in, answers parsed in the frame the model saw."""
import logging

import pytest
import torch
from PIL import Image

from vlground.families import get_family
from vlground.models.base import Backend, Generation, GenerationOptions, Request, plan_batches
from vlground.prompts import build_prompt
from vlground.tasks import Model


class Scripted(Backend):
    """Answers every request with `answer(request)`; records the batches it was given."""

    def __init__(self, family, answer, input_size=None, oom_above=None):
        self.family = get_family(family)
        self.answer = answer
        self.input_size = input_size
        self.oom_above = oom_above
        self.batches = []

    def _generate_batch(self, requests, options):
        if self.oom_above is not None and len(requests) > self.oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.batches.append([r.prompt.text for r in requests])
        return [Generation(self.answer(r), self.input_size) for r in requests]


def test_qwen25_answer_is_read_in_the_input_size_the_processor_produced():
    # the processor fed 868x1400 for an 870x1398 image; the model's box is in those pixels
    backend = Scripted("qwen2.5-vl", lambda r: '```json\n[{"bbox_2d": [434, 700, 868, 1400], "label": "x"}]\n```', (868, 1400))
    result = Model(backend).ground(Image.new("RGB", (870, 1398)), "x")
    assert result.detections[0].box == pytest.approx((435.0, 699.0, 870.0, 1398.0))


def test_base_model_answer_continues_the_prompt():
    backend = Scripted("qwen-vl", lambda r: "(100,200),(300,400)</box>")
    result = Model(backend).ground(Image.new("RGB", (1000, 500)), "the dog")
    assert backend.batches == [["<img></img><ref>the dog</ref><box>"]]
    assert result.detections[0].label == "the dog"
    assert result.detections[0].box == (100.0, 100.0, 300.0, 200.0)


def test_one_image_many_phrases_and_mismatch():
    backend = Scripted("qwen3-vl", lambda r: '[{"bbox_2d": [0, 0, 500, 500]}]')
    model = Model(backend)
    img = Image.new("RGB", (100, 100))
    results = model.ground(img, ["a", "b", "c"])
    assert len(results) == 3 and all(r.detections[0].box == (0.0, 0.0, 50.0, 50.0) for r in results)
    assert len(model.ground([img, img], "a")) == 2
    with pytest.raises(ValueError, match="one per image"):
        model.ground([img, img], ["a", "b", "c"])


def test_detect_on_a_base_model_asks_once_per_category_and_merges():
    backend = Scripted("qwen-vl", lambda r: "(0,0),(10,10)</box><box>(20,20),(30,30)</box>")
    result = Model(backend).detect(Image.new("RGB", (1000, 1000)), ["cat", "dog"])
    assert [d.label for d in result.detections] == ["cat", "cat", "dog", "dog"]


def test_exif_orientation_is_applied_before_anything(tmp_path):
    path = tmp_path / "r.jpg"
    img = Image.new("RGB", (400, 200))
    exif = img.getexif()
    exif[0x0112] = 8
    img.save(path, exif=exif)
    backend = Scripted("qwen2-vl", lambda r: "<|box_start|>(0,0),(1000,1000)<|box_end|>")
    result = Model(backend).ground(str(path), "all")
    assert result.image_size == (200, 400) and result.detections[0].box == (0.0, 0.0, 200.0, 400.0)


def test_out_of_memory_splits_the_batch_and_loses_nothing(caplog):
    backend = Scripted("qwen3-vl", lambda r: r.prompt.text, oom_above=2)
    images = [Image.new("RGB", (10 * (i + 1), 10)) for i in range(7)]
    with caplog.at_level(logging.WARNING, logger="vlground"):
        results = Model(backend).ask(images, [f"q{i}" for i in range(7)], batch_size=8)
    assert [r.text.split("\n")[0] for r in results] == [f"q{i}" for i in range(7)]
    assert max(len(b) for b in backend.batches) <= 2
    assert "out of memory" in caplog.text


def test_out_of_memory_on_one_image_says_what_to_do():
    backend = Scripted("qwen3-vl", lambda r: "", oom_above=0)
    with pytest.raises(MemoryError, match="max-pixels"):
        backend.generate([Request(Image.new("RGB", (8, 8)), build_prompt("read_text", "qwen3-vl"))], GenerationOptions())


def test_batches_group_similar_sizes():
    reqs = [Request(Image.new("RGB", (s, s)), None) for s in (500, 10, 400, 20, 300)]
    assert plan_batches(reqs, 2) == [[1, 3], [4, 2], [0]]


def test_a_fine_tune_under_another_name_is_told_by_its_config_before_the_weights_are_fetched(tiny_checkpoint, monkeypatch):
    import vlground.models as models

    fetched = []

    def resolve(name, patterns=models.resolve_checkpoint.__defaults__[0]):
        fetched.append((name, list(patterns)))
        return tiny_checkpoint("qwen2.5-vl")

    monkeypatch.setattr(models, "resolve_checkpoint", resolve)
    backend = models.load_backend("acme/receipts-finetune", device="cpu")
    assert backend.family.name == "qwen2.5-vl"
    assert fetched[0] == ("acme/receipts-finetune", models.CONFIG_PATTERNS)  # the config alone first
    assert "*.safetensors" in fetched[1][1]


def test_an_unsupported_model_is_refused_before_its_weights_are_fetched(tmp_path, monkeypatch):
    import json

    import vlground.models as models
    from vlground.families import UnknownFamilyError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    fetched = []
    monkeypatch.setattr(models, "resolve_checkpoint", lambda name, patterns=None: fetched.append(patterns) or tmp_path)
    with pytest.raises(UnknownFamilyError, match="llava"):
        models.load_backend("acme/llava-finetune", device="cpu")
    assert fetched == [models.CONFIG_PATTERNS]
