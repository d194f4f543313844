"""The task layer: a loaded model answers ground / detect / caption / read / spot / ask, and every
answer comes back parsed into a `Result` on the ORIGINAL image.

Each task method takes one image or a list (paths, PIL images or arrays; EXIF orientation applied)
and returns one Result or a list in the same order. Answers are parsed in the frame the model really
saw: for Qwen2.5-VL the input size comes from the processor's `image_grid_thw`, not from a guess."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlground.families import DEFAULT_MODEL, Family
from vlground.grammar import parse
from vlground.imageio import load_image
from vlground.models import load_backend
from vlground.models.base import Backend, GenerationOptions, Request
from vlground.prompts import Prompt, build_prompt
from vlground.results import Result

ImageInput = str | Path | Image.Image | np.ndarray


class Model:
    """A model of one family with task methods. Options shared by the methods: `batch_size` (images
    per forward pass; halved automatically on out-of-memory), `max_new_tokens` (the task's default
    otherwise) and `progress` (called with the number of answers just finished)."""

    def __init__(self, backend: Backend):
        self.backend = backend

    @property
    def family(self) -> Family:
        return self.backend.family

    def ground(self, images: ImageInput | Sequence[ImageInput], phrases: str | Sequence[str], **options: Any):
        """The region each referring expression names: one expression per image, one image with
        several expressions (one answer each), or one expression for every image."""
        return self._run("ground", images, "phrase", phrases, **options)

    def detect(self, images: ImageInput | Sequence[ImageInput], categories: str | Sequence[str], **options: Any):
        """Every instance of the categories, in one answer per image."""
        cats = [categories] if isinstance(categories, str) else list(categories)
        if self.family.chat:
            return self._run("detect", images, "categories", [cats], **options)
        # a base model completes "<ref>{category}</ref><box>": one completion per category, merged
        per_category = [self._run("detect", images, "categories", [[c]], **options) for c in cats]
        if isinstance(per_category[0], Result):
            return _merge(per_category)
        return [_merge(list(rs)) for rs in zip(*per_category)]

    def caption(self, images: ImageInput | Sequence[ImageInput], grounded: bool = True, **options: Any):
        """A description of each image; with grounded=True the objects it mentions come with boxes."""
        return self._run("grounded_caption" if grounded else "caption", images, **options)

    def read_text(self, images: ImageInput | Sequence[ImageInput], **options: Any):
        """All the text in each image, as the answer's text."""
        return self._run("read_text", images, **options)

    def spot_text(self, images: ImageInput | Sequence[ImageInput], **options: Any):
        """Each line of text with its box or quad (Detection.text holds the line)."""
        return self._run("spot_text", images, **options)

    def ask(self, images: ImageInput | Sequence[ImageInput], questions: str | Sequence[str], **options: Any):
        """Short answers to questions about the images (Result.text)."""
        return self._run("ask", images, "question", questions, **options)

    def run(
        self,
        images: Sequence[Image.Image],
        prompts: Sequence[Prompt],
        *,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Result]:
        """Answers for loaded images and prepared prompts, pairwise, parsed on each image."""
        requests = [Request(image=i, prompt=p) for i, p in zip(images, prompts, strict=True)]
        generation = GenerationOptions(max_new_tokens=max_new_tokens, batch_size=batch_size)
        answers = self.backend.generate(requests, generation, progress)
        return [
            parse(p.response_prefix + a.text, self.family, i.size, a.input_size) for i, p, a in zip(images, prompts, answers)
        ]

    def _run(self, task: str, images: ImageInput | Sequence[ImageInput], arg: str | None = None, values: Any = None, **options: Any):
        """One request per image and value, a single image or value standing for all."""
        single = not isinstance(images, (list, tuple))
        loaded = [load_image(i) for i in ([images] if single else images)]
        if arg is None:
            prompts = [build_prompt(task, self.family)] * len(loaded)
        else:
            column = [values] if isinstance(values, str) else list(values)
            single = single and len(column) == 1
            n = max(len(loaded), len(column))
            if len(loaded) not in (1, n) or len(column) not in (1, n):
                raise ValueError(f"{len(loaded)} images but {len(column)} values of {arg}: give one per image, or one for all")
            loaded = loaded * n if len(loaded) == 1 else loaded
            prompts = [build_prompt(task, self.family, **{arg: v}) for v in (column * n if len(column) == 1 else column)]
        results = self.run(loaded, prompts, **options)
        return results[0] if single else results


def _merge(results: list[Result]) -> Result:
    return Result(
        detections=[d for r in results for d in r.detections],
        text="\n".join(r.text for r in results if r.text),
        image_size=results[0].image_size,
        raw="\n".join(r.raw for r in results),
    )


def load_model(
    name_or_path: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    attn_implementation: str | None = None,
    served_model: str | None = None,
) -> Model:
    """Load a model by hub id or local folder (default: $VLGROUND_MODEL, else DEFAULT_MODEL).

    device "auto" picks CUDA when available; dtype "auto" is bfloat16 on a GPU and float32 on CPU.
    min/max_pixels bound the Qwen2-VL-style processors' resizing (more pixels: finer boxes, more
    memory). Remote code is never run: every family is implemented natively or by transformers.

    An http(s):// URL uses a model on an OpenAI-compatible server (vLLM, SGLang): `served_model` is
    its name there (default: the server's first model), and min/max_pixels must match the server's
    processor settings, since Qwen2.5-VL's boxes are read in the frame the server resized to."""
    name = name_or_path or os.environ.get("VLGROUND_MODEL") or DEFAULT_MODEL
    return Model(load_backend(name, device, dtype, min_pixels, max_pixels, attn_implementation, served_model))
