"""`vlground parse` and `vlground prompt`: the grammar and prompt builders from the shell, no model."""
from __future__ import annotations

import json
import sys
from shlex import quote
from pathlib import Path
from typing import Annotated, Optional

import typer

from vlground.cli.errors import fail
from vlground.cli.flags import checked_thinking


def _size(value: str, option: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        fail(f"{option} must look like WIDTHxHEIGHT, e.g. 1024x768; got {value!r}")
    if w < 1 or h < 1:
        fail(f"{option} must be positive; got {value!r}")
    return w, h


def parse(
    text: Annotated[str, typer.Argument(help="The model's answer; '-' reads it from stdin.")],
    family: Annotated[str, typer.Option("--family", "-f", help="Model family or hub id, e.g. qwen2.5-vl.")],
    image_size: Annotated[Optional[str], typer.Option(help="Original image size WxH.")] = None,
    input_size: Annotated[Optional[str], typer.Option(help="Model input size WxH (Qwen2.5-VL frame); derived when omitted.")] = None,
    image: Annotated[Optional[Path], typer.Option(help="Take the original size from this image (EXIF honoured).")] = None,
    scale: Annotated[float, typer.Option(help="Divisor of the 0-1000 frames (999 for Qwen-VL's RefCOCO script).")] = 1000,
    min_pixels: Annotated[Optional[int], typer.Option(help="Processor min_pixels when deriving the input size.")] = None,
    max_pixels: Annotated[Optional[int], typer.Option(help="Processor max_pixels when deriving the input size.")] = None,
    thinking: Annotated[
        str,
        typer.Option(
            callback=checked_thinking,
            help="How the text was generated: 'on' (the prompt opened the reasoning, so a text without </think> "
            "is reasoning cut short), 'off' (a stray <think> is not reasoning), or 'auto' (inferred from the text).",
        ),
    ] = "auto",
) -> None:
    """Print the detections in an answer as JSON, in pixels of the original image: boxes from the
    answer only, the reasoning before it under "reasoning"."""
    from vlground.core.families import UnknownFamilyError, get_family
    from vlground.grammar import parse as parse_text

    if text == "-":  # bytes that are not UTF-8 become U+FFFD rather than an error
        stream = getattr(sys.stdin, "buffer", None)
        text = stream.read().decode("utf-8", "replace") if stream is not None else sys.stdin.read()
    if image is not None:
        from vlground.io.images import ImageLoadError, image_size as read_size

        try:
            size = read_size(image)
        except ImageLoadError as error:
            fail(str(error))
    elif image_size is not None:
        size = _size(image_size, "--image-size")
    else:
        fail("give the original image size with --image-size WxH or --image PATH")
    try:
        fam = get_family(family)
    except UnknownFamilyError as error:
        fail(str(error))
    seen = _size(input_size, "--input-size") if input_size else None
    try:
        result = parse_text(
            text, fam, size, seen, scale=scale, min_pixels=min_pixels, max_pixels=max_pixels, thinking=thinking
        )
    except ValueError as error:  # the sizes or scale given, never the text: parse reads any text
        fail(f"{error}; check --image-size, --input-size, --scale, --min-pixels and --max-pixels")
    if result.reasoning_cut_short:
        typer.echo("note: the reasoning was cut short before any answer: no detections", err=True)
    typer.echo(json_line(result.to_dict()))


def json_line(value: object) -> str:
    """`value` as one line of JSON, non-ASCII text written as itself; a lone surrogate (which
    UTF-8 cannot encode, e.g. from a model's "\\ud800") is written as its JSON escape \\uXXXX, so
    the line is valid JSON and reads back to the same string."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")


def prompt(
    task: Annotated[str, typer.Argument(help="ground, detect, caption, grounded_caption, read_text, spot_text, ask or point.")],
    family: Annotated[str, typer.Option("--family", "-f", help="Model family or hub id.")],
    phrase: Annotated[Optional[str], typer.Option(help="Referring expression (ground), what to click (point).")] = None,
    category: Annotated[Optional[list[str]], typer.Option(help="Category to detect; repeat for several (detect).")] = None,
    question: Annotated[Optional[str], typer.Option(help="Question (ask).")] = None,
    style: Annotated[str, typer.Option(help="point: plain, or tool_call (the computer-use tool in a system turn).")] = "plain",
    image_size: Annotated[Optional[str], typer.Option(help="point tool_call, Qwen2.5-VL: the screenshot WxH (the screen size told is its model input).")] = None,
    tool: Annotated[str, typer.Option(help="point tool_call: computer_use (desktop) or mobile_use (the mobile-agent cookbook's tool).")] = "computer_use",
) -> None:
    """Print the prompt a family is asked a task with; a system turn, where there is one, first
    (under [system], the user turn under [user])."""
    from vlground.core.families import UnknownFamilyError, get_family
    from vlground.core.geometry import model_input_size
    from vlground.prompts import build_prompt, point_prompt

    needed = {"ground": ("--phrase", phrase, "the red car"), "point": ("--phrase", phrase, "the Submit button"),
              "detect": ("--category", category, "car"), "ask": ("--question", question, "What is written on the sign?")}
    flag, value, example = needed.get(task.replace("-", "_"), (None, True, None))
    if not value:
        fail(f"prompt {task} needs {flag}, e.g. vlground prompt {task} -f {family} {flag} {quote(example)}")
    if style != "plain" and task != "point":
        fail(f"--style is for the point task; prompt {task} has one style")
    if tool != "computer_use" and style != "tool_call":
        fail("--tool is for --style tool_call")
    try:
        if task == "point":
            fam = get_family(family)
            seen = model_input_size(fam, _size(image_size, "--image-size")) if image_size and fam.patch_size else None
            built = point_prompt(fam, phrase, style=style, input_size=seen, tool=tool)
        else:
            built = build_prompt(task.replace("-", "_"), family, phrase=phrase, categories=category, question=question)
    except (UnknownFamilyError, ValueError) as error:
        fail(f"{error}{'; give --image-size WxH' if 'input size' in str(error) else ''}")
    typer.echo(f"[system]\n{built.system}\n[user]\n{built.text}" if built.system else built.text)


def register(app: typer.Typer) -> None:
    app.command()(parse)
    app.command()(prompt)
