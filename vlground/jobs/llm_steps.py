"""Qwen-VL grounding on a vLLM fleet through Ray Data LLM (`ray.data.llm`): the steps around Ray's
LLM stage, and the processor configs.

    from ray.data.llm import build_processor
    steps = GroundingSteps("Qwen/Qwen2.5-VL-7B-Instruct", "detect", categories=["car", "person"])
    processor = build_processor(steps.vllm_config(workers=4), preprocess=steps.preprocess_vllm,
                                postprocess=steps.postprocess)
    boxes = processor(ray.data.from_items([{"path": p} for p in paths]))

`preprocess_*` turns a row holding an image (`path`: a file, URL or pyarrow URI; or `image`: bytes)
into the family's prompt and the image as OpenAI-style chat messages; `postprocess` parses the answer
into detections in pixels of the ORIGINAL image. Qwen2.5-VL writes pixels of the image as its
processor resized it, so the parse must use the engine's own min/max pixels: one `GroundingSteps`
holds them and puts the same values into the engine config (vLLM's `mm_processor_kwargs`); for a
server you did not start, give the values it runs with. Rows keep their other columns; results
travel as JSON text (`detections`), since their shapes are not one Arrow schema.

A checkpoint that reasons first (Qwen3.5, *-Thinking: told from `model`'s name) gets `thinking` as
the chat template's `enable_thinking` (vLLM's chat-template stage, or `chat_template_kwargs` in the
HTTP request) and `max_thinking_tokens` on top of the answer's budget; its answer is parsed from
after the reasoning (`reasoning` and `reasoning_cut_short` columns), a server's `reasoning_content`
included."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from vlground.core.families import Family, checkpoint_thinking, get_family
from vlground.core.options import GenerationOptions
from vlground.grammar import parse
from vlground.prompts import build_prompt


@dataclass(frozen=True)
class GroundingSteps:
    """One task for one served model. `model` is the hub id the engine loads (its family says the
    prompt, dialect and frame); `task` one of detect, ground, spot_text, read_text, caption, ask, with
    `categories`, `phrase` or `question` as the task needs; `min_pixels`/`max_pixels` the engine
    processor's bounds (None: the released checkpoint's); `max_tokens` per answer (None: the task's);
    `thinking` ("auto", "on", "off") and `max_thinking_tokens` as in GenerationOptions."""

    model: str
    task: str = "detect"
    categories: tuple[str, ...] | None = None
    phrase: str | None = None
    question: str | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    max_tokens: int | None = None
    max_image_pixels: int | None = None
    thinking: str = "auto"
    max_thinking_tokens: int | None = None

    def __post_init__(self) -> None:
        GenerationOptions(thinking=self.thinking, max_thinking_tokens=self.max_thinking_tokens)  # checked once

    @property
    def thinks(self) -> bool:
        """Whether the engine's answers start with reasoning (the template opens it)."""
        from vlground.models.thinking import thinks

        return thinks(checkpoint_thinking(self.family, self.model), self.thinking, self.model)

    def _max_tokens(self) -> int:
        """The answer's budget, and the reasoning's on top where the model thinks."""
        budget = self._prompt().max_new_tokens
        if self.thinks:
            budget += GenerationOptions(max_thinking_tokens=self.max_thinking_tokens).thinking_budget
        return budget

    def _template_kwargs(self) -> dict[str, Any]:
        """`enable_thinking` for the chat template, where it can matter."""
        from vlground.models.thinking import template_kwargs

        return template_kwargs(checkpoint_thinking(self.family, self.model), self.thinking, self.thinks)

    @property
    def family(self) -> Family:
        return get_family(self.model)

    def _prompt(self):
        categories = list(self.categories) if self.categories else None
        return build_prompt(self.task, self.family, phrase=self.phrase, categories=categories, question=self.question,
                            max_new_tokens=self.max_tokens)

    def _messages(self, row: dict[str, Any]) -> tuple[list[dict], dict[str, Any]]:
        """The chat turn for `row`'s image, and the columns that carry the image's size on."""
        from vlground.io.images import load_image

        if row.get("image") is not None:
            from PIL import Image

            image = load_image(Image.open(io.BytesIO(row["image"])), max_pixels=self.max_image_pixels)
        else:
            from vlground.io.sources import Source, load

            image = load(Source(str(row["path"])), max_pixels=self.max_image_pixels)
        from vlground.models.server import chat_messages  # inside: the server module needs the models extra

        # PNG, lossless: the engine sees the pixels we measured; the turn the server backend sends
        messages = chat_messages(image, self._prompt().text, "png")
        kept = {k: v for k, v in row.items() if k != "image"}
        return messages, {**kept, "width": image.width, "height": image.height}

    def preprocess_vllm(self, row: dict[str, Any]) -> dict[str, Any]:
        """A row for `vLLMEngineProcessorConfig`: `messages` and greedy `sampling_params`."""
        messages, kept = self._messages(row)
        # grounding tokens (Qwen2-VL's <|box_start|>) are special tokens: keep them in the text
        sampling = {"temperature": 0.0, "max_tokens": self._max_tokens(), "skip_special_tokens": False}
        return {**kept, "messages": messages, "sampling_params": sampling}

    def preprocess_http(self, row: dict[str, Any], served_model: str | None = None) -> dict[str, Any]:
        """A row for `HttpRequestProcessorConfig` (any OpenAI-compatible /chat/completions): the
        request body as `payload`, for the model served as `served_model` (default: `model`)."""
        messages, kept = self._messages(row)
        payload = {"model": served_model or self.model, "messages": messages, "max_tokens": self._max_tokens(),
                   "temperature": 0.0}
        if self._template_kwargs():
            payload["chat_template_kwargs"] = self._template_kwargs()
        return {**kept, "payload": payload}

    def postprocess(self, row: dict[str, Any]) -> dict[str, Any]:
        """The answer of either stage parsed on the original image: `detections` (JSON text, the
        schema of `vlground parse`), `text` and the answer as written (`raw`); the LLM stage's own
        columns are dropped, the row's others kept."""
        from vlground.models.server import chat_answer, served_input_size

        reasoning = None
        if "generated_text" in row:
            raw = row["generated_text"]
        else:
            raw, reasoning = chat_answer(row["http_response"], "the HTTP stage's server")
        size = (int(row["width"]), int(row["height"]))
        # parsed as the server backend parses: in the frame the engine's processor resized to
        input_size = served_input_size(self.family, size, self.min_pixels, self.max_pixels)
        result = parse(self._prompt().response_prefix + raw, self.family, size, input_size,
                       thinking="on" if self.thinks else self.thinking, reasoning=reasoning)
        engine_columns = {"messages", "sampling_params", "payload", "http_response", "generated_text", "generated_tokens",
                          "prompt", "prompt_token_ids", "num_generated_tokens", "num_input_tokens", "request_id",
                          "time_taken_llm", "params", "embeddings", "metrics"}
        kept = {k: v for k, v in row.items() if k not in engine_columns}
        detections = [d.to_dict() for d in result.detections]
        reasoned = {"reasoning": result.reasoning, "reasoning_cut_short": result.reasoning_cut_short} if self.thinks else {}
        return {**kept, "detections": json.dumps(detections, ensure_ascii=False), "text": result.text, "raw": raw, **reasoned}

    def processor_kwargs(self) -> dict[str, int]:
        """The engine processor's smart_resize bounds, the same values `postprocess` parses with."""
        fam = self.family
        if fam.patch_size is None:
            return {}
        return {"min_pixels": self.min_pixels or fam.min_pixels, "max_pixels": self.max_pixels or fam.max_pixels}

    def vllm_config(self, workers: int = 1, gpus_per_worker: int = 1, batch_size: int = 16,
                    max_model_len: int = 16384, **engine_kwargs: Any):
        """A `vLLMEngineProcessorConfig` for `workers` vLLM engines of `gpus_per_worker` GPUs each
        (tensor parallel), one image per prompt, the processor bounds of `processor_kwargs`. More
        pixels need a larger `max_model_len` (a 1280x960 image is about 1,600 visual tokens)."""
        from ray.data.llm import vLLMEngineProcessorConfig

        engine = {"limit_mm_per_prompt": {"image": 1}, "mm_processor_kwargs": self.processor_kwargs(),
                  "max_model_len": max_model_len, "tensor_parallel_size": gpus_per_worker, **engine_kwargs}
        return vLLMEngineProcessorConfig(model_source=self.model, engine_kwargs=engine, concurrency=workers,
                                         batch_size=batch_size,
                                         chat_template_stage={"enabled": True, "chat_template_kwargs": self._template_kwargs() or None},
                                         prepare_multimodal_stage={"enabled": True}, tokenize_stage={"enabled": True},
                                         detokenize_stage={"enabled": True})

    def http_config(self, base_url: str, concurrency: int = 1, batch_size: int = 8, api_key: str | None = None, **kwargs: Any):
        """An `HttpRequestProcessorConfig` posting to `base_url` + /chat/completions (base_url is the
        API base, e.g. http://host:8000/v1). The server's processor must run with `processor_kwargs`."""
        from ray.data.llm import HttpRequestProcessorConfig

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return HttpRequestProcessorConfig(url=base_url.rstrip("/") + "/chat/completions", headers=headers,
                                          concurrency=concurrency, batch_size=batch_size, **kwargs)
