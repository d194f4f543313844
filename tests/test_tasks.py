"""The task layer over a scripted backend: prompts in, answers parsed in the frame the model saw."""
import logging

import pytest
import torch
from PIL import Image

from vlground.core.families import get_family
from vlground.core.options import GenerationOptions
from vlground.models.base import Backend, Generation, Request
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

    def _generate_batch(self, requests, budgets, options):
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
    from vlground.core.families import UnknownFamilyError

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    fetched = []
    monkeypatch.setattr(models, "resolve_checkpoint", lambda name, patterns=None: fetched.append(patterns) or tmp_path)
    with pytest.raises(UnknownFamilyError, match="llava"):
        models.load_backend("acme/llava-finetune", device="cpu")
    assert fetched == [models.CONFIG_PATTERNS]


class Recording(Scripted):
    """A Scripted backend that also keeps the budgets and options each batch was given."""

    def __init__(self, family):
        super().__init__(family, lambda r: "")
        self.calls = []

    def _generate_batch(self, requests, budgets, options):
        self.calls.append((list(budgets), options))
        return super()._generate_batch(requests, budgets, options)


def test_generation_options_reach_the_backend_as_one_object_or_as_keywords():
    import vlground

    assert vlground.GenerationOptions is GenerationOptions and vlground.LoadOptions.__module__ == "vlground.core.options"
    img = Image.new("RGB", (20, 20))
    chosen = GenerationOptions(max_new_tokens=5, do_sample=True, temperature=0.7, top_p=0.9, batch_size=2)
    as_object, as_keywords = Recording("qwen3-vl"), Recording("qwen3-vl")
    Model(as_object).ask([img] * 3, "q", options=chosen)
    Model(as_keywords).ask([img] * 3, "q", max_new_tokens=5, do_sample=True, temperature=0.7, top_p=0.9, batch_size=2)
    assert as_object.calls == as_keywords.calls == [([5, 5], chosen), ([5], chosen)]
    # keywords on top of an object override its fields
    Model(as_object).ask(img, "q", options=chosen, max_new_tokens=9)
    assert as_object.calls[-1] == ([9], GenerationOptions(max_new_tokens=9, do_sample=True, temperature=0.7, top_p=0.9, batch_size=2))


def test_max_new_tokens_is_resolved_once_from_the_task_unless_set():
    backend = Recording("qwen-vl")
    model = Model(backend)
    img = Image.new("RGB", (20, 20))
    model.ground(img, "the dog")
    model.caption(img)
    model.ground(img, "the dog", max_new_tokens=3)
    assert [budgets for budgets, _ in backend.calls] == [[28], [512], [3]]


def test_bad_options_are_refused_naming_the_option():
    from vlground.core.options import LoadOptions, OptionsError

    model = Model(Recording("qwen3-vl"))
    img = Image.new("RGB", (20, 20))
    with pytest.raises(OptionsError, match="unknown option.*max_tokens.*valid: .*max_new_tokens"):
        model.ask(img, "q", max_tokens=3)
    with pytest.raises(OptionsError, match="batch_size must be an integer >= 1"):
        model.ask(img, "q", batch_size=0)
    with pytest.raises(OptionsError, match="temperature must be > 0"):
        GenerationOptions(do_sample=True, temperature=0)
    with pytest.raises(OptionsError, match="top_p"):
        GenerationOptions(top_p=1.5)
    with pytest.raises(OptionsError, match="min_pixels <= max_pixels"):
        LoadOptions(min_pixels=10, max_pixels=5)
    with pytest.raises(OptionsError, match="unknown dtype"):
        LoadOptions(dtype="int3")
    with pytest.raises(OptionsError, match="merge_adapter=True needs an adapter"):
        LoadOptions(merge_adapter=True)
    assert "sk-secret" not in repr(LoadOptions(api_key="sk-secret"))


def test_load_options_reach_the_transformers_backend_as_one_object_or_as_keywords(tiny_checkpoint, monkeypatch):
    import vlground
    from vlground.core.options import LoadOptions

    path = tiny_checkpoint("qwen2.5-vl")
    by_object = vlground.load_model(path, LoadOptions(device="cpu", min_pixels=5000, max_pixels=60000))
    by_keywords = vlground.load_model(path, device="cpu", min_pixels=5000, max_pixels=60000)
    for model in (by_object, by_keywords):
        assert dict(model.backend.processor.image_processor.size) == {"shortest_edge": 5000, "longest_edge": 60000}
    import vlground.models.hf as hf

    seen = []  # the adapter itself is vlground.training.finetune's (tests/test_finetune.py); here: the options reach it
    monkeypatch.setattr(hf, "apply_adapter", lambda model, options, family, processor: seen.append(
        (options.adapter, options.merge_adapter, family.name, dict(processor.image_processor.size))) or model)
    vlground.load_model(path, device="cpu", max_pixels=60000, adapter="my-lora", merge_adapter=True)
    assert seen == [("my-lora", True, "qwen2.5-vl", {"shortest_edge": 3136, "longest_edge": 60000})]


def test_the_runtime_is_chosen_apart_from_the_family(tiny_checkpoint):
    import vlground.models as models
    from vlground.core.families import FAMILIES
    from vlground.core.options import OptionsError

    assert FAMILIES["qwen2.5-vl"].runtimes == ("transformers", "server")
    assert FAMILIES["qwen-vl"].runtimes == ("qwen-vl-native",)  # a base model has no chat server
    assert models.load_backend(tiny_checkpoint("qwen3-vl"), runtime="transformers", device="cpu").runtime == "transformers"
    with pytest.raises(OptionsError, match="qwen3-vl runs locally on transformers, not qwen-vl-native"):
        models.load_backend(tiny_checkpoint("qwen3-vl"), runtime="qwen-vl-native")
    with pytest.raises(OptionsError, match="needs the server's API base URL"):
        models.load_backend(tiny_checkpoint("qwen3-vl"), runtime="server")
    # the runtime names LoadOptions accepts (core, below models) are the runtimes models can load, and every
    # family names only those
    from vlground.core.options import RUNTIMES

    assert tuple(models.RUNTIMES) == RUNTIMES
    assert {runtime for family in FAMILIES.values() for runtime in family.runtimes} <= set(RUNTIMES)
    for runtime in models.RUNTIMES:
        assert models.runtime_class(runtime).runtime == runtime
        assert models.runtime_class(runtime).generate is Backend.generate  # one batching mechanism for all


def test_with_errors_recorded_a_failing_input_gets_its_exception_and_the_rest_their_answers(caplog):
    def answer(request):
        if "q2" in request.prompt.text:
            raise RuntimeError("the image at fault")
        return '[{"bbox_2d": [0, 0, 500, 500]}]'

    backend = Scripted("qwen3-vl", answer)
    img = Image.new("RGB", (100, 100))
    with caplog.at_level(logging.WARNING, logger="vlground"):
        results = Model(backend).ask(img, [f"q{i}" for i in range(5)], batch_size=4, errors="record")
    assert [type(r).__name__ for r in results] == ["Result", "Result", "RuntimeError", "Result", "Result"]
    assert str(results[2]) == "the image at fault"
    assert all(r.detections[0].box == (0.0, 0.0, 50.0, 50.0) for i, r in enumerate(results) if i != 2)
    assert "retrying its requests one at a time" in caplog.text  # its batch mates were answered again, alone
    with pytest.raises(RuntimeError, match="the image at fault"):
        Model(backend).ask(img, [f"q{i}" for i in range(5)])
    base = Model(Scripted("qwen-vl", lambda r: (_ for _ in ()).throw(OSError("down")) if "dog" in r.prompt.text
                          else "(0,0),(10,10)</box>"))
    [merged] = base.detect([img], ["cat", "dog"], errors="record")  # one category failed: the image's record is the error
    assert isinstance(merged, OSError)
    with pytest.raises(ValueError, match="errors must be one of raise, record"):
        Model(backend).ask(img, "q", errors="ignore")


def test_a_device_that_is_not_here_is_refused_before_the_weights_are_read(tiny_checkpoint, monkeypatch):
    import vlground
    from vlground.core.device import DeviceUnavailableError

    read = []
    import transformers

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", lambda *a, **k: read.append(a))
    for family in ("qwen2.5-vl", "qwen-vl-chat"):
        with pytest.raises(DeviceUnavailableError, match="available: cpu"):
            vlground.load_model(tiny_checkpoint(family), device="cuda:99")
    with pytest.raises(DeviceUnavailableError, match="not a device name"):
        vlground.load_model(tiny_checkpoint("qwen3-vl"), device="gpu")
    assert read == []


def test_results_keep_their_image_and_urls_are_images_too(tmp_path):
    import functools
    import http.server
    import threading

    Image.new("RGB", (120, 60), "red").save(tmp_path / "remote.png")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/remote.png"
        model = Model(Scripted("qwen3-vl", lambda r: '[{"bbox_2d": [0, 0, 500, 500]}]'))
        local = Image.new("RGB", (100, 100), "blue")
        from_url, from_pil = model.ground([url, local], "x")
        assert from_url.image_size == (120, 60) and from_url.detections[0].box == (0.0, 0.0, 60.0, 30.0)
        assert from_url.image.getpixel((0, 0)) == (255, 0, 0) and from_pil.image.getpixel((0, 0)) == (0, 0, 255)
        merged = Model(Scripted("qwen-vl", lambda r: "(0,0),(10,10)</box>")).detect(local, ["cat", "dog"])
        assert merged.image.size == (100, 100)
        from vlground.io.images import ImageLoadError

        with pytest.raises(ImageLoadError, match="missing.png"):
            model.ground(url.replace("remote", "missing"), "x")
    finally:
        server.shutdown()
        server.server_close()
