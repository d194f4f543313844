"""Hostile and malformed evaluation inputs: each is refused with a reason (counted and named in the
summary, or an error under --strict) or ends in one clean line, never a traceback or a quiet score."""
from __future__ import annotations

import io
import json
import pickle
import struct

import pytest
from PIL import Image
from test_eval_cli import app, run  # noqa: F401 - app is a fixture

from vlground.eval.errors import GroundTruthError
from vlground.eval.inputs import InputProblems
from vlground.eval.refcoco import score_refcoco
from vlground.eval.refcoco_data import RefSample, load_refcoco


def lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {"image": "a.jpg", "sent": "dog", "bbox": [0, 0, 5, 5], "width": 10, "height": 10}


@pytest.mark.parametrize(
    "bad, reason",
    [
        ({"bbox": "1234"}, "not a list of 4 numbers"),
        ({"bbox": [0, 0, "5", 5]}, "not a number"),
        ({"bbox": [0, 0, True, 5]}, "not a number"),
        ('NaN', "not a finite number"),
        ({"bbox": [-1, 0, 5, 5]}, "negative"),
        ({"bbox": [6, 0, 5, 5]}, "ends before it starts"),
        ({"width": 0}, "greater than 0"),
        ('1e400', "not a finite number"),
        ({"width": 10.5}, "whole number"),
        ({"sent": None}, "not text"),
        ({"id": 1}, "repeats"),
    ],
)
def test_a_refcoco_line_with_a_wrong_value_is_refused_and_counted(app, tmp_path, bad, reason):
    if bad == "NaN":
        bad_line = json.dumps(GOOD).replace("[0, 0, 5, 5]", "[0, NaN, 5, 5]")
    elif bad == "1e400":
        bad_line = json.dumps(GOOD).replace('"width": 10', '"width": 1e400')
    else:
        bad_line = json.dumps({**GOOD, "id": 1} if "id" in bad else {**GOOD, **bad})
    first = json.dumps({**GOOD, "id": 1}) if "id" in bad else json.dumps(GOOD)
    gt = lines(tmp_path / "gt.jsonl", [first, bad_line])
    pred = lines(tmp_path / "p.jsonl", [{"box": [0, 0, 5, 5]}])
    result = run(app, "eval", "refcoco", "--gt", gt, "--pred", pred, "--protocol", "qwen-vl", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["n"], summary["accuracy"], summary["invalid"]) == (1, 1.0, 1)
    assert reason in summary["invalid_inputs"][0] and ("gt.jsonl:2" in summary["invalid_inputs"][0] or "sample 1" in summary["invalid_inputs"][0])
    assert "1 inputs refused" in result.stderr and reason in result.stderr
    strict = run(app, "eval", "refcoco", "--gt", gt, "--pred", pred, "--protocol", "qwen-vl", "--strict")
    assert strict.exit_code == 2 and reason in strict.stderr and "Traceback" not in strict.output


def test_a_prediction_box_given_as_a_string_is_not_read_as_digits(app, tmp_path):
    gt = lines(tmp_path / "gt.jsonl", [{**GOOD, "bbox": [1, 2, 3, 4]}])
    pred = lines(tmp_path / "p.jsonl", [{"box": "1234"}])
    summary = json.loads(run(app, "eval", "refcoco", "--gt", gt, "--pred", pred, "--protocol", "qwen-vl", "--json").stdout)
    assert (summary["accuracy"], summary["unparsable"], summary["invalid"]) == (0.0, 1, 1)
    assert "'box' is str" in summary["invalid_inputs"][0]


def test_deeply_nested_json_lines_are_refused_or_malformed(app, tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    gt = lines(tmp_path / "gt.jsonl", [GOOD, deep])
    pred = lines(tmp_path / "p.jsonl", [{"box": [0, 0, 5, 5]}, deep])
    result = run(app, "eval", "refcoco", "--gt", gt, "--pred", pred, "--protocol", "qwen-vl", "--json")
    summary = json.loads(result.stdout)
    assert (summary["n"], summary["invalid"], summary["malformed"]) == (1, 1, 1) and "nested too deeply" in summary["invalid_inputs"][0]
    textvqa_gt = tmp_path / "textvqa.json"
    textvqa_gt.write_text(deep)
    failed = run(app, "eval", "textvqa", "--gt", textvqa_gt, "--pred", pred)
    assert failed.exit_code == 2 and "nested too deeply" in failed.stderr and "Traceback" not in failed.output


def write_textvqa(path, questions):
    path.write_text(json.dumps({"data": questions}))
    return path


def test_textvqa_answers_that_are_not_a_list_of_strings_and_repeated_ids(app, tmp_path):
    gt = write_textvqa(tmp_path / "val.json", [
        {"question_id": 1, "answers": ["nokia"] * 10},
        {"question_id": 2, "answers": "nokia"},  # would split into letters
        {"question_id": 3, "answers": ["a", None]},
        {"question_id": 1, "answers": ["x"] * 10},
        {"question_id": [4], "answers": ["x"]},
    ])
    pred = lines(tmp_path / "p.jsonl", [{"question_id": 1, "answer": "nokia"}, {"question_id": 1, "answer": "x"}])
    result = run(app, "eval", "textvqa", "--gt", gt, "--pred", pred, "--json")
    summary = json.loads(result.stdout)
    assert (summary["n"], summary["accuracy"], summary["invalid"], summary["duplicates"]) == (1, 1.0, 4, 1)
    reasons = " | ".join(summary["invalid_inputs"])
    for reason in ("'answers' is str", "an item of answers", "repeats", "'question_id' is list"):
        assert reason in reasons
    strict = run(app, "eval", "textvqa", "--gt", gt, "--pred", pred, "--strict")
    assert strict.exit_code == 2 and "data[1]" in strict.stderr


def test_repeated_prediction_ids_are_an_error_under_strict(app, tmp_path):
    gt = write_textvqa(tmp_path / "val.json", [{"question_id": 1, "answers": ["x"] * 10}])
    pred = lines(tmp_path / "p.jsonl", [{"question_id": 1, "answer": "x"}, {"question_id": 1, "answer": "y"}])
    assert "1 duplicates" in run(app, "eval", "textvqa", "--gt", gt, "--pred", pred).stderr
    strict = run(app, "eval", "textvqa", "--gt", gt, "--pred", pred, "--strict")
    assert strict.exit_code == 2 and "repeat an id" in strict.stderr


def test_per_question_output_with_a_lone_surrogate_is_written(app, tmp_path):
    gt = write_textvqa(tmp_path / "val.json", [{"question_id": 1, "answers": ["x"] * 10}])
    pred = tmp_path / "p.jsonl"
    pred.write_text('{"question_id": 1, "answer": "x\\udc80y"}\n')
    rows = tmp_path / "rows.jsonl"
    result = run(app, "eval", "textvqa", "--gt", gt, "--pred", pred, "--per-question", rows)
    assert result.exit_code == 0, result.output
    assert json.loads(rows.read_text(encoding="utf-8"))["answer"] == "x\udc80y"


def test_ocr_references_whose_text_is_not_a_string_and_empty_files(app, tmp_path):
    gt = lines(tmp_path / "refs.jsonl", [{"path": "a.png", "text": "hello"}, {"path": "b.png", "text": None}])
    pred = lines(tmp_path / "ocr.jsonl", [{"path": "a.png", "text": "hello", "error": None}])
    summary = json.loads(run(app, "eval", "ocr", "--gt", gt, "--pred", pred, "--json").stdout)
    assert (summary["n"], summary["cer"], summary["invalid"]) == (1, 0.0, 1) and "'text' is NoneType" in summary["invalid_inputs"][0]
    empty_gt, empty_pred = tmp_path / "empty.jsonl", tmp_path / "empty_pred.jsonl"
    empty_gt.write_text("")
    empty_pred.write_text("\n")
    for args in (("--gt", empty_gt, "--pred", pred), ("--gt", gt, "--pred", empty_pred), ("--gt", empty_gt, "--pred", empty_pred)):
        result = run(app, "eval", "ocr", *args)
        assert result.exit_code == 1 and ("nothing to score" in result.stderr or "no reference texts to score" in result.stderr)
        assert result.stdout == "" and "CER" not in result.output


def test_a_run_over_zero_samples_is_exit_1_for_every_benchmark(app, tmp_path):
    pred = lines(tmp_path / "p.jsonl", [{"text": "x", "answer": "x", "path": "a.png"}])
    refcoco = lines(tmp_path / "gt.jsonl", [GOOD])
    textvqa = write_textvqa(tmp_path / "val.json", [{"question_id": 1, "answers": "nokia"}])
    docvqa = write_textvqa(tmp_path / "doc.json", [])
    for args, message in (
        (("refcoco", "--gt", refcoco, "--split", "testB", "--protocol", "qwen-vl"), "no samples to score with split 'testB'"),
        (("textvqa", "--gt", textvqa), "no questions to score (1 refused, first:"),
        (("docvqa", "--gt", docvqa), "no questions to score"),
    ):
        result = run(app, "eval", *args, "--pred", pred)
        assert result.exit_code == 1 and message in result.stderr and result.stdout == "", result.output
    # the bench commands share the rule (and give it before any model loads: this model does not exist)
    screens = tmp_path / "screenspot_mobile.json"
    screens.write_text("[]")
    for args, message in (
        (("refcoco", "--gt", refcoco, "--split", "testB"), "no samples to score with split 'testB'"),
        (("screenspot", "--gt", screens), "no targets to score"),
    ):
        result = run(app, "bench", *args, "--model", tmp_path / "no-model", "--out", tmp_path / "out")
        assert result.exit_code == 1 and message in result.stderr and result.stdout == "", result.output


def test_ocr_reads_the_txt_files_vlground_ocr_writes(app, tmp_path):
    # vlground ocr --txt-dir DIR writes DIR/sub/receipt.jpg.txt for sub/receipt.jpg
    (tmp_path / "txt" / "sub").mkdir(parents=True)
    (tmp_path / "txt" / "sub" / "receipt.jpg.txt").write_text("TOTAL 12.00\n")
    (tmp_path / "txt" / "note.png.txt").write_text("hello\n")
    pred = lines(tmp_path / "ocr.jsonl", [
        {"path": "/scans/sub/receipt.jpg", "text": "TOTAL 12.00", "error": None},
        {"path": "note.png", "text": "hallo", "error": None},
    ])
    summary = json.loads(run(app, "eval", "ocr", "--gt", tmp_path / "txt", "--pred", pred, "--json").stdout)
    assert (summary["n"], summary["missing"], summary["unmatched"]) == (2, 0, 0)
    assert summary["cer"] == pytest.approx(1 / (11 + 5))


def test_duplicate_prediction_paths_warn(app, tmp_path):
    gt = lines(tmp_path / "refs.jsonl", [{"path": "a.png", "text": "hello"}])
    pred = lines(tmp_path / "ocr.jsonl", [{"path": "a.png", "text": "hello", "error": None}, {"path": "x/a.png", "text": "no", "error": None}])
    result = run(app, "eval", "ocr", "--gt", gt, "--pred", pred)
    assert result.exit_code == 0 and "1 duplicates" in result.stderr


# ---- refer pickles --------------------------------------------------------------------------

def write_refer(folder, refs_bytes):
    (folder / "refs(unc).p").write_bytes(refs_bytes)
    instances = {"images": [{"id": 7, "file_name": "a.jpg", "width": 640, "height": 480}],
                 "annotations": [{"id": 70, "image_id": 7, "bbox": [10, 20, 100, 50]}]}
    (folder / "instances.json").write_text(json.dumps(instances))
    return folder / "refs(unc).p"


REF = {"ref_id": 1, "ann_id": 70, "image_id": 7, "split": "val", "sentences": [{"sent_id": 11, "sent": "man"}]}


@pytest.mark.parametrize(
    "payload, message",
    [
        (pickle.dumps(42, protocol=2), "holds a int, not a list of refs"),
        (pickle.dumps({"refs": [REF]}, protocol=2), "holds a dict, not a list of refs"),
        (b"\x80\x02\x82\x05.", "not refer data (ValueError"),  # EXT1: an extension code
        (b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"abc", "not refer data (MemoryError"),  # BINBYTES8 of 4 EiB
        (b"\x80\x04\x8e" + struct.pack("<Q", 2**34) + b"abc", "not refer data (UnpicklingError"),  # 16 GiB promised
        (b"\x80\x02X\x02\x00\x00\x00\xff\xfeq\x00.", "not refer data (UnicodeDecodeError"),  # bad UTF-8
        (b"\x80\x02]q\x00(", "not refer data"),  # cut short
    ],
)
def test_malformed_refs_pickles_are_one_clean_error(app, tmp_path, payload, message):
    refs = write_refer(tmp_path, payload)
    with pytest.raises(GroundTruthError, match=message.replace("(", r"\(")):
        load_refcoco(refs)
    pred = lines(tmp_path / "p.jsonl", [{"box": [0, 0, 1, 1]}])
    result = run(app, "eval", "refcoco", "--gt", refs, "--pred", pred, "--protocol", "qwen-vl")
    assert result.exit_code == 2 and "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_refs_that_are_not_refs_are_refused_one_by_one(tmp_path):
    bad = [REF, {**{k: v for k, v in REF.items() if k != "split"}}, "a string", {**REF, "sentences": [{"sent_id": 12, "sent": None}]},
           {**REF, "ann_id": 999}]
    refs = write_refer(tmp_path, pickle.dumps(bad, protocol=2))
    problems = InputProblems(strict=False)
    samples = load_refcoco(refs, problems=problems)
    assert [s.id for s in samples] == ["11"] and len(problems.items) == 4
    assert "has no 'split'" in problems.items[0] and "not a ref" in problems.items[1]
    assert "not text" in problems.items[2] and "lack" in problems.items[3]


# ---- parquet -------------------------------------------------------------------------------

def test_a_decompression_bomb_in_a_parquet_row_is_refused(tmp_path):
    pytest.importorskip("pyarrow", reason="parquet ground truth needs the arrow extra")
    import pyarrow as pa
    import pyarrow.parquet as pq

    def png(width, height):
        buffer = io.BytesIO()
        Image.new("1", (width, height)).save(buffer, format="PNG")
        return buffer.getvalue()

    bomb = png(20000, 20000)  # 400 Mpx in a few kB: over twice PIL's limit
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "question_id": ["1", "2"],
        "image": pa.array([{"bytes": png(8, 8), "path": None}, {"bytes": bomb, "path": None}], image_type),
        "answer": [["dot"], ["bomb"]],
        "bbox": [[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 1.0, 1.0]],
        "file_name": ["a.png", "b.png"],
    })
    pq.write_table(table, tmp_path / "val-00000-of-00001.parquet")
    problems = InputProblems(strict=False)
    samples = load_refcoco(tmp_path / "val-00000-of-00001.parquet", problems=problems)
    assert [s.sent for s in samples] == ["dot"]
    assert "row 1" in problems.items[0] and "DecompressionBombError" in problems.items[0]


# ---- scoring ------------------------------------------------------------------------------

def test_lmms_eval_on_a_zero_width_sample_is_an_error_not_a_centre_hit():
    sample = RefSample(id=None, sent="x", box=(0.0, 0.0, 0.0, 0.0), width=0, height=10, split="val")
    with pytest.raises(GroundTruthError, match="image size"):
        score_refcoco([sample], [{"text": "[0, 0, 1, 1]"}], "lmms-eval")


def test_prediction_answers_and_texts_of_the_wrong_type_are_refused(app, tmp_path):
    gt = write_textvqa(tmp_path / "val.json", [{"question_id": 1, "answers": ["5"] * 10}, {"question_id": 2, "answers": ["x"] * 10}])
    pred = lines(tmp_path / "p.jsonl", [{"question_id": 1, "answer": 5}, {"question_id": 2, "answer": "x"}])
    summary = json.loads(run(app, "eval", "textvqa", "--gt", gt, "--pred", pred, "--json").stdout)
    assert (summary["accuracy"], summary["no_answer"], summary["invalid"]) == (0.5, 1, 1)
    assert "'answer' is int, not text" in summary["invalid_inputs"][0]
    refcoco = lines(tmp_path / "gt.jsonl", [GOOD])
    boxes = lines(tmp_path / "boxes.jsonl", [{"text": ["(0,0),(499,499)"]}])
    summary = json.loads(run(app, "eval", "refcoco", "--gt", refcoco, "--pred", boxes, "--protocol", "qwen-vl", "--json").stdout)
    assert (summary["accuracy"], summary["unparsable"], summary["invalid"]) == (0.0, 1, 1) and "'text' is list" in summary["invalid_inputs"][0]


# ---- any JSON value, anywhere ------------------------------------------------------------------

def _json_values():
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats() | st.text(max_size=8)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                        max_leaves=5)


def test_any_json_in_any_field_is_scored_or_refused_never_a_crash(tmp_path_factory):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from vlground.eval.docvqa import BENCHMARK as DOCVQA
    from vlground.eval.errors import EvalInputError
    from vlground.eval.ocr import BENCHMARK as OCR
    from vlground.eval.refcoco import BENCHMARK as REFCOCO
    from vlground.eval.textvqa import BENCHMARK as TEXTVQA

    folder = tmp_path_factory.mktemp("fuzz")

    values = _json_values()
    gt_rows = st.lists(st.dictionaries(st.sampled_from(["sent", "bbox", "width", "height", "id", "image", "split", "question_id",
                                                        "questionId", "answers", "path", "text"]), values), max_size=3)
    prediction_rows = st.lists(st.dictionaries(st.sampled_from(["text", "box", "answer", "id", "question_id", "questionId", "path",
                                                                "error"]), values), max_size=3)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from([REFCOCO, TEXTVQA, DOCVQA, OCR]), gt_rows, prediction_rows)
    def check(benchmark, rows, predictions):
        good = {REFCOCO: GOOD, TEXTVQA: {"question_id": 1, "answers": ["x"] * 10}, DOCVQA: {"questionId": 1, "answers": ["x"]},
                OCR: {"path": "a.png", "text": "x"}}[benchmark]
        items = [good, *({**good, **row} for row in rows)]
        gt = folder / ("gt.jsonl" if benchmark in (REFCOCO, OCR) else "gt.json")
        body = "\n".join(json.dumps(i) for i in items) if benchmark in (REFCOCO, OCR) else json.dumps({"data": items})
        gt.write_text(body)
        pred = folder / "p.jsonl"
        pred.write_text("\n".join(json.dumps(p) for p in predictions) + '\n{"text": "x"}\n')
        options = {"protocol": "qwen-vl"} if benchmark is REFCOCO else {}
        for strict in (False, True):
            try:
                summary = benchmark.evaluate(gt, pred, strict=strict, **options).summary()
            except EvalInputError:
                assert strict
                continue
            json.dumps(summary)  # the summary is JSON, whatever came in
            assert summary["n"] >= 1 and summary["invalid"] == len(summary["invalid_inputs"])

    check()
