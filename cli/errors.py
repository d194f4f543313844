"""How every command fails: one line on stderr saying what to do, exit status 2, no traceback.

`reported()` is where the library's exceptions become that line: the types below already carry a
message that names the input and the remedy; the few faults of third-party code a user can cause
(a chat template tripping jinja's sandbox, a weights pickle refused, weights whose shapes do not
match the config) get one here."""
from __future__ import annotations

import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def one_line(message: str) -> str:
    """A message of several lines (a list of remedies) as one: lines joined by "; ", a line that
    introduces a list (ending in ":") by a space, list bullets dropped."""
    lines = [line.strip().removeprefix("- ").strip() for line in message.splitlines() if line.strip()]
    joined = ""
    for line in lines:
        joined += line if not joined else (" " if joined.endswith(":") else "; ") + line
    return joined


def _library_errors() -> tuple[type[BaseException], ...]:
    """The library's exception types whose messages are written for the user."""
    from vlground.core.device import DeviceUnavailableError
    from vlground.extras import MissingExtraError
    from vlground.core.families import UnknownFamilyError
    from vlground.core.options import OptionsError
    from vlground.io.images import ImageLoadError
    from vlground.io.sink import OutputExistsError, OutputLockedError
    from vlground.models.weights import WeightsNotFoundError

    return (DeviceUnavailableError, MissingExtraError, UnknownFamilyError, ImageLoadError, WeightsNotFoundError, OptionsError,
            OutputExistsError, OutputLockedError, IsADirectoryError)


def _third_party(error: BaseException) -> str | None:
    """A message for the faults of third-party code that a checkpoint can cause, else None."""
    try:
        from jinja2 import TemplateError
    except ImportError:  # pragma: no cover - transformers brings jinja2
        TemplateError = ()  # noqa: N806
    if isinstance(error, TemplateError):
        return f"the checkpoint's chat template failed ({type(error).__name__}: {error}); it was not run further"
    if isinstance(error, pickle.UnpicklingError):
        wanted = re.search(r"unsupported global:? ([\w.]+)", str(error), re.IGNORECASE)
        what = f"it asks to run {wanted.group(1)}" if wanted else str(error).split(". ")[0]
        return f"refused to load a weights pickle that would run code ({what}); use the checkpoint's .safetensors weights"
    if isinstance(error, RuntimeError) and "size mismatch" in str(error):
        return f"the checkpoint's weights do not fit its config.json ({error})"
    return None


@contextmanager
def reported(*also: type[BaseException]) -> Iterator[None]:
    """Turn the library's user-facing exceptions (and the types in `also`) raised inside the block
    into `fail`; anything else is a bug and keeps its traceback."""
    try:
        yield
    except typer.Exit:
        raise
    except (*_library_errors(), *also) as error:
        fail(str(error))
    except MemoryError as error:
        fail(f"out of memory ({error or 'no detail'}); try --dtype bf16, a smaller --max-pixels or a smaller model")
    except Exception as error:
        message = _third_party(error)
        if message is None:
            raise
        fail(message)
