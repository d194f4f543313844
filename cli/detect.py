"""`vlground detect`: boxes for referring expressions (or every instance) on one image."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vlground.cli.errors import fail


def detect(
    image: Annotated[Path, typer.Argument(help="The image.")],
    queries: Annotated[list[str], typer.Argument(help="Referring expressions (or categories with --all).")],
    model: Annotated[Optional[str], typer.Option(help="Hub id, local folder or OpenAI-compatible server URL (http://host:8000/v1); default $VLGROUND_MODEL, else Qwen/Qwen3-VL-4B-Instruct.")] = None,
    served_model: Annotated[Optional[str], typer.Option(help="With a server URL: the model's name there (default: the server's first model).")] = None,
    all_instances: Annotated[bool, typer.Option("--all", help="Every instance of each query, not one box per expression.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the schema of `vlground parse`).")] = False,
    annotate: Annotated[Optional[Path], typer.Option(help="Write the image with the boxes drawn to this file.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), bf16, fp16 or fp32.")] = "auto",
    min_pixels: Annotated[Optional[int], typer.Option(help="Smallest model input in pixels (Qwen2-VL and later).")] = None,
    max_pixels: Annotated[Optional[int], typer.Option(help="Largest model input in pixels (Qwen2-VL and later).")] = None,
    batch_size: Annotated[int, typer.Option(help="Queries per forward pass.")] = 8,
) -> None:
    """Find what each query names in IMAGE, in pixels of the image as displayed."""
    from vlground.families import UnknownFamilyError
    from vlground.imageio import ImageLoadError, load_image
    from vlground.results import Result
    from vlground.tasks import load_model

    try:
        picture = load_image(image)
    except ImageLoadError as error:
        fail(str(error))
    try:
        vlm = load_model(model, device=device, dtype=dtype, min_pixels=min_pixels, max_pixels=max_pixels, served_model=served_model)
    except (UnknownFamilyError, ValueError, OSError) as error:  # OSError: weights or files missing, server unreachable
        fail(str(error))
    except MemoryError as error:
        fail(f"out of memory while loading the model: {error}; try --dtype bf16 or a smaller model")
    try:
        if all_instances:
            answers = [vlm.detect(picture, q, batch_size=batch_size) for q in queries]
        else:
            answers = vlm.ground([picture], list(queries), batch_size=batch_size)
    except (MemoryError, OSError) as error:  # OSError: a server that fails or cannot be reached
        fail(str(error))
    detections = []
    for query, answer in zip(queries, answers):
        found = answer.detections if all_instances else answer.detections[:1]
        for d in found:
            d.label = d.label or query
            if not all_instances:
                d.attributes = {**d.attributes, "query": query}
        detections.extend(found)
    missing = [q for q, a in zip(queries, answers) if not a.detections]
    result = Result(detections=detections, text="\n".join(a.text for a in answers if a.text), image_size=picture.size)
    if annotate is not None:
        from vlground.viz import annotate as draw

        draw(picture, result).save(annotate)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        _print_table(result, picture.size)
    for q in missing:
        typer.echo(f"warning: no box found for {q!r}", err=True)


def _print_table(result, size: tuple[int, int]) -> None:
    typer.echo(f"image {size[0]}x{size[1]}: {len(result.detections)} found")
    rows = [("label", "x1", "y1", "x2", "y2")]
    for d in result.detections:
        rows.append((d.label or "", *(f"{v:.1f}" for v in d.xyxy)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def register(app: typer.Typer) -> None:
    app.command()(detect)
