"""An evaluation as one self-contained HTML file: the headline numbers and the protocol that made
them, plots, and the samples worth looking at.

    write_report("refcoco.html", scores, ground_truth=samples, image_root="coco/train2014")

`scores` is what `vlground.eval` returns (RefCOCO, TextVQA, DocVQA, OCR or ScreenSpot scores). RefCOCO
gets, per split, accuracy against the IoU threshold (0.1 to 0.9), the IoU histogram, the worst samples
with ground truth and prediction drawn on their images (when the images are at hand) and every
unparsable answer with its raw text; TextVQA and DocVQA get the score histogram and the worst questions
with the normalized answers; OCR the per-document error rates; ScreenSpot its breakdowns (platform,
group, application, source; text and icon in each), the worst misses (farthest from their box) drawn
as the screenshot around the target box and the click, and the answers that gave no click. Images and plots are embedded as data: URIs,
so the file opens anywhere, offline, and can be mailed or archived as it is."""
from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

WORST = 12  # samples or questions listed as the worst
UNPARSABLE_SHOWN = 50
THUMBNAIL_SIDE = 360
PERCENT_KEYS = {"accuracy", "centre_accuracy", "anls", "cer", "wer", "mean_document_cer", "text_accuracy", "icon_accuracy", "macro_accuracy"}
STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.plots img { max-width: 48%; margin-right: 1%; }
.samples { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; width: 360px; }
figcaption { font-size: 0.85em; }
code, pre { white-space: pre-wrap; word-break: break-all; }
"""


def write_report(
    path: str | Path,
    scores: Any,
    *,
    ground_truth: Sequence[Any] | None = None,
    image_root: str | Path | None = None,
    context: dict[str, str] | None = None,
) -> Path:
    """Write the report of `scores` to `path` (atomically: a temporary file renamed into place) and
    return the path. The ground truth (RefCOCO samples: boxes, sentences and images; VQA questions:
    the human answers) is the one the scores hold, unless `ground_truth` gives it; `image_root` is
    where relative image names of RefCOCO samples are found. `context` lines (command, model, files)
    are shown with the protocol."""
    kind, body = _body(scores, ground_truth, image_root)
    summary = scores.summary()
    sections = [_headline(kind, summary, _protocol_text(kind, summary), context or {}), *body]
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{kind} evaluation</title>'
        f"<style>{STYLE}</style></head><body><h1>{kind} evaluation</h1>\n" + "\n".join(sections) + "\n</body></html>\n"
    )
    from vlground.io.sink import atomic_write

    atomic_write(path, page)
    return Path(path)


def _body(scores: Any, ground_truth, image_root) -> tuple[str, list[str]]:
    from vlground.eval.docvqa import ANLSScores
    from vlground.eval.ocr import OCRScores
    from vlground.eval.refcoco import RefCOCOScores
    from vlground.eval.screenspot import ScreenSpotScores
    from vlground.eval.textvqa import VQAScores

    if not isinstance(scores, (RefCOCOScores, VQAScores, ANLSScores, OCRScores, ScreenSpotScores)):
        raise ValueError(f"no report for {type(scores).__name__}: give RefCOCO, TextVQA, DocVQA, OCR or ScreenSpot scores")
    items = ground_truth if ground_truth is not None else (list(scores.ground_truth) or None)
    if isinstance(scores, RefCOCOScores):
        return "RefCOCO", _refcoco(scores, items, Path(image_root) if image_root is not None else None)
    if isinstance(scores, ScreenSpotScores):
        return "ScreenSpot", _screenspot(scores, Path(image_root) if image_root is not None else None)
    if isinstance(scores, VQAScores):
        return "TextVQA", _answers(scores, items, "accuracy")
    if isinstance(scores, ANLSScores):
        return "DocVQA", _answers(scores, items, "ANLS")
    return "OCR", _ocr(scores)


def _protocol_text(kind: str, summary: dict) -> str:
    """What the named protocol does, from the registries the scores came from."""
    if kind == "RefCOCO":
        from vlground.eval.refcoco import get_protocol

        return f"{summary['protocol']}: {get_protocol(summary['protocol']).summary}"
    if kind == "TextVQA":
        from vlground.eval.textvqa import VQA_PROTOCOLS

        return f"{summary['protocol']}: {VQA_PROTOCOLS[summary['protocol']].summary}"
    if kind == "DocVQA":
        return "ANLS as the DocVQA challenge evaluator computes it (scores below the threshold count 0)"
    if kind == "ScreenSpot":
        from vlground.eval.screenspot import get_protocol as screenspot_protocol

        return f"{summary['protocol']}: {screenspot_protocol(summary['protocol']).summary}; a hit is the click inside the box, edges included"
    return "corpus-level CER and WER after collapsing whitespace runs"


# --- HTML pieces ------------------------------------------------------------------------------


def _number(key: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{value * 100:.2f}%" if key in PERCENT_KEYS else f"{value:.4f}"
    return str(value)


def _table(headers: Sequence[str] | None, rows: Sequence[Sequence[Any]]) -> str:
    """A table of already-formatted cells (no header row without `headers`); strings are escaped,
    `_Raw` cells are not."""
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>" if headers else ""
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


class _Raw(str):
    """HTML that goes into a table cell as it is."""


def _cell(value: Any) -> str:
    return value if isinstance(value, _Raw) else html.escape(str(value))


def _headline(kind: str, summary: dict, protocol: str, context: dict[str, str]) -> str:
    numbers = [(k, _number(k, v)) for k, v in summary.items() if not isinstance(v, (dict, list)) and k != "protocol"]
    lines = [("protocol", protocol), *context.items()]
    refused = summary.get("invalid_inputs") or []
    return (
        "<h2>Headline</h2>" + _table(["metric", "value"], numbers)
        + "<h2>Protocol</h2>" + _table(None, lines)
        + (f"<h2>Refused inputs (first {len(refused)})</h2>" + _table(None, [(r,) for r in refused]) if refused else "")
    )


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def plots(scores: Any) -> dict[str, bytes]:
    """The report's plots as PNG bytes, by title (in a notebook: `IPython.display.Image(png)`)."""
    from vlground.eval.ocr import OCRScores
    from vlground.eval.refcoco import RefCOCOScores
    from vlground.eval.screenspot import ScreenSpotScores

    if isinstance(scores, ScreenSpotScores):
        return {"Accuracy per platform": _platform_bars(scores.summary()["platforms"])}
    if isinstance(scores, RefCOCOScores):
        return {"Accuracy against the IoU threshold": _threshold_plot(scores.summary()), "IoU histogram": _iou_histograms(scores)}
    if isinstance(scores, OCRScores):
        return {"CER per document": _histogram([min(1.0, d["cer"]) for d in scores.per_document], "CER (capped at 1)", "CER per document")}
    metric = "ANLS" if scores.metric == "anls" else scores.metric
    return {f"{metric} per question": _histogram([q["score"] for q in scores.per_question], metric, f"{metric} per question")}


def _plot_row(scores: Any) -> str:
    images = "".join(f'<img src="{_data_uri(png, "image/png")}" alt="{html.escape(title)}">' for title, png in plots(scores).items())
    return f'<div class="plots">{images}</div>'


def _png(draw: Callable[[Any], None]) -> bytes:
    """A matplotlib figure drawn by `draw(axes)`, as PNG (Agg, no pyplot state)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.6, 3.6), dpi=100, layout="constrained")
    draw(figure.subplots())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _histogram(values: Sequence[float], xlabel: str, title: str) -> bytes:
    def draw(ax):
        ax.hist(np.asarray(values, dtype=float), bins=np.linspace(0, 1, 21), color="#4c72b0", edgecolor="white")
        ax.set(xlabel=xlabel, ylabel="items", title=title, xlim=(0, 1))

    return _png(draw)


# --- RefCOCO ----------------------------------------------------------------------------------


def _refcoco(scores, samples, image_root: Path | None) -> list[str]:
    summary = scores.summary()
    splits = {"all": summary} | summary["splits"]
    split_rows = [
        (name, s["n"], f"{s['mean_iou']:.4f}", s["unparsable"], *(_number("accuracy", v) for v in s["accuracy_at"].values()))
        for name, s in splits.items()
    ]
    thresholds = [f"acc@{t}" for t in summary["accuracy_at"]]
    return [
        "<h2>Per split</h2>" + _table(["split", "samples", "mean IoU", "unparsable", *thresholds], split_rows),
        _plot_row(scores),
        _worst_samples(scores, samples, image_root),
        _unparsable(scores, samples),
    ]


def _threshold_plot(summary: dict) -> bytes:
    def draw(ax):
        curves = {"all": summary["accuracy_at"]} | {name: s["accuracy_at"] for name, s in summary["splits"].items()}
        for name, at in curves.items():
            ax.plot([float(t) for t in at], [v * 100 for v in at.values()], marker="o", label=name)
        ax.set(xlabel="IoU threshold", ylabel="accuracy (%)", title="Accuracy against the IoU threshold", ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend()

    return _png(draw)


def _iou_histograms(scores) -> bytes:
    splits = np.array(scores.splits, dtype=object)
    mask = np.ones(len(splits), dtype=bool) if scores.counted is None else scores.counted

    def draw(ax):
        names = list(dict.fromkeys(scores.splits))
        ax.hist([scores.ious[(splits == name) & mask] for name in names], bins=np.linspace(0, 1, 11), label=names)
        ax.axvline(0.5, color="#c44e52", linestyle="--")
        ax.set(xlabel="IoU with the ground truth", ylabel="samples", title="IoU histogram", xlim=(0, 1))
        ax.legend()

    return _png(draw)


def _drawn_sample(sample, pred_box: np.ndarray | None, image_root: Path | None) -> str:
    """An <img> of the sample with its ground truth and prediction (None: no box) drawn, or a note
    saying why it cannot be shown."""
    from vlground.core.results import Detection, Result
    from vlground.eval.refcoco_data import load_sample_image
    from vlground.io.images import ImageLoadError
    from vlground.viz import annotate

    try:
        image = load_sample_image(sample, image_root)
    except ImageLoadError as error:
        return f"<p><i>image not at hand: {html.escape(str(error))}</i></p>"
    if image.size != (sample.width, sample.height):
        return f"<p><i>image is {image.size}, the ground truth says {(sample.width, sample.height)}</i></p>"
    detections = [Detection("ground truth", box=tuple(sample.box))]
    if pred_box is not None and not np.isnan(pred_box).any():
        detections.append(Detection("prediction", box=tuple(float(v) for v in pred_box)))
    picture = annotate(image, Result(detections, "", image.size))
    picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80)
    return f'<img src="{_data_uri(buffer.getvalue(), "image/jpeg")}" alt="{html.escape(sample.sent)}">'


def _worst_samples(scores, samples, image_root: Path | None) -> str:
    order = np.argsort(scores.ious, kind="stable")[:WORST]
    if samples is None:
        rows = [(int(i), scores.splits[i], f"{scores.ious[i]:.3f}") for i in order]
        return "<h2>Worst samples</h2>" + _table(["index", "split", "IoU"], rows)
    figures = []
    for i in order:
        sample = samples[i]
        caption = f"#{i} {sample.split}: “{sample.sent}” — IoU {scores.ious[i]:.3f}"
        if not scores.present[i]:
            caption += " (no prediction)"
        elif not scores.parsed[i]:
            caption += " (unparsable)"
        pred_box = scores.pred_boxes[i] if scores.parsed[i] else None  # an unparsable answer's stand-in box is not drawn
        figures.append(f"<figure>{_drawn_sample(sample, pred_box, image_root)}"
                       f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "<h2>Worst samples</h2><p>ground truth and prediction drawn, lowest IoU first</p>" \
        f'<div class="samples">{"".join(figures)}</div>'


def _unparsable(scores, samples) -> str:
    rows_at = np.flatnonzero(scores.present & ~scores.parsed)
    rows = []
    for i in rows_at[:UNPARSABLE_SHOWN]:
        record = scores.alignment.records[i]
        raw = record.get("text") if record.get("text") is not None else record.get("error") or record.get("box")
        sent = samples[i].sent if samples is not None else ""
        rows.append((int(i), sent, _Raw(f"<code>{html.escape(repr(raw))}</code>")))
    shown = f" (first {UNPARSABLE_SHOWN})" if len(rows_at) > UNPARSABLE_SHOWN else ""
    if not rows:
        return "<h2>Unparsable answers</h2><p>none</p>"
    return f"<h2>Unparsable answers: {len(rows_at)}{shown}</h2>" + _table(["index", "expression", "raw answer"], rows)


# --- ScreenSpot -------------------------------------------------------------------------------

CROP_MARGIN = 160  # pixels of screenshot kept around the target box and the click, at least


def _screenspot(scores, image_root: Path | None) -> list[str]:
    summary = scores.summary()
    tables = []
    for title, key in (("platform", "platforms"), ("application group", "groups"), ("application", "applications"), ("data source", "sources")):
        if summary.get(key):
            rows = [(name, m["n"], _number("accuracy", m["accuracy"]), _number("accuracy", m["text_accuracy"]),
                     _number("accuracy", m["icon_accuracy"]), m["wrong_format"]) for name, m in summary[key].items()]
            tables.append(f"<h2>Per {title}</h2>" + _table([title, "targets", "accuracy", "text", "icon", "wrong format"], rows))
    return [*tables, _plot_row(scores), _worst_misses(scores, image_root), _no_click(scores)]


def _platform_bars(platforms: dict) -> bytes:
    def draw(ax):
        names = list(platforms)
        at = np.arange(len(names))
        for shift, key in ((-0.27, "accuracy"), (0.0, "text_accuracy"), (0.27, "icon_accuracy")):
            ax.bar(at + shift, [platforms[n][key] * 100 for n in names], width=0.26, label=key.replace("_accuracy", "") if key != "accuracy" else "all")
        ax.set_xticks(at, names)
        ax.set(ylabel="accuracy (%)", title="Accuracy per platform", ylim=(0, 100))
        ax.legend()

    return _png(draw)


def _drawn_click(target, click: np.ndarray, image_root: Path | None) -> str:
    """An <img> of the screenshot around the target box and the click, both drawn, or a note saying
    why it cannot be shown. Screenshots are large and targets small: the picture is cut to the box
    and the click with a margin before it is shrunk."""
    from vlground.core.results import Detection, Result
    from vlground.io.images import ImageLoadError, load_image
    from vlground.viz import annotate

    try:
        image = load_image(image_root / target.image if image_root is not None else target.image)
    except ImageLoadError as error:
        return f"<p><i>image not at hand: {html.escape(str(error))}</i></p>"
    if target.image_size is not None and image.size != tuple(target.image_size):
        return f"<p><i>image is {image.size}, the ground truth says {tuple(target.image_size)}</i></p>"
    width, height = image.size
    x, y = (float(v) for v in click)
    inside = 0 <= x <= width and 0 <= y <= height
    detections = [Detection("target", box=tuple(float(v) for v in target.box))]
    if inside:
        detections.append(Detection("click", point=(x, y)))
    picture = annotate(image, Result(detections, "", image.size))
    xs = [target.box[0], target.box[2]] + ([x] if inside else [])
    ys = [target.box[1], target.box[3]] + ([y] if inside else [])
    margin = max(CROP_MARGIN, (max(xs) - min(xs)) / 2, (max(ys) - min(ys)) / 2)
    picture = picture.crop((max(0, int(min(xs) - margin)), max(0, int(min(ys) - margin)),
                            min(width, int(max(xs) + margin) + 1), min(height, int(max(ys) + margin) + 1)))
    picture.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return f'<img src="{_data_uri(buffer.getvalue(), "image/jpeg")}" alt="{html.escape(target.instruction)}">'


def _worst_misses(scores, image_root: Path | None) -> str:
    order = scores.worst_misses(WORST)
    if not order:
        return "<h2>Worst misses</h2><p>none</p>"
    figures = []
    for i in order:
        target = scores.targets[i]
        x, y = scores.clicks[i]
        caption = (f"#{i} {target.platform} {target.ui_type}: “{target.instruction}” — click ({x:.0f}, {y:.0f}), "
                   f"{scores.distance[i]:.0f} px from the box")
        width, height = target.image_size or (np.inf, np.inf)
        if not (0 <= x <= width and 0 <= y <= height):
            caption += " (outside the screenshot)"
        figures.append(f"<figure>{_drawn_click(target, scores.clicks[i], image_root)}<figcaption>{html.escape(caption)}</figcaption></figure>")
    return ("<h2>Worst misses</h2><p>target box and click drawn, farthest from the box first</p>"
            f'<div class="samples">{"".join(figures)}</div>')


def _no_click(scores) -> str:
    """Every answer that gave no click (wrong format, a failed run, a refused line), with its raw text."""
    rows_at = [i for i, status in enumerate(scores.status) if status in ("wrong_format", "error", "refused")]
    if not rows_at:
        return "<h2>Answers without a click</h2><p>none</p>"
    rows = []
    for i in rows_at[:UNPARSABLE_SHOWN]:
        record = scores.alignment.records[i] or {}
        raw = record.get("text") if record.get("text") is not None else record.get("error") or record.get("point")
        rows.append((int(i), scores.targets[i].instruction, scores.status[i], _Raw(f"<code>{html.escape(repr(raw))}</code>")))
    shown = f" (first {UNPARSABLE_SHOWN})" if len(rows_at) > UNPARSABLE_SHOWN else ""
    return f"<h2>Answers without a click: {len(rows_at)}{shown}</h2>" + _table(["index", "instruction", "status", "raw answer"], rows)


# --- answers (TextVQA, DocVQA) and OCR -------------------------------------------------------------


def _normalizers(scores) -> tuple[Callable[[str], str], Callable[[list[str]], list[str]]]:
    """How the protocol normalizes (the prediction, the human answers) before comparing them."""
    from vlground.eval.docvqa import _normalize as anls_normalize
    from vlground.eval.textvqa import VQA_PROTOCOLS, VQAScores

    if isinstance(scores, VQAScores):
        protocol = VQA_PROTOCOLS[scores.protocol]
        return protocol.prediction, protocol.answers
    return anls_normalize, lambda answers: [anls_normalize(a) for a in answers]


def _answers(scores, questions, metric: str) -> list[str]:
    values = np.array([q["score"] for q in scores.per_question], dtype=float)
    order = np.argsort(values, kind="stable")[:WORST]
    prediction, answers = _normalizers(scores)
    rows = []
    for i in order:
        q = scores.per_question[i]
        normalized = "" if q["answer"] is None else prediction(q["answer"])
        humans = answers(list(questions[i].answers)) if questions is not None else []
        counted = ", ".join(f"{a} ×{n}" if n > 1 else a for a, n in Counter(humans).most_common())
        rows.append((q["question_id"], "(none)" if q["answer"] is None else q["answer"], normalized, counted, f"{q['score']:.3f}"))
    return [
        _plot_row(scores),
        f"<h2>Worst questions</h2>"
        + _table(["question", "answer", "normalized", "human answers (as compared)", metric], rows),
    ]


def _ocr(scores) -> list[str]:
    docs = scores.per_document
    values = np.array([min(1.0, d["cer"]) for d in docs], dtype=float)
    order = np.argsort(-values, kind="stable")[:WORST]
    rows = [(docs[i]["path"], f"{docs[i]['cer'] * 100:.2f}%", docs[i]["char_edits"], docs[i]["ref_chars"],
             docs[i]["error"] or "") for i in order]
    return [
        _plot_row(scores),
        "<h2>Worst documents</h2>" + _table(["document", "CER", "edits", "reference characters", "error"], rows),
    ]
