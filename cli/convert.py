"""`vlground convert`: a labelled dataset in a trainer's fine-tuning format, boxes and clicks in the family's frame."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vlground.cli.errors import fail


def convert(
    source: Annotated[Path, typer.Argument(help="The dataset: a COCO/RefCOCO/ScreenSpot file, a YOLO folder, or label JSONL.")],
    source_format: Annotated[str, typer.Option("--from", help="coco, coco-keypoints, refcoco, screenspot, yolo or vlground (label records).")],
    target: Annotated[str, typer.Option("--to", help="qwen, swift, llamafactory or trl.")],
    family: Annotated[str, typer.Option("--family", "-f", help="Model family or hub id the data is for.")],
    out: Annotated[Path, typer.Option(help="Output file: .json writes a JSON array, anything else JSON lines.")],
    task: Annotated[str, typer.Option(help="ground (one record per expression), detect or spot (one per image), point or "
                                           "computer-use (one click per target: the family's point, or a tool call).")] = "ground",
    image_root: Annotated[Optional[Path], typer.Option(help="Folder the source's image names are relative to.")] = None,
    min_pixels: Annotated[Optional[int], typer.Option(help="Processor min_pixels the model is trained with.")] = None,
    max_pixels: Annotated[Optional[int], typer.Option(help="Processor max_pixels the model is trained with.")] = None,
) -> None:
    """Write training records whose answers are in the frame the model sees; a summary goes to stderr."""
    from vlground.core.families import UnknownFamilyError
    from vlground.training.convert import ConvertError, convert as run

    try:
        done = run(source, source_format=source_format, target=target, family=family, task=task, out=out,
                   image_root=image_root, min_pixels=min_pixels, max_pixels=max_pixels)
    except (ConvertError, UnknownFamilyError, OSError) as error:
        fail(str(error))
    typer.echo(f"{done.out}: {done.summary.describe()}", err=True)
    if not done.summary.records:
        fail(f"no records written from {source}; see the counts above")


def register(app: typer.Typer) -> None:
    app.command()(convert)
