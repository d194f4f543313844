"""`vlground label`: auto-label images with every instance of the categories, as a COCO or YOLO
dataset or label records (JSON lines)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vlground.cli.errors import fail
from vlground.cli.flags import Adapter, Device, GpusPerWorker, MaxNewTokens, MaxThinkingTokens, MergeAdapter, Ray, Thinking, Workers


def label(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders, quoted globs, URLs, or pyarrow URIs (s3://bucket/dir, gs://..., file:///dir).")],
    category: Annotated[list[str], typer.Option("--category", "-c", help="A category to find (repeatable; ids in this order).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="jsonl: the file; coco, yolo: the dataset folder.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="coco, yolo or jsonl.")] = "jsonl",
    model: Annotated[Optional[str], typer.Option(help="Hub id, folder or server URL (default $VLGROUND_MODEL).")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Walk subfolders too.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, rich_help_panel="Model", help="Images per batch (requests in flight for a server).")] = 8,
    max_new_tokens: MaxNewTokens = None,
    thinking: Thinking = "auto",
    max_thinking_tokens: MaxThinkingTokens = None,
    resume: Annotated[bool, typer.Option(rich_help_panel="Output", help="Skip the images OUT holds; label the rest.")] = False,
    overwrite: Annotated[bool, typer.Option(rich_help_panel="Output", help="Replace OUT's records.")] = False,
    device: Device = "auto",
    dtype: Annotated[str, typer.Option(rich_help_panel="Model", help="auto, bf16, fp16 or fp32.")] = "auto",
    min_pixels: Annotated[Optional[int], typer.Option(rich_help_panel="Model", help="Smallest model input in pixels (Qwen2-VL on).")] = None,
    max_pixels: Annotated[Optional[int], typer.Option(rich_help_panel="Model", help="Largest model input in pixels (Qwen2-VL on).")] = None,
    adapter: Adapter = None,
    merge_adapter: MergeAdapter = False,
    ray: Ray = None,
    workers: Workers = 1,
    gpus_per_worker: GpusPerWorker = 0.0,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress", rich_help_panel="Output", help="Progress bar (default: on a terminal).")] = None,
) -> None:
    """Find every instance of the categories in each image; exit status 1 when any image failed (its record says why)."""
    from vlground.core.extras import MissingExtraError
    from vlground.core.options import GenerationOptions, LoadOptions
    from vlground.io.sink import OutputExistsError, OutputLockedError
    from vlground.jobs.label import LabelOptions, run_label
    from vlground.jobs.scale import WorkerSetupError

    if (workers != 1 or gpus_per_worker) and ray is None:
        fail("--workers and --gpus-per-worker apply with --ray; without it the model runs in this process")
    try:
        options = LabelOptions(
            categories=tuple(category), format=fmt, model=model, recursive=recursive, resume=resume, overwrite=overwrite,
            load=LoadOptions(device=device, dtype=dtype, min_pixels=min_pixels, max_pixels=max_pixels,
                             adapter=adapter, merge_adapter=merge_adapter),
            generation=GenerationOptions(batch_size=batch_size, max_new_tokens=max_new_tokens, thinking=thinking,
                                         max_thinking_tokens=max_thinking_tokens),
            progress=progress, ray=ray, workers=workers, gpus_per_worker=gpus_per_worker,
        )
        summary = run_label(paths, out, options)
    except (ValueError, OutputExistsError, OutputLockedError, IsADirectoryError, WorkerSetupError, MissingExtraError) as error:
        fail(str(error))
    except Exception as error:  # noqa: BLE001 - missing weights, unknown models, a cluster that cannot be reached
        fail(f"{type(error).__name__}: {error}")
    typer.echo(summary.describe(), err=True)
    if not summary.ok:
        raise typer.Exit(130 if summary.interrupted else 1)


def register(app: typer.Typer) -> None:
    app.command()(label)
