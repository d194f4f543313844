"""Options several commands share, declared once so they read and fail the same everywhere.

`Device` is checked while the command line is parsed, so an absent GPU is an error before any
model is opened: `device: Device = "auto"` in a command's signature is all a command needs."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vlground.cli.errors import fail


def _checked_device(value: str) -> str:
    from vlground.core.device import DeviceUnavailableError, check_device
    from vlground.core.extras import MissingExtraError

    try:
        return check_device(value)
    except DeviceUnavailableError as error:
        fail(f"--device: {error}")
    except MissingExtraError as error:
        fail(str(error))


Device = Annotated[str, typer.Option(callback=_checked_device, rich_help_panel="Model", help="auto, cpu, cuda, cuda:1 or mps.")]
MaxNewTokens = Annotated[Optional[int], typer.Option(min=1, rich_help_panel="Model", help="Cap on each answer (default: the task's).")]


def checked_thinking(value: str) -> str:
    """`value` if it is a --thinking mode; else one line on stderr and exit status 2."""
    from vlground.core.options import THINKING_SETTINGS

    if value not in THINKING_SETTINGS:
        fail(f"--thinking must be one of {', '.join(THINKING_SETTINGS)}; got {value!r}")
    return value


Thinking = Annotated[str, typer.Option(callback=checked_thinking, rich_help_panel="Model", help="Reason first: auto (as the checkpoint), on, off.")]
MaxThinkingTokens = Annotated[Optional[int], typer.Option(min=1, rich_help_panel="Model", help="Cap on reasoning (default 4096 tokens).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel="Output", help="No progress bar or summary.")]


def _checked_ray(value: Optional[str]) -> Optional[str]:
    """A --ray that cannot work (Ray not installed, nothing listening there) fails before any output exists."""
    if value is None:
        return None
    from vlground.core.extras import MissingExtraError
    from vlground.jobs.ray_pool import RayUnreachableError, check_address

    try:
        check_address(value)
    except (MissingExtraError, RayUnreachableError) as error:
        fail(str(error))
    return value


Ray = Annotated[Optional[str], typer.Option(callback=_checked_ray, rich_help_panel="Scaling", help="Run on Ray: local, auto or ray://HOST:10001.")]
GpusPerWorker = Annotated[float, typer.Option(min=0, rich_help_panel="Scaling", help="With --ray: GPUs per replica (0.5: two share one).")]
Adapter = Annotated[Optional[Path], typer.Option(rich_help_panel="Model", help="LoRA adapter folder (vlground finetune).")]
MergeAdapter = Annotated[bool, typer.Option("--merge-adapter", rich_help_panel="Model", help="Merge the adapter into the weights.")]

# The flags of every batch command (detect, label, ocr, bench), read into one RunOptions by `run_options`.
Resume = Annotated[bool, typer.Option("--resume", rich_help_panel="Output", help="Skip the inputs OUT holds; run the rest.")]
RetryFailed = Annotated[bool, typer.Option("--retry-failed", rich_help_panel="Output", help="With --resume: run its error records again.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", rich_help_panel="Output", help="Replace OUT if it holds results.")]
Progress = Annotated[Optional[bool], typer.Option("--progress/--no-progress", rich_help_panel="Output", help="Progress bar (default: on a terminal).")]
BatchWorkers = Annotated[Optional[int], typer.Option("--workers", "-j", min=1, rich_help_panel="Scaling", help="Worker processes (with --ray: actors).")]


def run_options(*, resume: bool = False, retry_failed: bool = False, overwrite: bool = False, quiet: bool = False,
                progress: Optional[bool] = None, ray: Optional[str] = None, workers: Optional[int] = None,
                gpus_per_worker: float = 0.0):
    """The shared batch flags as one `vlground.jobs.loop.RunOptions`; flags that contradict each
    other are one line and exit status 2, before any work."""
    from vlground.jobs.loop import RunOptions

    try:
        return RunOptions(resume=resume, retry_failed=retry_failed, overwrite=overwrite,
                          progress=False if quiet else progress, ray=ray, workers=workers, gpus_per_worker=gpus_per_worker)
    except ValueError as error:
        fail(str(error))


def load_options(**values):
    """`vlground.core.options.LoadOptions` from the model flags (device, dtype, pixels, adapter, ...);
    a refused value is one line and exit status 2."""
    from vlground.core.options import LoadOptions

    try:
        return LoadOptions(**values)
    except ValueError as error:
        fail(str(error))
