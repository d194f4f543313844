"""`vlground eval ...` from the command line: JSON output, hand-checked numbers, clean failures."""
from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from vlground.cli.eval import register
from vlground.extras import missing


@pytest.fixture(scope="module")
def app():
    application = typer.Typer()
    register(application)
    return application


def run(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_refcoco_json_under_each_protocol(app, tmp_path):
    gt = write_lines(tmp_path / "refcoco_val.jsonl", [
        {"image": "a.jpg", "sent": "left", "bbox": [0, 0, 14.15, 14.15], "width": 1000, "height": 1000},
        {"image": "b.jpg", "sent": "dog", "bbox": [100, 100, 200, 200], "width": 640, "height": 480},
    ])
    pred = write_lines(tmp_path / "pred.jsonl", [{"text": "(0,0),(10,10)"}, {"text": "<ref>dog</ref><box>(156,208),(312,416)</box>"}])
    qwen = run(app, "eval", "refcoco", "--gt", gt, "--pred", pred, "--protocol", "qwen-vl", "--json")
    assert qwen.exit_code == 0, qwen.output
    summary = json.loads(qwen.stdout)
    assert (summary["accuracy"], summary["n"], summary["protocol"]) == (1.0, 2, "qwen-vl")
    family = json.loads(run(app, "eval", "refcoco", "--gt", gt, "--pred", pred, "--family", "qwen-vl", "--json").stdout)
    assert family["accuracy"] == 0.5  # /1000 misses the borderline first sample
    per_sample = tmp_path / "samples.jsonl"
    text = run(app, "eval", "refcoco", "--gt", gt, "--pred", pred, "--protocol", "qwen-vl", "--per-sample", per_sample)
    assert "accuracy@0.5 100.00 on 2 samples" in text.stdout
    assert [json.loads(line)["hit"] for line in per_sample.read_text().splitlines()] == [True, True]


def test_eval_refcoco_warns_about_missing_predictions(app, tmp_path):
    gt = write_lines(tmp_path / "gt.jsonl", [{"image": "a.jpg", "sent": "x", "bbox": [0, 0, 5, 5], "width": 10, "height": 10}] * 3)
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"box": [0, 0, 5, 5]}\nnot json\n')
    result = run(app, "eval", "refcoco", "--gt", gt, "--pred", pred, "--protocol", "qwen-vl", "--json")
    summary = json.loads(result.stdout)
    assert (summary["accuracy"], summary["missing"], summary["malformed"]) == (pytest.approx(1 / 3), 1, 1)
    assert "1 missing" in result.stderr and "1 malformed" in result.stderr


def test_eval_textvqa_issue_vectors_under_both_protocols(app, tmp_path):
    answers = [["Nokia"] * 10, ["2"] * 3 + ["two"] * 7, ["x y"] * 10, ["5"] * 10]
    gt = tmp_path / "TextVQA_0.5.1_val.json"
    gt.write_text(json.dumps({"data": [{"question_id": i, "answers": a} for i, a in enumerate(answers)]}))
    pred = tmp_path / "submission.json"
    pred.write_text(json.dumps([{"question_id": i, "answer": a} for i, a in enumerate(["Nokia", "two", "x,y", "5."])]))
    official = json.loads(run(app, "eval", "textvqa", "--gt", gt, "--pred", pred, "--json").stdout)
    qwen = json.loads(run(app, "eval", "textvqa", "--gt", gt, "--pred", pred, "--protocol", "vqa-v2", "--json").stdout)
    assert (official["accuracy"], official["n"]) == (pytest.approx(3 / 4), 4)
    assert qwen["accuracy"] == pytest.approx((0 + 0.9 + 1 + 1) / 4)
    scores = tmp_path / "scores.jsonl"
    run(app, "eval", "textvqa", "--gt", gt, "--pred", pred, "--per-question", scores)
    assert [json.loads(line)["score"] for line in scores.read_text().splitlines()] == [1.0, 1.0, 0.0, 1.0]


def test_eval_docvqa_json(app, tmp_path):
    gt = tmp_path / "val_v1.0.json"
    gt.write_text(json.dumps({"data": [{"questionId": 5, "answers": ["abc"]}]}))
    pred = tmp_path / "submission.json"
    pred.write_text(json.dumps([{"questionId": 5, "answer": "abd   "}]))
    summary = json.loads(run(app, "eval", "docvqa", "--gt", gt, "--pred", pred, "--json").stdout)
    assert (summary["anls"], summary["n"]) == (pytest.approx(0.8333, abs=1e-4), 1)


def test_eval_ocr_json(app, tmp_path):
    gt = write_lines(tmp_path / "refs.jsonl", [{"path": "a.png", "text": "hello"}])
    pred = write_lines(tmp_path / "ocr.jsonl", [{"path": "a.png", "engine": "rapidocr", "width": 9, "height": 9, "text": "hallo", "lines": [], "error": None}])
    summary = json.loads(run(app, "eval", "ocr", "--gt", gt, "--pred", pred, "--json").stdout)
    assert (summary["cer"], summary["wer"], summary["n"]) == (0.2, 1.0, 1)


@pytest.mark.parametrize(
    "args, message",
    [
        (("eval", "refcoco", "--gt", "{tmp}/nope.jsonl", "--pred", "{tmp}/p.jsonl"), "no such file"),
        (("eval", "refcoco", "--gt", "{tmp}/gt.jsonl", "--pred", "{tmp}/p.jsonl", "--protocol", "vlmevalkit"), "unknown RefCOCO protocol"),
        (("eval", "refcoco", "--gt", "{tmp}/gt.jsonl", "--pred", "{tmp}/p.jsonl"), "--family"),
        (("eval", "refcoco", "--gt", "{tmp}/gt.jsonl", "--pred", "{tmp}/p.jsonl", "-f", "qwen9-vl"), "qwen9-vl"),
        (("eval", "screenspot", "--gt", "{tmp}/screenspot_web.json", "--pred", "{tmp}/p.jsonl", "-f", "qwen9-vl"), "qwen9-vl"),
        (("eval", "textvqa", "--gt", "{tmp}/gt.jsonl", "--pred", "{tmp}/p.jsonl"), "not TextVQA ground truth"),
        (("eval", "docvqa", "--gt", "{tmp}/gt.jsonl", "--pred", "{tmp}/missing.json"), "cannot read predictions"),
        (("bench", "refcoco", "--model", "Acme/NotAQwen", "--gt", "{tmp}/gt.jsonl", "--out", "{tmp}/bench"),
         "pip install 'vlground[models]'" if missing("models") else "cannot find the weights of Acme/NotAQwen"),
    ],
)
def test_failures_are_one_line_on_stderr_with_exit_2(app, tmp_path, args, message):
    write_lines(tmp_path / "gt.jsonl", [{"image": "a.jpg", "sent": "x", "bbox": [0, 0, 5, 5], "width": 10, "height": 10}])
    write_lines(tmp_path / "p.jsonl", [{"text": "(1,1),(2,2)"}])
    (tmp_path / "screenspot_web.json").write_text(json.dumps(
        [{"img_filename": "a.png", "bbox": [1, 1, 5, 5], "instruction": "x", "data_type": "icon", "data_source": "shop"}]))
    result = run(app, *(a.format(tmp=tmp_path) for a in args))
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_eval_protocols_lists_every_protocol(app):
    listing = run(app, "eval", "protocols").stdout
    for name in ("family", "qwen-vl", "lmms-eval", "textvqa", "vqa-v2", "anls"):
        assert f" {name} " in listing


def test_report_is_written_with_the_headline_numbers_for_every_benchmark(app, tmp_path):
    refcoco = write_lines(tmp_path / "gt.jsonl", [{"image": "a.jpg", "sent": "x", "bbox": [0, 0, 5, 5], "width": 10, "height": 10}] * 3)
    textvqa = tmp_path / "val.json"
    textvqa.write_text(json.dumps({"data": [{"question_id": 1, "answers": ["two"] * 10}, {"question_id": 2, "answers": ["b"] * 10}]}))
    docvqa = tmp_path / "doc.json"
    docvqa.write_text(json.dumps({"data": [{"questionId": 1, "answers": ["abc"]}]}))
    ocr = write_lines(tmp_path / "refs.jsonl", [{"path": "a.png", "text": "hello"}])
    pred = write_lines(tmp_path / "p.jsonl", [{"box": [0, 0, 5, 5], "question_id": 1, "questionId": 1, "answer": "2", "path": "a.png",
                                                "text": "hallo"}, {"box": [5, 5, 9, 9]}, {"box": [0, 0, 5, 4]}])
    cases = [("refcoco", refcoco, ["--protocol", "qwen-vl"], "accuracy", "33.33%"), ("textvqa", textvqa, [], "accuracy", "50.00%"),
             ("docvqa", docvqa, [], "anls", "0.00%"), ("ocr", ocr, [], "cer", "20.00%")]
    for name, gt, extra, metric, shown in cases:
        report = tmp_path / f"{name}.html"
        result = run(app, "eval", name, "--gt", gt, "--pred", pred, *extra, "--report", report, "--json")
        assert result.exit_code == 0, result.output
        page = report.read_text(encoding="utf-8")
        assert f"{json.loads(result.stdout)[metric] * 100:.2f}%" == shown and shown in page, name
        assert f"vlground eval {name}" in page and str(pred) in page


def test_a_benchmark_entry_is_all_a_new_eval_command_needs(tmp_path):
    """The registry's promise: a loader, a scorer and a `Benchmark` entry make `vlground eval NAME`
    with --json, the rows file, --strict and clean failures; nothing in cli/eval.py is specific."""
    from dataclasses import dataclass

    from vlground.cli.eval import _eval_command
    from vlground.eval.benchmark import Benchmark, Option
    from vlground.eval.inputs import InvalidValue, number
    from vlground.eval.predictions import align
    from vlground.eval.scores import Scores, mean

    @dataclass(kw_only=True)
    class CountScores(Scores):
        errors: list

        def headline(self):
            return {"mae": mean(self.errors), "n": len(self.errors)}

        def rows(self):
            return [{"error": e} for e in self.errors]

        @staticmethod
        def describe(summary):
            return [f"MAE {summary['mae']:.2f} on {summary['n']}"]

    def load(path, problems, scale=1.0):
        values = []
        for number_, line in enumerate(path.read_text().splitlines(), 1):
            try:
                values.append(number(json.loads(line), "count") * scale)
            except InvalidValue as error:
                problems.refuse_gt(f"{path}:{number_}", str(error))
        return values

    def score(values, records, *, malformed, problems, clip=False):
        alignment = align([None] * len(values), records, ())
        errors = [abs(v - (r or {}).get("count", 0)) for v, r in zip(values, alignment.records)]
        return CountScores(errors=[min(e, 1) if clip else e for e in errors], alignment=alignment, malformed=malformed, problems=problems)

    counting = Benchmark(name="counting", help="Counting error.", items="counts", gt_help="Counts, one a line.", pred_help="{count}.",
                         rows_option="per-image", rows_help="Each error.", load=load, score=score,
                         options=(Option("scale", 1.0, "Scale the truth.", type=float, loader=True), Option("clip", False, "Clip at 1.", type=bool)))
    app = typer.Typer()
    app.command("counting")(_eval_command(counting))
    app.command("other")(lambda: None)
    gt = tmp_path / "gt.txt"
    gt.write_text('3\n"x"\n5\n')
    pred = write_lines(tmp_path / "p.jsonl", [{"count": 4}, {"count": 5}])
    rows = tmp_path / "rows.jsonl"
    result = CliRunner().invoke(app, ["counting", "--gt", str(gt), "--pred", str(pred), "--scale", "2", "--per-image", str(rows), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["mae"], summary["n"], summary["invalid"]) == (3.5, 2, 1) and "1 inputs refused" in result.stderr
    assert [json.loads(line)["error"] for line in rows.read_text().splitlines()] == [2.0, 5.0]
    assert CliRunner().invoke(app, ["counting", "--gt", str(gt), "--pred", str(pred), "--clip"]).stdout.strip() == "MAE 0.50 on 2"
    strict = CliRunner().invoke(app, ["counting", "--gt", str(gt), "--pred", str(pred), "--strict"])
    assert strict.exit_code == 2 and "gt.txt:2" in strict.stderr


def test_the_report_finds_images_under_image_root_and_shows_the_whole_command(app, tmp_path):
    from PIL import Image

    (tmp_path / "gt").mkdir()
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (10, 10), "white").save(tmp_path / "imgs" / "a.jpg")
    write_lines(tmp_path / "gt" / "gt.jsonl", [{"image": "a.jpg", "sent": "x", "bbox": [0, 0, 5, 5], "width": 10, "height": 10}])
    write_lines(tmp_path / "p.jsonl", [{"box": [5, 5, 9, 9]}])
    args = ["eval", "refcoco", "--gt", str(tmp_path / "gt" / "gt.jsonl"), "--pred", str(tmp_path / "p.jsonl"), "--protocol", "qwen-vl"]
    assert run(app, *args, "--report", str(tmp_path / "beside.html")).exit_code == 0
    assert "image not at hand" in (tmp_path / "beside.html").read_text()  # a.jpg is not beside the ground truth
    assert run(app, *args, "--report", str(tmp_path / "r.html"), "--image-root", str(tmp_path / "imgs")).exit_code == 0
    page = (tmp_path / "r.html").read_text()
    assert "image not at hand" not in page and "data:image/" in page
    assert f"--protocol qwen-vl --report {tmp_path / 'r.html'} --image-root {tmp_path / 'imgs'}" in page
