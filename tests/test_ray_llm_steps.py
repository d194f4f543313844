"""The Ray Data LLM steps: the family's prompt and the image as OpenAI chat messages, answers parsed
on the original image in the frame of the engine's processor settings, and configs that carry those
same settings to the engine."""
from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlground.core.geometry import model_input_size
from vlground.jobs.llm_steps import GroundingSteps
from vlground.prompts import build_prompt

QWEN25 = "Qwen/Qwen2.5-VL-7B-Instruct"


@pytest.fixture
def photo(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (500, 1000, 3), dtype=np.uint8)
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


def _image_of(messages: list[dict]) -> np.ndarray:
    url = messages[0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_preprocess_sends_the_family_prompt_and_the_exact_pixels(photo):
    path, pixels = photo
    steps = GroundingSteps(QWEN25, "detect", categories=("car", "person"), max_tokens=64)
    row = steps.preprocess_vllm({"path": str(path), "id": 7})
    assert row["messages"][0]["role"] == "user"
    assert row["messages"][0]["content"][1]["text"] == build_prompt("detect", QWEN25, categories=["car", "person"]).text
    np.testing.assert_array_equal(_image_of(row["messages"]), pixels)
    assert (row["width"], row["height"], row["id"]) == (1000, 500, 7)
    assert row["sampling_params"] == {"temperature": 0.0, "max_tokens": 64, "skip_special_tokens": False}
    http = steps.preprocess_http({"image": path.read_bytes()}, served_model="served-name")
    assert http["payload"]["model"] == "served-name" and http["payload"]["messages"] == row["messages"]
    assert "image" not in http  # the bytes are in the payload, not carried on twice


def test_postprocess_reads_boxes_in_the_engines_frame():
    """Qwen2.5-VL writes pixels of the resized input: the same answer lands elsewhere when the engine
    resized to a smaller max_pixels, and the steps must know which."""
    small = GroundingSteps(QWEN25, "detect", categories=("car",), max_pixels=100_000)
    width, height = model_input_size("qwen2.5-vl", (1000, 500), max_pixels=100_000)
    answer = json.dumps([{"bbox_2d": [0, 0, width // 2, height], "label": "car"}])
    row = {"path": "wide.png", "width": 1000, "height": 500, "http_response": {"choices": [{"message": {"content": answer}}]},
           "payload": {"model": "x"}}
    out = small.postprocess(row)
    (found,) = json.loads(out["detections"])
    assert found["box"] == pytest.approx([0, 0, 1000 * (width // 2) / width, 500])
    assert set(out) == {"path", "width", "height", "detections", "text", "raw"}
    default = GroundingSteps(QWEN25, "detect", categories=("car",)).postprocess({**row})
    assert json.loads(default["detections"])[0]["box"] != found["box"]  # the frame matters
    qwen3 = GroundingSteps("Qwen/Qwen3-VL-8B-Instruct", "ground", phrase="the car")
    vllm_row = {"generated_text": '[{"bbox_2d": [500, 0, 1000, 1000], "label": "car"}]', "width": 1000, "height": 500}
    assert json.loads(qwen3.postprocess(vllm_row)["detections"])[0]["box"] == [500.0, 0.0, 1000.0, 500.0]


def test_a_thinking_checkpoint_gets_its_switch_its_budgets_and_the_answers_box(photo):
    """Qwen3.5 thinks by default: the template is told (vLLM's chat-template stage, the HTTP request),
    the reasoning budget comes on top of the answer's, and the box is the answer's, not the draft's."""
    from vlground.testing.forced import with_reasoning

    path, _ = photo
    steps = GroundingSteps("Qwen/Qwen3.5-9B", "ground", phrase="the car", max_tokens=64, max_thinking_tokens=100)
    assert steps.preprocess_vllm({"path": str(path)})["sampling_params"]["max_tokens"] == 164
    assert steps.vllm_config().chat_template_stage["chat_template_kwargs"] == {"enable_thinking": True}
    http = steps.preprocess_http({"path": str(path)})["payload"]
    assert http["chat_template_kwargs"] == {"enable_thinking": True} and http["max_tokens"] == 164
    off = GroundingSteps("Qwen/Qwen3.5-9B", "ground", phrase="the car", max_tokens=64, thinking="off")
    assert off.preprocess_http({"path": str(path)})["payload"]["chat_template_kwargs"] == {"enable_thinking": False}
    assert "chat_template_kwargs" not in GroundingSteps(QWEN25, "ground", phrase="x").preprocess_http({"path": str(path)})["payload"]
    final, draft = '[{"bbox_2d": [500, 0, 1000, 1000], "label": "car"}]', '[{"bbox_2d": [0, 0, 10, 10], "label": "car"}]'
    out = steps.postprocess({"generated_text": with_reasoning(final, draft), "width": 1000, "height": 500})
    assert json.loads(out["detections"])[0]["box"] == [500.0, 0.0, 1000.0, 500.0] and "0, 0, 10, 10" in out["reasoning"]
    cut = steps.postprocess({"generated_text": "Let me look at the car... " + draft, "width": 1000, "height": 500})
    assert json.loads(cut["detections"]) == [] and cut["reasoning_cut_short"]  # no closer: no answer came
    served = {"http_response": {"choices": [{"message": {"content": final, "reasoning_content": "a draft: " + draft}}]},
              "width": 1000, "height": 500, "payload": {}}
    out = steps.postprocess(served)
    assert json.loads(out["detections"])[0]["box"] == [500.0, 0.0, 1000.0, 500.0] and out["reasoning"] == "a draft: " + draft


def test_configs_carry_the_same_processor_settings():
    steps = GroundingSteps(QWEN25, "detect", categories=("car",), max_pixels=1_003_520)
    vllm = steps.vllm_config(workers=4, gpus_per_worker=2, batch_size=32)
    assert vllm.model_source == QWEN25 and vllm.concurrency == 4 and vllm.batch_size == 32
    assert vllm.engine_kwargs["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 1_003_520}
    assert vllm.engine_kwargs["tensor_parallel_size"] == 2 and vllm.engine_kwargs["limit_mm_per_prompt"] == {"image": 1}
    http = steps.http_config("http://127.0.0.1:8000/v1/", concurrency=2, api_key="k")
    assert http.url == "http://127.0.0.1:8000/v1/chat/completions" and http.headers == {"Authorization": "Bearer k"}
    assert GroundingSteps("Qwen/Qwen-VL-Chat", "caption").processor_kwargs() == {}  # squashed to 448x448: no bounds


@pytest.mark.parametrize("family, name", [("qwen2.5-vl", "Qwen2.5-VL-tiny"), ("qwen3.5", "Qwen3.5-tiny")])
def test_http_processor_against_a_real_transformers_server(ray_cluster, photo, tmp_path, tiny_checkpoint, family, name):
    """Ray Data LLM's HTTP processor, our steps around it, a real `transformers serve` with a tiny
    Qwen2.5-VL, and a tiny Qwen3.5 that reasons first: each row comes back parsed on its image, with
    the answer vlground's own server runtime gets from the same server for the same prompt and budgets."""
    import ray.data
    from ray.data.llm import build_processor

    import vlground
    from vlground.testing.serve import transformers_server

    path, _ = photo
    small = tmp_path / "small.png"
    Image.new("RGB", (96, 64), (200, 30, 30)).save(small)
    served = tmp_path / name  # the name carries the family, as a hub id does
    shutil.copytree(tiny_checkpoint(family), served)
    config = served / "processor_config.json"  # the server resizes to at most 200,000 pixels: so must the steps
    settings = json.loads(config.read_text())
    settings["image_processor"]["size"]["longest_edge"] = 200_000
    config.write_text(json.dumps(settings))
    folder = str(served)
    steps = GroundingSteps(folder, "detect", categories=("car",), max_tokens=12, max_pixels=200_000, max_thinking_tokens=4)
    with transformers_server(tmp_path, [served]) as server:
        processor = build_processor(steps.http_config(server.url, concurrency=1, batch_size=2),
                                    preprocess=steps.preprocess_http,
                                    postprocess=steps.postprocess)
        rows = {Path(r["path"]).name: r for r in processor(ray.data.from_items([{"path": str(p)} for p in (path, small)])).take_all()}
        model = vlground.load_model(server.url, served_model=folder, max_pixels=200_000)
        direct = model.detect([str(path), str(small)], ["car"], max_new_tokens=12, max_thinking_tokens=4)
    assert sorted(rows) == ["small.png", "wide.png"]
    assert (rows["wide.png"]["width"], rows["wide.png"]["height"]) == (1000, 500)
    for image, answer in zip(("wide.png", "small.png"), direct):
        assert rows[image]["raw"] == answer.raw
        assert json.loads(rows[image]["detections"]) == [d.to_dict() for d in answer.detections]
        if family == "qwen3.5":
            assert rows[image]["reasoning"] == answer.reasoning and rows[image]["reasoning_cut_short"] == answer.reasoning_cut_short
