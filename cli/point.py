"""`vlground point`: where to click on a screenshot for each target, in pixels of the screenshot.
Arguments only; the work is `Model.point` (vlground.tasks)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from vlground.cli.errors import fail, reported
from vlground.cli.flags import DECODING, LOADING, with_flags

if TYPE_CHECKING:
    from vlground.core.options import GenerationOptions, LoadOptions


def _row(target: str, result) -> tuple[str, str, str, str]:
    if not result.detections:
        return target, "-", "-", "none"
    found = result.detections[0]
    x, y = found.point
    return target, f"{x:.1f}", f"{y:.1f}", found.attributes["point_from"]


def _print_table(image_size: tuple[int, int], targets: list[str], results: list) -> None:
    from vlground.cli.detect import _printable

    typer.echo(f"image {image_size[0]}x{image_size[1]}: {sum(bool(r.detections) for r in results)} of {len(targets)} found")
    rows = [("target", "x", "y", "from"), *(_row(_printable(t), r) for t, r in zip(targets, results))]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) if i in (0, 3) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())


@with_flags
def point(
    image: Annotated[str, typer.Argument(metavar="IMAGE", show_default=False, help="The screenshot: a file, an http(s):// URL, or - for stdin.")],
    targets: Annotated[list[str], typer.Argument(metavar="TARGET", show_default=False, help="What to click: an element (\"the Submit button\") or an instruction; one answer each.")],
    model: Annotated[Optional[str], typer.Option(help="Hub id, folder or server URL (default $VLGROUND_MODEL).")] = None,
    style: Annotated[str, typer.Option(help="plain: the family's own point prompt; tool_call: the computer-use tool of Qwen's cookbooks (Qwen2.5-VL on).")] = "plain",
    tool: Annotated[str, typer.Option(help="With --style tool_call: computer_use (desktop) or mobile_use (the mobile-agent cookbook's tool).")] = "computer_use",
    as_json: Annotated[bool, typer.Option("--json", rich_help_panel="Output", help="One JSON line per target instead of a table.")] = False,
    draw: Annotated[Optional[Path], typer.Option(rich_help_panel="Output", help="Draw the clicks on a copy of the screenshot, to this file.")] = None,
    loading: LoadOptions = LOADING,
    generation: GenerationOptions = DECODING,
) -> None:
    """Where to click for each target, in pixels of the screenshot as displayed: the model's point, or
    the centre of the box it gave ("from" says which). Exit status 2 for a wrong argument (before any
    model is loaded) or a model that cannot run; a target with no click in the answer, or a click
    outside the screenshot (put on its edge), is a warning."""
    from vlground.io.sources import expand, load
    from vlground.prompts import POINT_STYLES, tool_names

    if style not in POINT_STYLES:
        fail(f"--style must be one of {', '.join(POINT_STYLES)}; got {style!r}")
    if tool not in tool_names():
        fail(f"--tool must be one of {', '.join(tool_names())}; got {tool!r}")
    if tool != "computer_use" and style != "tool_call":
        fail("--tool is for --style tool_call")
    if draw is not None and draw.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"):
        fail(f"--draw {draw}: give an image file name (.png, .jpg, ...)")
    with reported(ValueError, OSError):
        sources = expand([image])
        if len(sources.items) != 1 or os.path.isdir(image):
            fail(f"{image}: give one screenshot (a file, a URL or -), not a folder or a pattern")
        source = sources.items[0]
        if source.error is not None:
            fail(f"{source.name}: {source.error}")
        screenshot = load(source)  # an unreadable screenshot is told before the model loads
        from vlground.tasks import load_model

        results = load_model(model, loading).point([screenshot], list(targets), generation, style=style, tool=tool)
    if as_json:
        from vlground.cli.parse import json_line

        for target, result in zip(targets, results):
            typer.echo(json_line({"target": target, **result.to_dict()}))
    else:
        _print_table(screenshot.size, list(targets), results)
    for target, result in zip(targets, results):
        if not result.detections:
            typer.echo(f"warning: no click found for {target!r}; the answer was {result.text[:200]!r}", err=True)
        elif result.clipped:
            typer.echo(f"warning: the click for {target!r} lay outside the screenshot and was put on its edge; "
                       f"the answer was {result.raw[:200]!r}", err=True)
    if draw is not None:
        from vlground.core.results import Result
        from vlground.viz import annotate

        clicks = Result([d for r in results for d in r.detections], "", screenshot.size)
        with reported(OSError):
            annotate(screenshot, clicks).save(draw)


def register(app: typer.Typer) -> None:
    app.command()(point)
