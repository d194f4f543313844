"""`vlground label`: auto-label images with every instance of the categories, as a COCO or YOLO
dataset or label records (JSON lines)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from vlground.cli.errors import reported
from vlground.cli.flags import BATCH, DECODING, LOADING, with_flags

if TYPE_CHECKING:
    from vlground.core.options import GenerationOptions, LoadOptions
    from vlground.jobs.loop import RunOptions


@with_flags
def label(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders, quoted globs, URLs, or pyarrow URIs (s3://bucket/dir, gs://..., file:///dir).")],
    category: Annotated[list[str], typer.Option("--category", "-c", help="A category to find (repeatable; ids in this order).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="jsonl: the file; coco, yolo: the dataset folder.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="coco, yolo or jsonl.")] = "jsonl",
    model: Annotated[Optional[str], typer.Option(help="Hub id, folder or server URL (default $VLGROUND_MODEL).")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Walk subfolders too.")] = False,
    run: RunOptions = BATCH,
    load: LoadOptions = LOADING,
    generation: GenerationOptions = DECODING,
) -> None:
    """Find every instance of the categories in each image; exit status 1 when any image failed (its record says why)."""
    from vlground.jobs.isolation import WorkerSetupError
    from vlground.jobs.label import LabelOptions, run_label

    with reported(ValueError, OSError, WorkerSetupError):  # OSError: files missing, a server that cannot be reached
        options = LabelOptions(categories=tuple(category), format=fmt, model=model, recursive=recursive, load=load, run=run,
                               generation=generation)
        summary = run_label(paths, out, options)
    if not run.quiet:
        typer.echo(summary.describe(), err=True)
    if not summary.ok:
        raise typer.Exit(130 if summary.interrupted else 1)


def register(app: typer.Typer) -> None:
    app.command()(label)
