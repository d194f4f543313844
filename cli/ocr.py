"""`vlground ocr`: read the text in files, folders and globs into a JSONL file, one record per file."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from vlground.cli.errors import fail, reported
from vlground.cli.flags import BATCH, DECODING, LOADING, with_flags

if TYPE_CHECKING:
    from vlground.core.options import GenerationOptions, LoadOptions
    from vlground.jobs.loop import RunOptions


@with_flags
def ocr(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (walked for image files) or quoted globs.")],
    out: Annotated[str, typer.Option("--out", "-o", help="JSONL output (- for stdout); locked while written.")],
    engine: Annotated[str, typer.Option(rich_help_panel="Engine", help="ppocr (default), ppocr-v4, a Qwen model or server URL.")] = "ppocr",
    angle_cls: Annotated[bool, typer.Option("--angle-cls", rich_help_panel="Engine", help="Built-in engine: also read each line upside down.")] = False,
    layout: Annotated[str, typer.Option("--layout", rich_help_panel="Engine", help="Built-in engine: auto, block, line or sparse (as Tesseract's --psm).")] = "auto",
    mode: Annotated[Optional[str], typer.Option(rich_help_panel="Engine", help="Qwen engine: text (default) or lines (with boxes).")] = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Walk subfolders too.")] = False,
    txt_dir: Annotated[Optional[Path], typer.Option(rich_help_panel="Output", help="Also write .txt files under DIR.")] = None,
    formats: Annotated[Optional[list[str]], typer.Option("--format", "-f", rich_help_panel="Output", help="Also write txt, hocr, md or pdf (repeat).")] = None,
    export_dir: Annotated[Optional[Path], typer.Option(rich_help_panel="Output", help="Folder of --format files (default: OUT's stem).")] = None,
    pages: Annotated[Optional[str], typer.Option(rich_help_panel="Documents", help="PDF and TIFF pages: 1-3,7 or 5- (default all).")] = None,
    dpi: Annotated[int, typer.Option(rich_help_panel="Documents", help="PDF rendering resolution.")] = 300,
    max_image_pixels: Annotated[Optional[int], typer.Option(rich_help_panel="Documents", help="Refuse larger images (0: no limit).")] = None,
    run: RunOptions = BATCH,
    load: LoadOptions = LOADING.but(min_pixels=None, served_model=None),
    generation: GenerationOptions = DECODING,
) -> None:
    """Read the text in every image; exit status 1 when any input failed (its record says why)."""
    from vlground.io.images import DEFAULT_MAX_IMAGE_PIXELS
    from vlground.jobs.isolation import WorkerSetupError
    from vlground.jobs.ocr import OcrOptions, run_ocr
    from vlground.io.documents import MAX_DPI
    from vlground.ocr.engine import MODES, EngineUnavailableError
    from vlground.ocr.layout import LAYOUTS
    from vlground.ocr.ppocr import is_built_in

    if out == "-" and (run.resume or run.overwrite):
        fail("--out - writes to standard output, which has nothing to resume or overwrite; give a file name")
    if mode is not None and mode not in MODES:
        fail(f"--mode must be one of {', '.join(MODES)}; got {mode!r}")
    if is_built_in(engine) and (load.adapter is not None or load.merge_adapter):
        fail("--adapter and --merge-adapter are for Qwen engines (--engine MODEL); the built-in engine has no adapters")
    if angle_cls and not is_built_in(engine):
        fail("--angle-cls is for the built-in engines (ppocr, ppocr-v4); a Qwen model reads lines at any angle itself")
    if layout not in LAYOUTS:
        fail(f"--layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    if layout != "auto" and not is_built_in(engine):
        fail("--layout is for the built-in engines (ppocr, ppocr-v4); a Qwen model lays out its own answer")
    if is_built_in(engine) and mode is not None:
        fail("--mode is for Qwen engines (--engine MODEL); the built-in engine always writes each line with its box and score")
    if is_built_in(engine) and generation.scheduling:
        flags = ["--" + name.replace("_", "-") for name in generation.scheduling]
        fail(f"{', '.join(flags)} {'is' if len(flags) == 1 else 'are'} for Qwen engines (--engine MODEL); "
             "the built-in engine reads each page in its own process")
    if not 1 <= dpi <= MAX_DPI:
        fail(f"--dpi must be between 1 and {MAX_DPI}; got {dpi}")
    if max_image_pixels is not None and max_image_pixels < 0:
        fail("--max-image-pixels must be positive, or 0 for no limit")
    pixel_limit = DEFAULT_MAX_IMAGE_PIXELS if max_image_pixels is None else max_image_pixels or None
    options = OcrOptions(
        engine=engine, angle_cls=angle_cls, layout=layout, mode=mode or "text", recursive=recursive, load=load, run=run,
        generation=generation,
        max_image_pixels=pixel_limit, dpi=dpi, pages=_page_selection(pages), exports=_exports(formats or [], export_dir, txt_dir, out),
    )
    try:
        with reported(EngineUnavailableError, WorkerSetupError, ValueError):
            summary = run_ocr(paths, out, options)
    except BrokenPipeError:
        raise  # the reader of --out - left (| head): click ends the command quietly, exit status 1
    if not run.quiet or summary.no_inputs:
        typer.echo(summary.describe(), err=True)
    if not summary.ok:
        raise typer.Exit(130 if summary.interrupted else 1)


def _page_selection(pages: str | None):
    from vlground.io.documents import PageSelection, parse_pages

    try:
        return parse_pages(pages) if pages is not None else PageSelection()
    except ValueError as error:
        fail(str(error))


def _exports(formats: list[str], export_dir: Path | None, txt_dir: Path | None, out: str) -> tuple:
    """(format, folder) pairs from --format/--export-dir and --txt-dir."""
    from vlground.ocr.formats import FORMATS

    unknown = [f for f in formats if f not in FORMATS + ("jsonl",)]
    if unknown:
        fail(f"--format takes {', '.join(('jsonl',) + FORMATS)}; got {unknown[0]!r}")
    extra = list(dict.fromkeys(f for f in formats if f != "jsonl"))
    if extra and export_dir is None:
        if out == "-":
            fail("--format with --out - needs --export-dir DIR for the files")
        export_dir = Path(out).with_suffix("") if Path(out).suffix else Path(out + ".exports")
    if export_dir is not None and not extra:
        fail("--export-dir is where --format files go; add --format txt, hocr, md or pdf")
    pairs = [(fmt, export_dir) for fmt in extra]
    if txt_dir is not None:
        pairs.append(("txt", txt_dir))
    return tuple(pairs)


def register(app: typer.Typer) -> None:
    app.command("ocr")(ocr)
