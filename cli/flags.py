"""Options several commands share, declared once so they read and fail the same everywhere.

A single option is an `Annotated` type: `device: Device = "auto"` in a command's signature is all a
command needs (`Device` is checked while the command line is parsed, so an absent GPU is an error
before any model is opened). A group of options that becomes one options object (the batch flags:
RunOptions; the model's loading: LoadOptions; its decoding: GenerationOptions) is a `Flags`: the
keyword parameters of the function that builds the object. A command takes the whole group as one
parameter, `run: RunOptions = BATCH`, and `@with_flags` puts the group's flags on its command line
in that place and calls the command with the object built, so every batch command lists, checks and
documents the same flags from this one declaration."""
from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from vlground.cli.errors import fail


def _checked_device(value: str) -> str:
    from vlground.core.device import DeviceUnavailableError, check_device
    from vlground.extras import MissingExtraError

    try:
        return check_device(value)
    except DeviceUnavailableError as error:
        fail(f"--device: {error}")
    except MissingExtraError as error:
        fail(str(error))


Device = Annotated[str, typer.Option(callback=_checked_device, show_default=False, rich_help_panel="Model", help="auto (default), cpu, cuda, cuda:1 or mps.")]
MaxNewTokens = Annotated[Optional[int], typer.Option(min=1, rich_help_panel="Model", help="Cap on each answer (default: task's).")]


def checked_thinking(value: str) -> str:
    """`value` if it is a --thinking mode; else one line on stderr and exit status 2."""
    from vlground.core.options import THINKING_SETTINGS

    if value not in THINKING_SETTINGS:
        fail(f"--thinking must be one of {', '.join(THINKING_SETTINGS)}; got {value!r}")
    return value


Thinking = Annotated[str, typer.Option(callback=checked_thinking, show_default=False, rich_help_panel="Model", help="Reason first: auto (as the model), on, off.")]
MaxThinkingTokens = Annotated[Optional[int], typer.Option(min=1, rich_help_panel="Model", help="Cap on reasoning (default 4096).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel="Output", help="No progress bar or summary.")]


def _checked_ray(value: Optional[str]) -> Optional[str]:
    """A --ray that cannot work (Ray not installed, nothing listening there) fails before any output exists."""
    if value is None:
        return None
    from vlground.extras import MissingExtraError
    from vlground.jobs.ray_pool import RayUnreachableError, check_address

    try:
        check_address(value)
    except (MissingExtraError, RayUnreachableError) as error:
        fail(str(error))
    return value


Ray = Annotated[Optional[str], typer.Option(callback=_checked_ray, rich_help_panel="Scaling", help="Run on Ray: local, auto or ray://HOST:10001.")]
GpusPerWorker = Annotated[float, typer.Option(show_default=False, rich_help_panel="Scaling", help="With --ray: GPUs per actor (0.5: two share one).")]
Adapter = Annotated[Optional[Path], typer.Option(rich_help_panel="Model", help="LoRA adapter folder (vlground finetune).")]
MergeAdapter = Annotated[bool, typer.Option("--merge-adapter", rich_help_panel="Model", help="Merge the adapter into the weights.")]

Resume = Annotated[bool, typer.Option("--resume", rich_help_panel="Output", help="Skip the inputs OUT holds; run the rest.")]
RetryFailed = Annotated[bool, typer.Option("--retry-failed", rich_help_panel="Output", help="With --resume: run its error records again.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", rich_help_panel="Output", help="Replace OUT if it holds results.")]
Progress = Annotated[Optional[bool], typer.Option("--progress/--no-progress", rich_help_panel="Output", help="Progress bar (default: on a terminal).")]
BatchWorkers = Annotated[Optional[int], typer.Option("--workers", "-j", min=1, rich_help_panel="Scaling", help="Worker processes (with --ray: actors).")]
Dtype = Annotated[str, typer.Option(show_default=False, rich_help_panel="Model", help="auto (bf16 on a GPU), bf16, fp16 or fp32.")]
MinPixels = Annotated[Optional[int], typer.Option(min=1, rich_help_panel="Model", help="Fewest pixels per image (Qwen2-VL on).")]
MaxPixels = Annotated[Optional[int], typer.Option(min=1, rich_help_panel="Model", help="Most pixels per image (Qwen2-VL on).")]
ServedModel = Annotated[Optional[str], typer.Option(rich_help_panel="Model", help="With a server URL: the model's name there.")]
BatchSize = Annotated[int, typer.Option(min=1, show_default=False, rich_help_panel="Model", help="Images per batch (default 8).")]
# Speed on a local model (vlground.models.scheduling); the same answers with or without them.
Refill = Annotated[bool, typer.Option("--refill", rich_help_panel="Scaling", help="Rows whose answer ended take the next image.")]
TokenBudget = Annotated[Optional[int], typer.Option(rich_help_panel="Scaling", help="Prompt tokens per batch (batch size: the cap).")]
Prefetch = Annotated[bool, typer.Option("--prefetch", rich_help_panel="Scaling", help="Prepare the next images while the model runs.")]
StaticCache = Annotated[bool, typer.Option("--static-cache", rich_help_panel="Scaling", help="Static KV cache, CUDA graphs (not --refill).")]


def run_options(*, resume: Resume = False, retry_failed: RetryFailed = False, overwrite: Overwrite = False,
                progress: Progress = None, quiet: Quiet = False, ray: Ray = None, workers: BatchWorkers = None,
                gpus_per_worker: GpusPerWorker = 0.0):
    """The batch flags as one `vlground.jobs.loop.RunOptions`; flags that contradict each other are
    one line and exit status 2, before any work. `resume=None`: the output always resumes, unless
    --overwrite (bench's folder)."""
    from vlground.jobs.loop import RunOptions

    try:
        return RunOptions(resume=not overwrite if resume is None else resume, retry_failed=retry_failed, overwrite=overwrite,
                          progress=progress, quiet=quiet, ray=ray, workers=workers, gpus_per_worker=gpus_per_worker)
    except ValueError as error:
        fail(str(error))


def load_options(*, device: Device = "auto", dtype: Dtype = "auto", min_pixels: MinPixels = None, max_pixels: MaxPixels = None,
                 adapter: Adapter = None, merge_adapter: MergeAdapter = False, served_model: ServedModel = None):
    """The model flags as one `vlground.core.options.LoadOptions`; a refused value is one line and
    exit status 2."""
    from vlground.core.options import LoadOptions

    try:
        return LoadOptions(device=device, dtype=dtype, min_pixels=min_pixels, max_pixels=max_pixels, adapter=adapter,
                           merge_adapter=merge_adapter, served_model=served_model)
    except ValueError as error:
        fail(str(error))


def generation_options(*, batch_size: BatchSize = 8, max_new_tokens: MaxNewTokens = None, thinking: Thinking = "auto",
                       max_thinking_tokens: MaxThinkingTokens = None, refill: Refill = False, token_budget: TokenBudget = None,
                       prefetch: Prefetch = False, static_cache: StaticCache = False):
    """The decoding flags as one `vlground.core.options.GenerationOptions`; a refused value is one
    line and exit status 2."""
    from vlground.core.options import GenerationOptions

    if refill and static_cache:
        fail("--refill and --static-cache do not combine: refill grows its own cache as rows join; use one")
    try:
        return GenerationOptions(batch_size=batch_size, max_new_tokens=max_new_tokens, thinking=thinking,
                                 max_thinking_tokens=max_thinking_tokens, refill=refill, token_budget=token_budget,
                                 prefetch=prefetch, static_cache=static_cache)
    except ValueError as error:
        fail(str(error))


@dataclass(frozen=True)
class Flags:
    """A group of flags: the keyword parameters of `build`, which makes one options object of their
    values. `but` fits the group to one command: a flag given an `Annotated` type is declared that
    way there (its own help), a flag given any other value is left off that command's line and built
    with the value."""

    build: Callable[..., Any]
    changes: tuple[tuple[str, Any], ...] = ()

    def but(self, **changes: Any) -> Flags:
        unknown = set(changes) - set(inspect.signature(self.build).parameters)
        if unknown:
            raise TypeError(f"{self.build.__name__} has no flag {sorted(unknown)[0]!r}")
        return Flags(self.build, self.changes + tuple(changes.items()))

    def parameters(self) -> list[inspect.Parameter]:
        """The flags on the command line, in `build`'s order."""
        changes = dict(self.changes)
        shown = []
        for param in inspect.signature(self.build, eval_str=True).parameters.values():
            change = changes.get(param.name, param.annotation)
            if typing.get_origin(change) is Annotated:
                shown.append(param.replace(annotation=change))
        return shown

    def built(self, values: dict[str, Any]) -> Any:
        declared = {param.name for param in self.parameters()}
        return self.build(**values, **{name: value for name, value in self.changes if name not in declared})


BATCH = Flags(run_options)
LOADING = Flags(load_options)
DECODING = Flags(generation_options)


def with_flags(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with each parameter whose default is a `Flags` group replaced, on the command line,
    by the group's flags, and called with the group's object in that parameter."""
    groups: dict[str, tuple[Flags, list[str]]] = {}
    params = []
    for param in inspect.signature(command).parameters.values():
        if isinstance(param.default, Flags):
            flags = param.default.parameters()
            groups[param.name] = (param.default, [flag.name for flag in flags])
            params += flags
        else:
            annotation = param.annotation
            if isinstance(annotation, str):
                annotation = eval(annotation, command.__globals__)  # noqa: S307 (as typing.get_type_hints does)
            params.append(param.replace(annotation=annotation))
    names = [param.name for param in params]
    if len(set(names)) < len(names):
        raise TypeError(f"{command.__name__}: a flag of a group has the name of another parameter")

    @functools.wraps(command)
    def with_objects(**values: Any) -> None:
        for name, (flags, flag_names) in groups.items():
            values[name] = flags.built({flag: values.pop(flag) for flag in flag_names})
        return command(**values)

    with_objects.__signature__ = inspect.Signature([param.replace(kind=inspect.Parameter.KEYWORD_ONLY) for param in params])
    with_objects.__annotations__ = {param.name: param.annotation for param in params}
    return with_objects
