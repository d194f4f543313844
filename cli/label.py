"""`vlground label`: auto-label images with every instance of the categories, as a COCO or YOLO
dataset or label records (JSON lines)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vlground.cli.errors import reported
from vlground.cli.flags import (Adapter, BatchWorkers, Device, GpusPerWorker, MaxNewTokens, MaxThinkingTokens, MergeAdapter,
                                Overwrite, Progress, Quiet, Ray, Resume, RetryFailed, Thinking, load_options, run_options)


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
    resume: Resume = False,
    retry_failed: RetryFailed = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
    dtype: Annotated[str, typer.Option(rich_help_panel="Model", help="auto, bf16, fp16 or fp32.")] = "auto",
    min_pixels: Annotated[Optional[int], typer.Option(rich_help_panel="Model", help="Smallest model input in pixels (Qwen2-VL on).")] = None,
    max_pixels: Annotated[Optional[int], typer.Option(rich_help_panel="Model", help="Largest model input in pixels (Qwen2-VL on).")] = None,
    adapter: Adapter = None,
    merge_adapter: MergeAdapter = False,
    ray: Ray = None,
    workers: BatchWorkers = None,
    gpus_per_worker: GpusPerWorker = 0.0,
    progress: Progress = None,
    quiet: Quiet = False,
) -> None:
    """Find every instance of the categories in each image; exit status 1 when any image failed (its record says why)."""
    from vlground.jobs.isolation import WorkerSetupError
    from vlground.jobs.label import LabelOptions, run_label
    from vlground.core.options import GenerationOptions

    run = run_options(resume=resume, retry_failed=retry_failed, overwrite=overwrite, quiet=quiet, progress=progress,
                      ray=ray, workers=workers, gpus_per_worker=gpus_per_worker)
    load = load_options(device=device, dtype=dtype, min_pixels=min_pixels, max_pixels=max_pixels, adapter=adapter,
                        merge_adapter=merge_adapter)
    with reported(ValueError, OSError, WorkerSetupError):  # OSError: files missing, a server that cannot be reached
        generation = GenerationOptions(batch_size=batch_size, max_new_tokens=max_new_tokens, thinking=thinking,
                                       max_thinking_tokens=max_thinking_tokens)
        options = LabelOptions(categories=tuple(category), format=fmt, model=model, recursive=recursive, load=load, run=run,
                               generation=generation)
        summary = run_label(paths, out, options)
    if not quiet:
        typer.echo(summary.describe(), err=True)
    if not summary.ok:
        raise typer.Exit(130 if summary.interrupted else 1)


def register(app: typer.Typer) -> None:
    app.command()(label)
