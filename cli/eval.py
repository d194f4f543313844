"""`vlground eval ...` (score prediction files under a named protocol) and `vlground bench refcoco`
(run a model over RefCOCO and score it). Arguments only; the work is in `vlground.eval`."""
from __future__ import annotations

import inspect
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from vlground.cli.errors import fail, reported
from vlground.cli.flags import BATCH, DECODING, LOADING, Flags, with_flags
from vlground.eval.registry import BENCHMARKS

if TYPE_CHECKING:
    from vlground.core.options import GenerationOptions, LoadOptions
    from vlground.jobs.loop import RunOptions

eval_app = typer.Typer(help="Score predictions exactly as the reference evaluators do.", no_args_is_help=True)
bench_app = typer.Typer(help="Run a model over a benchmark, write its predictions and a report, and score them.", no_args_is_help=True)

GT = Annotated[Path, typer.Option("--gt", help="Ground-truth file (or folder).")]
STRICT = Annotated[bool, typer.Option("--strict", help="Make refused inputs (wrong types, impossible values, repeated ids, malformed lines) errors instead of counting and skipping them.")]
REPORT = Annotated[Optional[Path], typer.Option(help="Also write one self-contained HTML report (numbers, plots, worst samples) to this file.")]
AS_JSON = Annotated[bool, typer.Option("--json", help="Print the scores as one JSON object (fractions, not percent).")]
IMAGE_ROOT = Annotated[Optional[Path], typer.Option(help="Where the report finds the images the ground truth names (default: its folder).")]


def _warn(summary: dict) -> None:
    """Say on stderr what could not be matched or was refused, so a number is never quietly built
    on fewer inputs."""
    notes = [f"{summary[k]} {k}" for k in ("missing", "unmatched", "duplicates", "malformed") if summary.get(k)]
    if notes:
        typer.echo(f"warning: predictions aligned by {summary['aligned_by']}: {', '.join(notes)} "
                   "(missing answers count as wrong)", err=True)
    if summary.get("invalid"):
        named = "; ".join(summary["invalid_inputs"][:3])
        typer.echo(f"warning: {summary['invalid']} inputs refused and not scored (first: {named}); --strict makes them errors", err=True)


@contextmanager
def _refused() -> Iterator[None]:
    """How an evaluation's refusal ends a command: inputs that leave nothing to score are a run that
    gave no number (exit status 1); any other refused input or option is a usage error (exit 2)."""
    from vlground.eval.errors import EvalInputError, NothingToScore

    try:
        yield
    except NothingToScore as error:
        fail(str(error), code=1)
    except EvalInputError as error:
        fail(str(error))


def _run_benchmark(benchmark, gt: Path, pred: Path, rows_path: Optional[Path], report: Optional[Path], as_json: bool, strict: bool,
                   options: dict, image_root: Optional[Path] = None) -> None:
    from vlground.io.sink import atomic_write_records

    with _refused():
        scores = benchmark.evaluate(gt, pred, strict=strict, **options)
    summary = scores.summary()
    _warn(summary)
    if rows_path is not None:
        try:
            atomic_write_records(rows_path, scores.rows())
        except OSError as error:
            fail(f"{rows_path}: cannot write ({error.strerror or error})")
    if report is not None:
        root = image_root or (gt.parent if gt.is_file() else gt)
        _write_report(report, scores, root, {"command": _command_line(), "gt": str(gt), "pred": str(pred)})
    typer.echo(json.dumps(summary) if as_json else "\n".join(scores.describe(summary)))


def _command_line() -> str:
    """The running command as it could be typed again: its path, then every argument and option that
    was given a value other than its default (click keeps no copy of the words typed)."""
    import shlex

    from typer._click.globals import get_current_context

    ctx = get_current_context()
    words = ["vlground", *ctx.command_path.split()[1:]]  # whatever the program was called
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or value in ((), []):
            continue
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if param.param_type_name == "argument":
            words += [str(v) for v in values]
        elif getattr(param, "is_flag", False):
            words.append(max(param.opts, key=len) if value else max(param.secondary_opts, key=len))
        else:
            for v in values:
                words += [max(param.opts, key=len), str(v)]
    return shlex.join(words)


def _write_report(path: Path, scores, image_root: Optional[Path], context: dict) -> None:
    from vlground.eval.report import write_report

    try:
        write_report(path, scores, image_root=image_root, context=context)
    except OSError as error:
        fail(f"{path}: cannot write the report ({error.strerror or error})")


def _parameter(name: str, annotation, default) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def _annotation(option):
    """A benchmark option as typer reads it."""
    kind = option.type if option.default is not None else Optional[option.type]
    limits = {"min": option.min} if option.min is not None else {}
    return Annotated[kind, typer.Option(*option.flags, help=option.help, **limits)]


def _option_parameter(option) -> inspect.Parameter:
    return _parameter(option.name, _annotation(option), option.default)


def _eval_command(benchmark):
    """`vlground eval NAME` built from the benchmark's entry: --gt, --pred, its own options, the
    rows file, --strict and --json."""
    rows_name = benchmark.rows_option.replace("-", "_")

    def command(**values) -> None:
        gt, pred, rows_path, report = values.pop("gt"), values.pop("pred"), values.pop(rows_name), values.pop("report")
        as_json, strict, image_root = values.pop("as_json"), values.pop("strict"), values.pop("image_root", None)
        if benchmark.loads_images:
            values["image_root"] = image_root
        _run_benchmark(benchmark, gt, pred, rows_path, report, as_json, strict, values, image_root)

    parameters = [
        _parameter("gt", Annotated[Path, typer.Option("--gt", help=benchmark.gt_help)], inspect.Parameter.empty),
        _parameter("pred", Annotated[Path, typer.Option("--pred", help=benchmark.pred_help)], inspect.Parameter.empty),
        *(_option_parameter(option) for option in benchmark.options),
        _parameter(rows_name, Annotated[Optional[Path], typer.Option(help=benchmark.rows_help)], None),
        _parameter("report", REPORT, None),
        *([_parameter("image_root", IMAGE_ROOT, None)] if benchmark.draws_images else []),
        _parameter("strict", STRICT, False),
        _parameter("as_json", AS_JSON, False),
    ]
    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = benchmark.help
    command.__name__ = f"eval_{benchmark.name}"
    return command


for _name, _benchmark in BENCHMARKS.items():
    eval_app.command(_name)(_eval_command(_benchmark))


@eval_app.command("protocols")
def eval_protocols() -> None:
    """List the scoring protocols and what each one does."""
    width = max(len(name) for name in BENCHMARKS)
    for benchmark in BENCHMARKS.values():
        for name, summary in benchmark.protocols:
            typer.echo(f"{benchmark.name:{width}s} {name:10s} {summary}")


MODEL = Annotated[str, typer.Option("--model", "-m", help="Hub id or local checkpoint folder.")]
BENCH_LOADING = LOADING.but(served_model=None)


def _bench_batch(items: str) -> Flags:
    """The batch flags of a bench command: its --out folder always resumes (--overwrite starts it afresh)."""
    return BATCH.but(resume=None, retry_failed=Annotated[bool, typer.Option(
        "--retry-failed", rich_help_panel="Output", help=f"Answer the failed {items} again (--out always resumes).")])


_REFCOCO = {option.name: option for option in BENCHMARKS["refcoco"].options}
DATASET, SPLIT_BY, SPLIT = (_annotation(_REFCOCO[name]) for name in ("dataset", "split_by", "split"))


@bench_app.command("refcoco")
@with_flags
def bench_refcoco(
    model: MODEL,
    gt: GT,
    out: Annotated[Path, typer.Option(help="Folder of predictions, samples and report; rerun to resume.")] = Path("bench-refcoco"),
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N samples.")] = None,
    generation: GenerationOptions = DECODING,  # (the report's command line lists the options in this order)
    protocol: Annotated[str, typer.Option(help="Scoring protocol: family, qwen-vl or lmms-eval.")] = "family",
    image_root: Annotated[Optional[Path], typer.Option(help="Folder the GT's image paths are relative to.")] = None,
    dataset: DATASET = None,
    split_by: SPLIT_BY = None,
    split: SPLIT = None,
    load: LoadOptions = BENCH_LOADING,
    report: REPORT = None,
    strict: STRICT = False,
    run: RunOptions = _bench_batch("samples"),
    as_json: AS_JSON = False,
) -> None:
    """Ground every expression with MODEL, then score; an interrupted run resumes from --out."""
    from vlground.eval.inputs import InputProblems
    from vlground.eval.refcoco import RefCOCOScores, get_protocol, load_samples
    from vlground.jobs.bench import run_refcoco_bench

    problems = InputProblems(strict=strict)
    with _refused():
        get_protocol(protocol)
        samples = load_samples(gt, dataset=dataset, split_by=split_by, split=split, keep_images=True, problems=problems)
    answer_settings = _answer_settings(load)

    def start(model_in_process):
        return run_refcoco_bench(model_in_process, model, samples, out, gt_name=str(gt), image_root=image_root, limit=limit,
                                 generation=generation, load=load, run=run, protocol=protocol, problems=problems,
                                 html_report=report, settings=answer_settings, command=_command_line())

    _bench("refcoco", "samples", RefCOCOScores.describe, start, model=model, gt=gt, out=out, load=load, run=run, generation=generation,
           answer_settings=answer_settings, as_json=as_json)


STYLE = Annotated[str, typer.Option(rich_help_panel="Model", help="plain (the family's point prompt) or tool_call (the computer-use tool the Qwen cookbooks describe).")]


@bench_app.command("screenspot")
@with_flags
def bench_screenspot(
    model: MODEL,
    gt: Annotated[Path, typer.Option("--gt", help="A released ScreenSpot, ScreenSpot-v2 or ScreenSpot-Pro annotation file, or their folder.")],
    out: Annotated[Path, typer.Option(help="Folder of predictions, per-target rows and report; rerun to resume.")] = Path("bench-screenspot"),
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N targets.")] = None,
    generation: GenerationOptions = DECODING,  # (the report's command line lists the options in this order)
    style: STYLE = "plain",
    image_root: Annotated[Optional[Path], typer.Option(help="Folder of the screenshots the GT names (default: the GT's folder).")] = None,
    load: LoadOptions = BENCH_LOADING,
    report: REPORT = None,
    strict: STRICT = False,
    run: RunOptions = _bench_batch("targets"),
    as_json: AS_JSON = False,
) -> None:
    """Ask MODEL where to click for every instruction, then score as the official scripts do; an interrupted run resumes from --out."""
    from vlground.eval.benchmark import require_items
    from vlground.eval.inputs import InputProblems
    from vlground.eval.screenspot import ScreenSpotScores, load_screenspot
    from vlground.jobs.bench import run_screenspot_bench

    if style not in ("plain", "tool_call"):
        fail(f"--style is {style!r}; give plain or tool_call")
    problems = InputProblems(strict=strict)
    with _refused():
        targets = require_items(load_screenspot(gt, problems=problems, image_root=image_root), gt, problems, "targets")
    answer_settings = {**_answer_settings(load), "style": style}

    def start(model_in_process):
        return run_screenspot_bench(model_in_process, model, targets, out, gt_name=str(gt), image_root=image_root, limit=limit,
                                    style=style, generation=generation, load=load, run=run, problems=problems, html_report=report,
                                    settings=answer_settings, command=_command_line())

    _bench("screenspot", "targets", ScreenSpotScores.describe, start, model=model, gt=gt, out=out, load=load, run=run,
           generation=generation, answer_settings=answer_settings, as_json=as_json)


def _answer_settings(load) -> dict:
    """The loading settings a resumed bench run must share with the run it resumes."""
    return {"adapter": str(load.adapter) if load.adapter is not None else None, "merge_adapter": load.merge_adapter,
            "min_pixels": load.min_pixels, "max_pixels": load.max_pixels, "dtype": load.dtype}


def _bench(name: str, items: str, describe, start, *, model: str, gt: Path, out: Path, load, run, generation, answer_settings: dict,
           as_json: bool) -> None:
    """What every bench command does around its job (`start(model or None)`): refuse a resume with
    other settings before the model loads, load it here for an in-process run, then report."""
    from vlground.jobs.bench import bench_run, check_run
    from vlground.jobs.isolation import WorkerSetupError

    if not run.overwrite:
        with _refused():  # a resume with other settings is refused before the model loads
            check_run(Path(out), bench_run(model, str(gt), answer_settings, generation.max_new_tokens, generation.thinking,
                                           generation.max_thinking_tokens))
    model_in_process = _model(model, load) if run.ray is None and (run.workers or 1) == 1 else None
    started = time.monotonic()
    try:
        with reported(WorkerSetupError, ValueError), _refused():
            outcome = start(model_in_process)
    except OSError as error:  # the output folder or the report cannot be written
        fail(f"{error.filename or out}: cannot write ({error.strerror or error})")
    _warn(outcome)
    if outcome["failed_all"]:
        fail(f"every one of the {outcome['n']} {items} failed, none was answered (first: {outcome['first_error']}); "
             "check --image-root and the model; the error lines are in " + str(out / "predictions.jsonl"), code=1)
    if not run.quiet:
        typer.echo(f"bench {name}: {outcome['answered_this_run']} answered in {time.monotonic() - started:.0f} s, "
                   f"{outcome['errors']} errors, {outcome['n']} scored", err=True)
    summary = {k: v for k, v in outcome.items() if k != "worst"}
    typer.echo(json.dumps(summary) if as_json else "\n".join(
        describe(outcome) + [f"errors {outcome['errors']}; predictions and report in {out}"]))


def _model(model: str, load):
    """The model, loaded here so that a model that cannot load fails before any sample is read."""
    import vlground
    from vlground.extras import MissingExtraError
    from vlground.core.families import UnknownFamilyError

    try:
        return vlground.load_model(model, load)
    except (UnknownFamilyError, ValueError, MemoryError, OSError, MissingExtraError) as error:  # OSError: weights or files missing
        fail(str(error))


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
    app.add_typer(bench_app, name="bench")
