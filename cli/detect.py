"""`vlground detect`: boxes for referring expressions (or every instance) on images. Arguments only;
the work is in `vlground.jobs.detect` and the inputs come from `vlground.io.sources`.

Which arguments are images: the leading ones that are sources (an existing file or folder, a glob,
an http(s):// URL, `-`); the rest are queries. A query that looks like an image (an existing path, a
URL, a name ending in an image suffix such as b.jpg) is refused rather than guessed at: put every
image first, or give the queries with --query, and then every argument is an image."""
from __future__ import annotations

import glob
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from vlground.cli.errors import fail, one_line, reported
from vlground.cli.flags import BATCH, DECODING, LOADING, with_flags
from vlground.cli.verbosity import verbose

if TYPE_CHECKING:
    from vlground.core.options import GenerationOptions, LoadOptions
    from vlground.jobs.loop import RunOptions


def _is_source(arg: str) -> bool:
    from vlground.io.sources import STDIN, is_url

    return arg == STDIN or is_url(arg) or "://" in arg or os.path.lexists(arg) or glob.has_magic(arg)


def _image_like(arg: str) -> str | None:
    """Why a query looks like an image, or None."""
    from vlground.io.sources import image_suffixes

    if _is_source(arg) and not glob.has_magic(arg):
        return "it is an existing file, a URL or -"
    if Path(arg).suffix.lower() in image_suffixes():
        return f"it ends in {Path(arg).suffix}, but there is no such file"
    return None


def split_arguments(arguments: list[str], queries: list[str]) -> tuple[list[str], list[str]]:
    """(sources, queries) by the rule of the module docstring; `fail` on what cannot be told apart."""
    if queries:
        return arguments, queries
    count = next((i for i, a in enumerate(arguments) if not _is_source(a)), len(arguments))
    sources, rest = arguments[:count], arguments[count:]
    if not sources:
        fail(f"{arguments[0]}: no such file, folder or URL; give the images first, then the queries")
    if not rest:
        fail(f"no query: every argument names an image source, the last ({arguments[-1]}) too; give what to find "
             'after the images (vlground detect photo.jpg "the red car"), or with --query')
    for arg in rest:
        why = _image_like(arg)
        if why is not None and arg == rest[0]:
            fail(f"{arg}: no such file; give existing images first, then the queries, or the queries with --query")
        if why is not None:
            fail(f"{arg!r} comes after the query {rest[0]!r} but looks like an image ({why}); "
                 f"put every image before the queries, or give the queries with --query")
    return sources, rest


def _printable(text: str) -> str:
    """`text` with what UTF-8 cannot encode (a lone surrogate in a model's label) as \\uXXXX."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _print_table(title: str, result, missing: list[str]) -> None:
    """The detections as a table; below it, the queries nothing was found for."""
    typer.echo(f"{title} {result.image_size[0]}x{result.image_size[1]}: {len(result.detections)} found")
    rows = [("label", "x1", "y1", "x2", "y2")]
    for d in result.detections:
        rows.append((_printable(d.label or ""), *(f"{v:.1f}" for v in d.xyxy)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    for query in missing:
        typer.echo(_printable(f"no box for {query!r}"))


def _inputs(names: list[str], recursive: bool, printing: bool, own: list):
    """The expanded sources (the run's `own` outputs left out of folders and patterns), and whether
    this is the one-image form (one file, URL or -, printed): its unreadable image is an argument
    error. Exit status 1 with a warning when nothing is readable."""
    from vlground.io.sources import expand

    sources = expand(names, recursive=recursive, exclude=own)
    single = (printing and len(names) == 1 and len(sources.items) == 1
              and not os.path.isdir(names[0]) and not glob.has_magic(names[0]))
    if not sources.readable and not single:
        for source in sources.errors:
            typer.echo(f"failed: {source.name}: {source.error}", err=True)
        typer.echo(f"warning: {sources.describe_empty()}; nothing to do", err=True)
        raise typer.Exit(1)
    return sources, single


def _reporter(single: bool, as_json: bool, to_stdout: bool, annotating: bool):
    """What the console shows for each record: the table (with the queries nothing was found for)
    or JSON, unless records go to --out; on stderr the failures, and with --verbose the images
    nothing was found in (the summary counts them)."""
    from vlground.core.records import Record
    from vlground.jobs.detect import MISSING
    from vlground.io.sink import encode_line

    def report(record, bar) -> None:
        say = (lambda m: bar.write(m, file=sys.stderr)) if not bar.disable else (lambda m: typer.echo(m, err=True))
        name = record["path"]
        if record["error"] is not None:
            say(f"{'error' if single else 'failed'}: {name}: {one_line(record['error'])}")
            return
        result = Record.from_dict(record).result
        if to_stdout and as_json:
            shown = result.to_dict() if single else {k: v for k, v in record.items() if k != MISSING}
            typer.echo(encode_line(shown).decode("utf-8"), nl=False)
        elif to_stdout:
            _print_table("image" if single else name, result, record.get(MISSING, []))
        if not verbose():
            return
        where = "" if single else f" in {name}"
        for query in record.get(MISSING, []):
            say(_printable(f"no box found for {query!r}{where}"))
        if annotating and not result.detections:
            say(f"nothing found{where}; its drawn copy has no boxes")

    return report


@with_flags
def detect(
    arguments: Annotated[list[str], typer.Argument(metavar="IMAGE... QUERY", show_default=False, help="Images (files, folders, quoted globs, http(s):// URLs, s3:// and other pyarrow URIs, - for stdin), then the referring expressions (or categories with --all).")],
    query: Annotated[Optional[list[str]], typer.Option("--query", help="A query (repeatable); then every argument is an image.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Hub id, folder or server URL (default $VLGROUND_MODEL).")] = None,
    all_instances: Annotated[bool, typer.Option("--all", help="Every instance of each query (categories).")] = False,
    as_json: Annotated[bool, typer.Option("--json", rich_help_panel="Output", help="Print JSON instead of tables.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", rich_help_panel="Output", help="Append one record per image to this JSONL (- stdout).")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Walk subfolders too.")] = False,
    annotate: Annotated[Optional[Path], typer.Option(rich_help_panel="Output", help="Draw the boxes to this file (a folder for several).")] = None,
    run: RunOptions = BATCH,
    loading: LoadOptions = LOADING,
    generation: GenerationOptions = DECODING,
) -> None:
    """Find what each query names in each image, in pixels of the image as displayed. Exit status 1
    when an input failed or no image was found; 2 for a wrong argument, before any model is loaded."""
    from contextlib import nullcontext

    from vlground.core.records import record_key
    from vlground.jobs.detect import AnnotationTarget, DetectJob, DetectWorker, run_detect
    from vlground.jobs.isolation import WorkerSetupError
    from vlground.io.sink import open_sink
    from vlground.io.sources import Source, download, is_url, load

    if (run.resume or run.overwrite) and out is None:
        fail("--resume and --overwrite apply to an output file: give --out FILE")
    if as_json and out is not None:
        fail("--json prints the results; with --out they go to OUT as JSON lines already (--out - prints them)")
    names, queries = split_arguments(list(arguments), list(query or []))
    own = [out, f"{out}.lock"] if out is not None and str(out) != "-" else []
    sources, single = _inputs(names, recursive, out is None, own)
    if single:
        run = replace(run, progress=False)
    with reported(ValueError):
        job = DetectJob(tuple(queries), all_instances, generation=generation)
        annotations = AnnotationTarget(annotate, sources) if annotate is not None else None
        if single:  # one image that cannot be read (or downloaded) is an argument error, told before the model loads
            first = sources.items[0]
            if first.error is None and first.data is None and is_url(first.location):
                first = sources.items[0] = Source(first.location, data=download(first.location))  # fetched once
            load(first)
        if out is not None and str(out) != "-":
            sources.check_output(out)
        sink = open_sink(out, record_key, run.resume, run.overwrite) if out is not None else None
    worker = DetectWorker(model, loading, job, annotations)
    report = _reporter(single, as_json, out is None, annotations is not None)
    with sink if sink is not None else nullcontext(), reported(ValueError, OSError, WorkerSetupError):
        summary = run_detect(sources, worker, sink, run, report=report)  # OSError: files missing, server unreachable
    if not run.quiet and not single:
        typer.echo(summary.describe(), err=True)
    if not summary.ok:
        raise typer.Exit(130 if summary.interrupted else 2 if single else 1)


def register(app: typer.Typer) -> None:
    app.command()(detect)
