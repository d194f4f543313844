"""`vlground eval ...` (score prediction files under a named protocol) and `vlground bench refcoco`
(run a model over RefCOCO and score it). Arguments only; the work is in `vlground.eval`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from vlground.cli.errors import fail

eval_app = typer.Typer(help="Score predictions exactly as the reference evaluators do.", no_args_is_help=True)
bench_app = typer.Typer(help="Run a model over a benchmark, write its predictions and a report, and score them.", no_args_is_help=True)

GT = Annotated[Path, typer.Option("--gt", help="Ground-truth file (or folder).")]
PRED = Annotated[Path, typer.Option("--pred", help="Predictions: JSON lines, or a JSON array of objects.")]
AS_JSON = Annotated[bool, typer.Option("--json", help="Print the scores as one JSON object (fractions, not percent).")]
DATASET = Annotated[Optional[str], typer.Option(help="refer data: refcoco, refcoco+ or refcocog (GT is then the data folder).")]
SPLIT_BY = Annotated[Optional[str], typer.Option(help="refer data: unc, google or umd (default unc; umd for refcocog).")]
SPLIT = Annotated[Optional[str], typer.Option(help="Keep one split (val, testA, testB, test); default: all but train.")]


def _warn_alignment(summary: dict) -> None:
    """Say on stderr what could not be matched, so a number is never quietly built on fewer inputs."""
    notes = [f"{summary[k]} {k}" for k in ("missing", "unmatched", "duplicates", "malformed") if summary.get(k)]
    if notes:
        typer.echo(f"warning: predictions aligned by {summary['aligned_by']}: {', '.join(notes)} "
                   "(missing answers count as wrong)", err=True)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _score_answers(pred: Path, score, rows, per_item_path: Optional[Path], as_json: bool, line) -> None:
    """The shared body of the answer benchmarks: read PRED, score it with `score(records, malformed)`,
    warn about alignment, write `rows(scores)` on request, print JSON or `line(summary)`."""
    from vlground.eval.errors import EvalInputError
    from vlground.eval.predictions import read_predictions

    try:
        predictions = read_predictions(pred)
        scores = score(predictions.records, len(predictions.malformed))
    except (EvalInputError, ValueError) as error:
        fail(str(error))
    summary = scores.summary()
    _warn_alignment(summary)
    if per_item_path is not None:
        _write_jsonl(per_item_path, rows(scores))
    typer.echo(json.dumps(summary) if as_json else line(summary))


def _refcoco_lines(summary: dict) -> list[str]:
    lines = [
        f"protocol {summary['protocol']}: accuracy@0.5 {summary['accuracy'] * 100:.2f} on {summary['n']} samples, "
        f"mean IoU {summary['mean_iou']:.4f}, centre {summary['centre_accuracy'] * 100:.2f}, unparsable {summary['unparsable']}",
        "  accuracy at IoU " + "  ".join(f"{t}: {v * 100:.2f}" for t, v in summary["accuracy_at"].items()),
    ]
    for name, split in summary["splits"].items():
        lines.append(f"  {name}: {split['accuracy'] * 100:.2f} on {split['n']} (unparsable {split['unparsable']})")
    return lines


def _load_refcoco(gt: Path, dataset, split_by, split, instances=None, keep_images=False):
    from vlground.eval.errors import EvalInputError
    from vlground.eval.refcoco_data import load_refcoco

    try:
        samples = load_refcoco(gt, dataset=dataset, split_by=split_by, split=split, instances=instances, keep_images=keep_images)
    except EvalInputError as error:
        fail(str(error))
    if not samples:
        fail(f"{gt}: no samples" + (f" in split {split!r}" if split else ""))
    return samples


@eval_app.command("refcoco")
def eval_refcoco(
    gt: GT,
    pred: PRED,
    protocol: Annotated[str, typer.Option(help="family (default: the family's grammar and frame), qwen-vl or lmms-eval.")] = "family",
    family: Annotated[Optional[str], typer.Option("--family", "-f", help="Model family or hub id whose grammar reads the text (protocol family).")] = None,
    dataset: DATASET = None,
    split_by: SPLIT_BY = None,
    split: SPLIT = None,
    instances: Annotated[Optional[Path], typer.Option(help="refer data: instances.json (default: beside the refs file).")] = None,
    per_sample: Annotated[Optional[Path], typer.Option(help="Write IoU, hit and boxes per sample to this JSON-lines file.")] = None,
    reference_gpus: Annotated[int, typer.Option(min=1, help="Count only what Qwen-VL's script scores when run on this many GPUs ...")] = 1,
    reference_batch_size: Annotated[int, typer.Option(min=1, help="... with this --batch-size (its drop_last=True skips each GPU's last partial batch).")] = 1,
    as_json: AS_JSON = False,
) -> None:
    """Referring-expression accuracy (IoU >= 0.5) and more, under a named protocol."""
    from vlground.eval.errors import EvalInputError
    from vlground.eval.predictions import read_predictions
    from vlground.eval.refcoco import ProtocolError, reference_run_kept, score_refcoco
    from vlground.families import UnknownFamilyError

    samples = _load_refcoco(gt, dataset, split_by, split, instances)
    try:
        predictions = read_predictions(pred)
        counted = None
        if (reference_gpus, reference_batch_size) != (1, 1):
            counted = reference_run_kept(len(samples), reference_gpus, reference_batch_size)
        scores = score_refcoco(samples, predictions.records, protocol, family, malformed=len(predictions.malformed), counted=counted)
    except (EvalInputError, ProtocolError, UnknownFamilyError) as error:
        fail(str(error))
    summary = scores.summary()
    _warn_alignment(summary)
    if per_sample is not None:
        _write_jsonl(per_sample, [
            {"index": i, "id": s.id, "split": s.split, "iou": float(scores.ious[i]), "hit": bool(scores.hits[i]),
             "centre_hit": bool(scores.centre[i]), "parsed": bool(scores.parsed[i]), "gt_box": list(s.box),
             "pred_box": None if not scores.present[i] or not scores.parsed[i] else [float(v) for v in scores.pred_boxes[i]]}
            for i, s in enumerate(samples)
        ])
    typer.echo(json.dumps(summary) if as_json else "\n".join(_refcoco_lines(summary)))


@eval_app.command("textvqa")
def eval_textvqa(
    gt: GT,
    pred: PRED,
    protocol: Annotated[str, typer.Option(help="textvqa (official EvalAI normalization) or vqa-v2 (Qwen-VL's VQA evaluator).")] = "textvqa",
    per_question: Annotated[Optional[Path], typer.Option(help="Write each question's normalized answer and score to this JSON-lines file.")] = None,
    as_json: AS_JSON = False,
) -> None:
    """TextVQA accuracy (soft VQA score over the 10 human answers)."""
    from vlground.eval.textvqa import load_textvqa, score_textvqa

    _score_answers(
        pred,
        lambda records, malformed: score_textvqa(load_textvqa(gt), records, protocol, malformed=malformed),
        lambda scores: scores.per_question,
        per_question,
        as_json,
        lambda summary: f"protocol {summary['protocol']}: accuracy {summary['accuracy'] * 100:.2f} on {summary['n']} "
        f"questions ({summary['no_answer']} without an answer)",
    )


@eval_app.command("docvqa")
def eval_docvqa(
    gt: GT,
    pred: PRED,
    threshold: Annotated[float, typer.Option(help="ANLS threshold: scores below it count 0.")] = 0.5,
    per_question: Annotated[Optional[Path], typer.Option(help="Write each question's score to this JSON-lines file.")] = None,
    as_json: AS_JSON = False,
) -> None:
    """DocVQA / InfographicVQA ANLS, as the challenge evaluator computes it."""
    from vlground.eval.docvqa import load_docvqa, score_docvqa

    _score_answers(
        pred,
        lambda records, malformed: score_docvqa(load_docvqa(gt), records, threshold, malformed=malformed),
        lambda scores: scores.per_question,
        per_question,
        as_json,
        lambda summary: f"ANLS {summary['anls']:.4f} on {summary['n']} questions ({summary['no_answer']} without an answer)",
    )


@eval_app.command("ocr")
def eval_ocr(
    gt: Annotated[Path, typer.Option("--gt", help='References: JSON lines {"path", "text"}, or a folder of .txt files named like the images.')],
    pred: Annotated[Path, typer.Option("--pred", help="The JSON lines `vlground ocr` writes.")],
    ignore_case: Annotated[bool, typer.Option(help="Lowercase both sides before comparing.")] = False,
    per_document: Annotated[Optional[Path], typer.Option(help="Write each document's edit counts to this JSON-lines file.")] = None,
    as_json: AS_JSON = False,
) -> None:
    """Character and word error rates of OCR output (whitespace runs count as one space)."""
    from vlground.eval.ocr import load_transcriptions, score_ocr

    _score_answers(
        pred,
        lambda records, malformed: score_ocr(load_transcriptions(gt), records, ignore_case=ignore_case, malformed=malformed),
        lambda scores: scores.per_document,
        per_document,
        as_json,
        lambda summary: f"CER {summary['cer'] * 100:.2f}%  WER {summary['wer'] * 100:.2f}% on {summary['n']} documents "
        f"({summary['errors']} without text)",
    )


@eval_app.command("protocols")
def eval_protocols() -> None:
    """List the scoring protocols and what each one does."""
    from vlground.eval.refcoco import PROTOCOLS
    from vlground.eval.textvqa import VQA_PROTOCOLS

    for name, protocol in PROTOCOLS.items():
        typer.echo(f"refcoco  {name:10s} {protocol.summary}")
    for name, protocol in VQA_PROTOCOLS.items():
        typer.echo(f"textvqa  {name:10s} {protocol.summary}")
    typer.echo("docvqa   anls       challenge evaluator: normalized Levenshtein over raw lengths, threshold 0.5")


@bench_app.command("refcoco")
def bench_refcoco(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id or local checkpoint folder.")],
    gt: GT,
    out: Annotated[Path, typer.Option(help="Folder for predictions.jsonl, samples.jsonl and report.json; rerun to resume.")] = Path("bench-refcoco"),
    limit: Annotated[Optional[int], typer.Option(min=1, help="Only the first N samples.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model batch.")] = 8,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, help="Cap on generated tokens (default: the family's for grounding).")] = None,
    protocol: Annotated[str, typer.Option(help="Scoring protocol: family, qwen-vl or lmms-eval.")] = "family",
    image_root: Annotated[Optional[Path], typer.Option(help="Folder the ground truth's image paths are relative to (default: the GT's folder).")] = None,
    dataset: DATASET = None,
    split_by: SPLIT_BY = None,
    split: SPLIT = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, bf16, fp16 or fp32.")] = "auto",
    as_json: AS_JSON = False,
) -> None:
    """Ground every expression with MODEL, then score; an interrupted run resumes from --out."""
    from vlground.eval.bench import run_refcoco_bench
    from vlground.eval.errors import EvalInputError
    from vlground.eval.refcoco import ProtocolError, get_protocol
    from vlground.families import UnknownFamilyError

    try:
        get_protocol(protocol)
    except ProtocolError as error:
        fail(str(error))
    samples = _load_refcoco(gt, dataset, split_by, split, keep_images=True)
    import vlground

    try:
        runner = vlground.load_model(model, device=device, dtype=dtype)
    except (UnknownFamilyError, ValueError, MemoryError, OSError) as error:  # OSError: weights or files missing
        fail(str(error))
    root = image_root if image_root is not None else (gt if gt.is_dir() else gt.parent)
    try:
        report = run_refcoco_bench(
            runner, model, samples, out, gt_name=str(gt), image_root=root, limit=limit, batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            protocol=protocol, progress=lambda done, total: typer.echo(f"{done}/{total} answered", err=True),
        )
    except EvalInputError as error:
        fail(str(error))
    summary = {k: v for k, v in report.items() if k != "worst"}
    typer.echo(json.dumps(summary) if as_json else "\n".join(
        _refcoco_lines(report) + [f"errors {report['errors']}; predictions and report in {out}"]))


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
    app.add_typer(bench_app, name="bench")
