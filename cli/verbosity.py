"""What reaches stderr. By default: vlground's own lines (failures, warnings about the run, the
summary) and, on a terminal, progress bars. What a run found is a result, not a failure: an image
with no box is in its record and counted in the summary; a line per such image only with --verbose. The libraries underneath keep their notes to themselves:
transformers' advice and its weight-loading bars off a terminal, Python warnings (FutureWarning,
DeprecationWarning), Ray's start-up lines. `--verbose` on any command lets them all through.

The settings are environment variables where a library reads one, so the worker processes a run
starts (OCR workers, Ray actors on this machine) inherit them; VERBOSE tells vlground's own code."""
from __future__ import annotations

import os
import sys
import threading
import warnings
from contextlib import contextmanager
from typing import Annotated, Iterator

import typer
from typer import _click as click

VERBOSE = "VLGROUND_VERBOSE"

_QUIET = {
    "TRANSFORMERS_VERBOSITY": "error",  # transformers' logger: its advice and notices
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "PYTHONWARNINGS": "ignore",  # FutureWarning and the like, in worker processes too
}
_set_here: dict[str, str] = {}


def quiet_libraries() -> None:
    """Keep the libraries' own output off stderr (see the module docstring); a variable the user
    set is left as it is."""
    quiet = dict(_QUIET)
    if not sys.stderr.isatty():  # progress bars only on a terminal, downloads' and weight loading's too
        quiet["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    for name, value in quiet.items():
        if name not in os.environ:
            os.environ[name] = _set_here[name] = value
    warnings.simplefilter("ignore")


class _ResultsStdout:
    """Standard output that carries the command's results alone: what another thread writes there,
    or anything once the command is over, goes to stderr. Ray's driver prints what its cluster
    reports (a worker or node that died) to sys.stdout from a background thread, and the notes it
    held back when the process exits; either would land among the JSONL records of `--out -`."""

    def __init__(self, stdout) -> None:
        self._stdout = stdout
        self.over = False

    def _stream(self):
        return self._stdout if not self.over and threading.current_thread() is threading.main_thread() else sys.stderr

    def write(self, text: str) -> int:
        return self._stream().write(text)

    def writelines(self, lines) -> None:
        self._stream().writelines(lines)

    def __getattr__(self, name: str):
        return getattr(self._stdout, name)


@contextmanager
def results_only_on_stdout() -> Iterator[None]:
    """The command's stdout for its results alone (see `_ResultsStdout`), for the rest of the
    process: set by the command's entry point, not for a notebook, which keeps its own streams."""
    results = _ResultsStdout(sys.stdout)
    sys.stdout = results
    try:
        yield
    finally:
        results.flush()
        results.over = True


def verbose() -> bool:
    """Whether this command runs with --verbose (or VLGROUND_VERBOSE=1)."""
    return os.environ.get(VERBOSE) == "1"


def _let_through(ctx: click.Context, param: click.Parameter, verbose: bool) -> None:
    if not verbose:
        return
    for name, value in list(_set_here.items()):
        if os.environ.get(name) == value:
            del os.environ[name]
        del _set_here[name]
    warnings.resetwarnings()
    warnings.simplefilter("default")  # each warning once per place, as Python shows them in __main__
    os.environ[VERBOSE] = "1"


def _declares_verbose(
    verbose: Annotated[bool, typer.Option(
        "--verbose", expose_value=False, is_eager=True, callback=_let_through, rich_help_panel="Output",
        help="Also what libraries print: warnings, bars, logs.")] = False,
) -> None:
    """Declares --verbose the way every option is declared; `verbose_option` takes it from here."""


def verbose_option() -> click.Parameter:
    """`--verbose`, for every command."""
    declaring = typer.Typer()
    declaring.command()(_declares_verbose)
    return typer.main.get_command(declaring).params[0]
