"""Parsers and formatters for every output dialect of the family.

`parse` turns what a model wrote into detections in pixels of the ORIGINAL image, read from the
answer alone when the model reasoned first (vlground.grammar.reasoning); `format_detections`
writes detections the way a model of that family would (for prompts and training data). A dialect is
one registry entry: an extractor (text -> items in the model's frame) and a formatter (the inverse)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from dataclasses import dataclass

import numpy as np

from vlground.core.families import Family, get_family
from vlground.core.geometry import Frame
from vlground.core.results import Detection, Result
from vlground.grammar import gui, json_items, markup, tags
from vlground.grammar.items import Extraction, RawItem
from vlground.grammar.placement import place
from vlground.grammar.reasoning import split as split_reasoning


def _extract_json_family(text: str) -> Extraction:
    """JSON first; document answers (HTML data-bbox, markdown image comments) and plain lines otherwise."""
    found = json_items.extract(text)
    if found:
        return found
    for extractor, marker in ((markup.extract_html, "data-bbox"), (markup.extract_markdown, "<!--")):
        if marker in text:
            found = extractor(text)
            if found:
                return found
    plain = markup.extract_plain(text)
    return plain if plain else Extraction(text=text.strip())


@dataclass(frozen=True)
class Dialect:
    extract: Callable[[str], Extraction]
    format: Callable[[list[RawItem]], str]


DIALECTS: dict[str, Dialect] = {
    "qwen-vl": Dialect(lambda t: tags.extract(t, tags.QWEN_VL), lambda i: tags.format_items(i, tags.QWEN_VL)),
    "qwen2-vl": Dialect(lambda t: tags.extract(t, tags.QWEN2_VL), lambda i: tags.format_items(i, tags.QWEN2_VL)),
    "json": Dialect(_extract_json_family, json_items.format_items),
}


def parse(
    text: str,
    family: str | Family,
    image_size: tuple[int, int],
    input_size: tuple[int, int] | None = None,
    *,
    scale: float = 1000,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    thinking: str = "auto",
    reasoning: str | None = None,
) -> Result:
    """Detections on the original image of `image_size` (width, height) from a model's text.

    The text is split into reasoning and answer first (vlground.grammar.reasoning: at the last
    `</think>`, an `<answer>` block where written) and geometry is read from the answer alone;
    `thinking` is how the text was generated: "on" (the prompt opened the reasoning), "off", or
    "auto" (inferred from the text). `Result.text` is the answer's text, `Result.reasoning` the
    reasoning's; reasoning that never ended sets `Result.reasoning_cut_short` and gives no detections.
    `reasoning` is reasoning the runtime received apart (a server's `reasoning_content`): `text` is
    then the answer, and a blank one after reasoning is reasoning cut short.

    Where the family's own dialect finds nothing, the answers of GUI agents are read
    (vlground.grammar.gui: Qwen's `<tool_call>` computer-use and mobile-use calls, UI-TARS-style
    `click(start_box='(x,y)')`, `point:x,y`, a bare `(x, y)`): points, or boxes where the action gave
    four numbers, in the family's frame like everything else.

    `input_size` (width, height) is what the model saw; it matters for frames in input pixels
    (Qwen2.5-VL) and, when not given, is derived with the released checkpoint's smart_resize settings
    (or `min_pixels`/`max_pixels`). `scale` is the divisor of the 0-1000 frames (999 for the protocols
    that use it). Never raises on any text: what cannot be read is left out of the detections and
    stays in `Result.text`. Corners are put in order, coordinates clipped to the image (and counted
    in `Result.clipped`), and exact repeats (a known generation loop) kept once. ValueError only for
    the sizes, scale or `thinking` given."""
    fam = get_family(family)
    frame = Frame.for_family(fam, image_size, input_size, scale=scale, min_pixels=min_pixels, max_pixels=max_pixels)
    parts = split_reasoning(text, thinking, reasoning)
    if parts.cut_short:
        return Result([], "", frame.image_size, text, reasoning=parts.reasoning, reasoning_cut_short=True)
    return place(extract(parts.answer, fam), frame, text, parts.reasoning)


def extract(answer: str, family: str | Family) -> Extraction:
    """The items of an answer (reasoning already taken off) in `family`'s own frame, before any
    geometry: the family's dialect, else a GUI agent's action (vlground.grammar.gui)."""
    found = DIALECTS[get_family(family).dialect].extract(answer)
    return found if found else gui.extract(answer)


def format_detections(
    detections: Sequence[Detection],
    family: str | Family,
    image_size: tuple[int, int],
    input_size: tuple[int, int] | None = None,
    *,
    scale: float = 1000,
) -> str:
    """The answer `family` would write for `detections` (original-image pixels): the inverse of parse,
    up to the rounding of the model's integer frame."""
    fam = get_family(family)
    frame = Frame.for_family(fam, image_size, input_size, scale=scale)
    items = []
    for d in detections:
        xy = d.box if d.box is not None else d.point if d.point is not None else np.ravel(d.quad)
        coords = frame.from_pixels(xy)
        items.append(RawItem(label=d.label, coords=tuple(int(v) for v in coords), text=d.text, attributes=dict(d.attributes)))
    return DIALECTS[fam.dialect].format(items)


CLICK_STYLES = ("plain", "tool_call")


def format_click(
    point: tuple[float, float],
    family: str | Family,
    image_size: tuple[int, int],
    input_size: tuple[int, int] | None = None,
    *,
    style: str = "plain",
    scale: float = 1000,
) -> str:
    """The answer `family` gives to a point prompt for a click at `point` (original-image pixels):
    style "plain" its own dialect (point_2d JSON; a pair in box tags for the tag dialects), style
    "tool_call" a computer-use call (`vlground.grammar.gui.format_call`). `scale` as for parse (the
    screen size a Qwen3-VL tool prompt gives: 1000, or 999 for the mobile-agent tool). parse reads it back."""
    if style not in CLICK_STYLES:
        raise ValueError(f"unknown click style {style!r}; styles: {', '.join(CLICK_STYLES)}")
    if style == "plain":
        return format_detections([Detection(None, point=point)], family, image_size, input_size, scale=scale)
    frame = Frame.for_family(family, image_size, input_size, scale=scale)
    return gui.format_call(frame.from_pixels(point))
