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


Device = Annotated[str, typer.Option(callback=_checked_device, help="auto (a GPU when there is one), cpu, cuda, cuda:1, mps.")]
MaxNewTokens = Annotated[Optional[int], typer.Option(min=1, help="Cap on generated tokens per answer (default: the task's own budget; reasoning not counted).")]


def checked_thinking(value: str) -> str:
    """`value` if it is a --thinking mode; else one line on stderr and exit status 2."""
    from vlground.core.options import THINKING_SETTINGS

    if value not in THINKING_SETTINGS:
        fail(f"--thinking must be one of {', '.join(THINKING_SETTINGS)}; got {value!r}")
    return value


Thinking = Annotated[str, typer.Option(callback=checked_thinking, help="Reason before answering: auto (as the checkpoint does: Qwen3.5 and *-Thinking checkpoints reason), on or off.")]
MaxThinkingTokens = Annotated[Optional[int], typer.Option(min=1, help="Cap on reasoning tokens; then </think> is forced and the model answers (default: 4096).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line on stderr; warnings and errors still show.")]
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


Ray = Annotated[Optional[str], typer.Option(callback=_checked_ray, help="Run on Ray: 'local' (a cluster on this machine), 'auto' (the cluster this machine is in) or ray://host:10001; each worker loads the model.")]
Workers = Annotated[int, typer.Option("--workers", "-j", min=1, help="With --ray: model replicas (actors).")]
GpusPerWorker = Annotated[float, typer.Option(min=0, help="With --ray: GPUs per replica (0.5: two share one).")]
Adapter = Annotated[Optional[Path], typer.Option(help="A LoRA adapter folder (from `vlground finetune`) applied on top of the model.")]
MergeAdapter = Annotated[bool, typer.Option("--merge-adapter", help="Merge the adapter into the weights (faster answers, slower load).")]
