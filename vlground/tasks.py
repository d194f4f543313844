"""The task layer: a loaded model answers ground / detect / caption / read / spot / ask, and every
answer comes back parsed into a `Result` on the ORIGINAL image.

Each task method takes one image or a list (paths, http(s) URLs, PIL images or arrays; EXIF
orientation applied) and returns one Result or a list in the same order, each holding the image it
was made on (`Result.image`). Answers are parsed in the frame the model really
saw: for Qwen2.5-VL the input size comes from the processor's `image_grid_thw`, not from a guess."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vlground.core.families import Family, chosen_model
from vlground.core.options import GenerationOptions, LoadOptions, with_overrides
from vlground.core.results import Detection, Result
from vlground.grammar import parse
from vlground.io.images import load_image
from vlground.io.sources import Source, is_url
from vlground.io.sources import load as load_source
from vlground.models import load_backend
from vlground.models.base import Backend, Generation, Request
from vlground.prompts import POINT_STYLES, Prompt, build_prompt, check_tool, point_prompt

ImageInput = str | Path | Image.Image | np.ndarray
Progress = Callable[[int], None] | None


class Model:
    """A model of one family with task methods. Each method takes `options` (a GenerationOptions:
    `batch_size`, images per forward pass, halved automatically on out-of-memory; `max_new_tokens`,
    the task's default otherwise; sampling) or the same fields as keywords, `progress` (called
    with the number of answers just finished) and `errors` ("raise" the first failure, or "record"
    it: see `run`)."""

    def __init__(self, backend: Backend):
        self.backend = backend

    @property
    def family(self) -> Family:
        return self.backend.family

    def ground(self, images: ImageInput | Sequence[ImageInput], phrases: str | Sequence[str],
               options: GenerationOptions | None = None, *, progress: Progress = None, errors: str = "raise",
               **keywords: Any):
        """The region each referring expression names: one expression per image, one image with
        several expressions (one answer each), or one expression for every image."""
        return self._run("ground", images, ("phrase", phrases), _options(options, keywords),
                         progress=progress, errors=errors)

    def detect(self, images: ImageInput | Sequence[ImageInput], categories: str | Sequence[str],
               options: GenerationOptions | None = None, *, progress: Progress = None, errors: str = "raise",
               **keywords: Any):
        """Every instance of the categories, in one answer per image."""
        cats = [categories] if isinstance(categories, str) else list(categories)
        generation = _options(options, keywords)
        if self.family.chat:
            return self._run("detect", images, ("categories", [cats]), generation, progress=progress, errors=errors)
        # a base model completes "<ref>{category}</ref><box>": one completion per category, merged
        per_category = [self._run("detect", images, ("categories", [[c]]), generation, progress=progress, errors=errors)
                        for c in cats]
        if not isinstance(per_category[0], list):
            return _merge(per_category)
        return [_merge(list(rs)) for rs in zip(*per_category)]

    def caption(self, images: ImageInput | Sequence[ImageInput], grounded: bool = True,
                options: GenerationOptions | None = None, *, progress: Progress = None, errors: str = "raise",
                **keywords: Any):
        """A description of each image; with grounded=True the objects it mentions come with boxes."""
        task = "grounded_caption" if grounded else "caption"
        return self._run(task, images, None, _options(options, keywords), progress=progress, errors=errors)

    def read_text(self, images: ImageInput | Sequence[ImageInput], options: GenerationOptions | None = None, *,
                  progress: Progress = None, errors: str = "raise", **keywords: Any):
        """All the text in each image, as the answer's text."""
        return self._run("read_text", images, None, _options(options, keywords), progress=progress, errors=errors)

    def spot_text(self, images: ImageInput | Sequence[ImageInput], options: GenerationOptions | None = None, *,
                  progress: Progress = None, errors: str = "raise", **keywords: Any):
        """Each line of text with its box or quad (Detection.text holds the line)."""
        return self._run("spot_text", images, None, _options(options, keywords), progress=progress, errors=errors)

    def ask(self, images: ImageInput | Sequence[ImageInput], questions: str | Sequence[str],
            options: GenerationOptions | None = None, *, progress: Progress = None, errors: str = "raise",
            **keywords: Any):
        """Short answers to questions about the images (Result.text)."""
        return self._run("ask", images, ("question", questions), _options(options, keywords),
                         progress=progress, errors=errors)

    def point(self, images: ImageInput | Sequence[ImageInput], targets: str | Sequence[str],
              options: GenerationOptions | None = None, *, style: str = "plain", tool: str = "computer_use",
              progress: Progress = None, errors: str = "raise", **keywords: Any):
        """Where to click for each target (an element, "the Submit button", or an instruction), one
        target per image, several on one image, or one for every image, as `ground` pairs them. Each
        Result holds one Detection: `point` (x, y) in pixels of the original image, `label` the
        target, `attributes["point_from"]` "point", or "box" where the model answered a box and its
        centre was taken; no detection where the answer held neither. style "plain" asks in the
        family's own words; "tool_call" through the computer-use tool of Qwen's cookbooks, told the
        screen size the model sees (Qwen2.5-VL and later; `tool` "computer_use" or "mobile_use"; see
        `vlground.prompts.point_prompt`)."""
        if style not in POINT_STYLES:
            raise ValueError(f"unknown point style {style!r}; styles: {', '.join(POINT_STYLES)}")
        check_tool(style, tool)
        loaded, column, single = _pairs(images, targets, "targets")
        prompts = [point_prompt(self.family, target, style=style, tool=tool,
                                input_size=self.backend.input_size(image.size) if style == "tool_call" else None)
                   for image, target in zip(loaded, column)]
        results = self.run(loaded, prompts, _options(options, keywords), progress=progress, errors=errors)
        results = [r if isinstance(r, Exception) else click_point(r, t) for r, t in zip(results, column)]
        return results[0] if single else results

    def run(self, images: Sequence[Image.Image], prompts: Sequence[Prompt], options: GenerationOptions | None = None,
            *, progress: Progress = None, errors: str = "raise", **keywords: Any) -> list[Result | Exception]:
        """Answers for loaded images and prepared prompts, pairwise, parsed on each image. With
        errors="record", an input whose request failed gets the exception in its place (as
        asyncio.gather's return_exceptions does) and the others go on."""
        requests = [Request(image=i, prompt=p) for i, p in zip(images, prompts, strict=True)]
        options = _options(options, keywords)
        answers = self.backend.generate(requests, options, progress, errors=errors)
        return [a.error if a.error is not None else self._parsed(i, p, a, options.thinking)
                for i, p, a in zip(images, prompts, answers)]

    def _parsed(self, image: Image.Image, prompt: Prompt, answer: Generation, thinking: str = "auto") -> Result:
        """The answer on the image it was made on (kept on the Result, which displays itself with it).
        Geometry comes from the answer alone: an answer written after a reasoning block the prompt
        opened is parsed with thinking "on" (no closer: reasoning cut short, no detections), else as
        the caller asked; reasoning a server returned apart goes into `Result.reasoning`."""
        result = parse(prompt.response_prefix + answer.text, self.family, image.size, answer.input_size,
                       scale=prompt.scale, thinking="on" if answer.thinking else thinking, reasoning=answer.reasoning)
        result.image = image
        return result

    def _run(self, task: str, images: ImageInput | Sequence[ImageInput], values: tuple[str, Any] | None,
             options: GenerationOptions, *, progress: Progress, errors: str):
        """One request per image and value of `values` (the prompt field's name, and one value or a
        list), a single image or value standing for all."""
        if values is None:
            single = not isinstance(images, (list, tuple))
            loaded = [_load(i) for i in ([images] if single else images)]
            prompts = [build_prompt(task, self.family)] * len(loaded)
        else:
            arg, given = values
            loaded, column, single = _pairs(images, given, arg)
            prompts = [build_prompt(task, self.family, **{arg: v}) for v in column]
        results = self.run(loaded, prompts, options, progress=progress, errors=errors)
        return results[0] if single else results


def _pairs(images: ImageInput | Sequence[ImageInput], given: str | Sequence[str], arg: str) -> tuple[list, list, bool]:
    """(images, values, single): one value per image, one image repeated for several values, or one
    value for every image, loaded and paired; `single` when one image and one value were given."""
    single = not isinstance(images, (list, tuple))
    loaded = [_load(i) for i in ([images] if single else images)]
    column = [given] if isinstance(given, str) else list(given)
    n = max(len(loaded), len(column))
    if len(loaded) not in (1, n) or len(column) not in (1, n):
        raise ValueError(f"{len(loaded)} images but {len(column)} values of {arg}: give one per image, or one for all")
    return (loaded * n if len(loaded) == 1 else loaded), (column * n if len(column) == 1 else column), single and len(column) == 1


def click_point(result: Result, target: str) -> Result:
    """`result` (an answer to a point prompt) with one Detection: the first point it holds, or the
    centre of its first box or quad (`attributes["point_from"]` says which), labelled `target`;
    none where it holds neither."""
    detections = []
    for d in result.detections:
        x1, y1, x2, y2 = d.xyxy
        source = "point" if d.point is not None else "box"
        detections = [Detection(target, point=((x1 + x2) / 2, (y1 + y2) / 2), text=d.text,
                                attributes={**d.attributes, "point_from": source})]
        break
    return Result(detections, result.text, result.image_size, result.raw, image=result.image, reasoning=result.reasoning,
                  reasoning_cut_short=result.reasoning_cut_short, clipped=result.clipped)


def _load(image: ImageInput) -> Image.Image:
    """An image given as a path, an http(s) URL (downloaded with a deadline and a size limit, see
    `vlground.io.sources`), a PIL image or an array; errors are ImageLoadError naming it."""
    if isinstance(image, str) and is_url(image):
        return load_source(Source(image))
    return load_image(image)


def _options(options: GenerationOptions | None, keywords: dict[str, Any]) -> GenerationOptions:
    return with_overrides(GenerationOptions, options, keywords)


def reasoning_fields(results: Sequence[Result]) -> dict[str, Any]:
    """The reasoning fields of one Result made of several answers: their reasoning joined, cut
    short if any was, clipped coordinates summed."""
    reasoning = "\n".join(r.reasoning for r in results if r.reasoning)
    return dict(reasoning=reasoning or None, reasoning_cut_short=any(r.reasoning_cut_short for r in results),
                clipped=sum(r.clipped for r in results))


def _merge(results: list[Result | Exception]) -> Result | Exception:
    failed = next((r for r in results if isinstance(r, Exception)), None)
    if failed is not None:
        return failed
    return Result(
        detections=[d for r in results for d in r.detections],
        text="\n".join(r.text for r in results if r.text),
        image_size=results[0].image_size,
        raw="\n".join(r.raw for r in results),
        image=results[0].image,
        **reasoning_fields(results),
    )


def load_model(name_or_path: str | Path | None = None, options: LoadOptions | None = None, **keywords: Any) -> Model:
    """Load a model by hub id, local folder or server URL (default: $VLGROUND_MODEL, else DEFAULT_MODEL),
    with `options` (a LoadOptions) or its fields as keywords: `load_model(name, device="cpu", max_pixels=...)`.

    device "auto" picks CUDA when available; dtype "auto" is bfloat16 on a GPU and float32 on CPU.
    min/max_pixels bound the Qwen2-VL-style processors' resizing (more pixels: finer boxes, more
    memory). Remote code is never run: every family is implemented natively or by transformers.

    An http(s):// URL uses a model on an OpenAI-compatible server (vLLM, SGLang, transformers serve):
    `served_model` is its name there (default: the server's first model), and min/max_pixels must
    match the server's processor settings, since Qwen2.5-VL's boxes are read in the frame the server
    resized to."""
    return Model(load_backend(chosen_model(name_or_path), with_overrides(LoadOptions, options, keywords)))
