"""`vlground bench refcoco`: answers, errors, resuming, the report; end to end on a tiny checkpoint."""
from __future__ import annotations

import io
import json

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from vlground.jobs.bench import run_refcoco_bench
from vlground.eval.errors import EvalInputError
from vlground.eval.refcoco_data import RefSample, load_refcoco
from vlground.core.families import get_family
from vlground.grammar import parse
from vlground.core.options import GenerationOptions


class ScriptedModel:
    """Answers like a Qwen2-VL model: the box (100,100),(500,500) of the 0-1000 frame, except for
    phrases containing "miss" (a far box) and "crash" (the batch raises)."""

    family = get_family("qwen2-vl")

    def __init__(self):
        self.phrases: list[str] = []

    def ground(self, images, phrases, options=None):
        self.phrases += phrases
        if any("crash" in p for p in phrases):
            raise RuntimeError("CUDA error: device-side assert triggered")
        answers = []
        for image, phrase in zip(images, phrases):
            corners = "(900,900),(999,999)" if "miss" in phrase else "(100,100),(500,500)"
            raw = f"<|object_ref_start|>{phrase}<|object_ref_end|><|box_start|>{corners}<|box_end|>"
            answers.append(parse(raw, self.family, image.size))
        return answers


def make_gt(tmp_path, phrases, size=(200, 100)):
    Image.new("RGB", size, "gray").save(tmp_path / "img.png")
    rows = [{"image": "img.png", "sent": p, "bbox": [20, 10, 100, 50], "width": size[0], "height": size[1]} for p in phrases]
    rows.append({"image": "gone.png", "sent": "lost", "bbox": [0, 0, 1, 1], "width": 2, "height": 2})
    path = tmp_path / "refcoco_val.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def bench(tmp_path, model, gt, **options):
    samples = load_refcoco(gt)
    return run_refcoco_bench(model, "scripted", samples, tmp_path / "out", gt_name=str(gt), image_root=tmp_path,
                             generation=GenerationOptions(batch_size=2), **options)


def test_writes_predictions_samples_and_report(tmp_path):
    gt = make_gt(tmp_path, ["cat", "dog", "a miss", "bird"])
    report = bench(tmp_path, ScriptedModel(), gt, html_report=tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "60.00%" in page and "vlground bench refcoco" in page and "scripted" in page
    assert (report["n"], report["accuracy"], report["errors"]) == (5, 3 / 5, 1)
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["index"] for r in lines] == [0, 1, 2, 3, 4]
    assert lines[0]["box"] == [20.0, 10.0, 100.0, 50.0] and lines[0]["text"].startswith("<|object_ref_start|>cat")
    assert lines[4]["error"].startswith(str(tmp_path / "gone.png"))
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert [s["hit"] for s in samples] == [True, True, False, True, False]
    assert report["worst"][0]["iou"] == 0.0 and {w["sent"] for w in report["worst"][:2]} == {"a miss", "lost"}
    assert json.loads((tmp_path / "out" / "report.json").read_text())["accuracy"] == report["accuracy"]


def test_resumes_after_an_interruption_without_redoing_answers(tmp_path):
    gt = make_gt(tmp_path, ["cat", "dog", "a miss", "bird"])
    first = bench(tmp_path, ScriptedModel(), gt)
    predictions = tmp_path / "out" / "predictions.jsonl"
    kept = predictions.read_text().splitlines()[:2]
    predictions.write_text("\n".join(kept) + '\n{"index": 2, "sent": "a mi')  # cut off mid-line
    model = ScriptedModel()
    second = bench(tmp_path, model, gt)
    assert model.phrases == ["a miss", "bird"] and second["answered_this_run"] == 3
    assert {k: second[k] for k in ("n", "accuracy", "errors")} == {k: first[k] for k in ("n", "accuracy", "errors")}
    assert len(predictions.read_text().splitlines()) == 5


def test_a_failing_batch_is_answered_again_sample_by_sample_and_the_run_goes_on(tmp_path):
    gt = make_gt(tmp_path, ["crash", "dog", "cat", "bird", "eel", "fox", "gnu", "hen", "ibis"])
    report = bench(tmp_path, ScriptedModel(), gt)
    errors = [json.loads(line)["error"] for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    # batch_size 2 -> chunks of 8: the first chunk fails as a whole and is answered again one by one; only "crash" fails
    assert [e for e in errors if e is not None and "device-side assert" in e] == \
        ["model failed: RuntimeError: CUDA error: device-side assert triggered"]
    assert (report["n"], report["errors"], report["accuracy"]) == (10, 2, pytest.approx(8 / 10))


def test_refuses_to_mix_runs_of_different_models(tmp_path):
    gt = make_gt(tmp_path, ["cat"])
    bench(tmp_path, ScriptedModel(), gt)
    with pytest.raises(EvalInputError, match="holds a run of scripted"):
        run_refcoco_bench(ScriptedModel(), "other", load_refcoco(gt), tmp_path / "out", gt_name=str(gt), image_root=tmp_path)


def test_images_embedded_in_the_ground_truth(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (200, 100), "gray").save(buffer, format="PNG")
    samples = [RefSample(id="q1#0", sent="cat", box=(20, 10, 100, 50), width=200, height=100, split="val", image="a.jpg", image_bytes=buffer.getvalue())]
    report = run_refcoco_bench(ScriptedModel(), "scripted", samples, tmp_path / "out", gt_name="parquet")
    assert (report["accuracy"], report["aligned_by"]) == (1.0, "id")


def test_end_to_end_on_a_tiny_checkpoint(tmp_path):
    from vlground.cli.eval import register
    from vlground.testing import make_tiny_model

    model = make_tiny_model("qwen2.5-vl", tmp_path / "tiny")
    gt = make_gt(tmp_path, ["cat", "dog"], size=(64, 48))
    app = typer.Typer()
    register(app)
    args = ["bench", "refcoco", "--model", str(model), "--gt", str(gt), "--out", str(tmp_path / "run"),
            "--batch-size", "2", "--max-new-tokens", "6", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["n"], summary["errors"]) == (3, 1)
    lines = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert all(isinstance(r["text"], str) for r in lines[:2])
    rerun = CliRunner().invoke(app, args)
    assert rerun.exit_code == 0 and json.loads(rerun.stdout)["answered_this_run"] == 0


def test_resuming_only_appends_to_predictions(tmp_path):
    # a rewrite in place lost 300,000 predictions to a kill; the file may only grow (a foreign line stays)
    gt = make_gt(tmp_path, ["cat", "dog", "bird"])
    samples = load_refcoco(gt)
    run_refcoco_bench(ScriptedModel(), "scripted", samples, tmp_path / "out", gt_name=str(gt), image_root=tmp_path, limit=2)
    predictions = tmp_path / "out" / "predictions.jsonl"
    with predictions.open("a") as handle:
        handle.write('{"note": "a line of another tool"}\n')
    before, inode = predictions.read_bytes(), predictions.stat().st_ino
    report = run_refcoco_bench(ScriptedModel(), "scripted", samples, tmp_path / "out", gt_name=str(gt), image_root=tmp_path)
    after = predictions.read_bytes()
    assert after.startswith(before) and predictions.stat().st_ino == inode
    assert report["answered_this_run"] == 2 and len(after.splitlines()) == 5


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_writes(tmp_path):
    from vlground.io.sink import JsonlSink

    gt = make_gt(tmp_path, ["cat"])
    with JsonlSink(tmp_path / "out" / "predictions.jsonl", key=lambda r: None, resume=True):
        with pytest.raises(EvalInputError, match="being written by another run"):
            bench(tmp_path, ScriptedModel(), gt)


def test_a_wrong_image_root_says_so_and_exits_1(tmp_path, monkeypatch):
    import vlground
    from vlground.cli.eval import register

    gt = make_gt(tmp_path, ["cat", "dog"])
    monkeypatch.setattr(vlground, "load_model", lambda *args, **kwargs: ScriptedModel())
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["bench", "refcoco", "--model", "scripted", "--gt", str(gt), "--out", str(tmp_path / "run"),
                                      "--image-root", str(tmp_path / "elsewhere")])
    assert result.exit_code == 1 and result.stdout == ""
    assert "every one of the 3 samples failed" in result.stderr and "--image-root" in result.stderr
    assert "elsewhere/img.png" in result.stderr and "Traceback" not in result.output


def test_cli_summary_line_quiet_and_ray_only_flags(tmp_path, monkeypatch):
    import vlground
    from vlground.cli.eval import register

    gt = make_gt(tmp_path, ["cat", "dog"])
    loaded = []
    monkeypatch.setattr(vlground, "load_model", lambda name, options: loaded.append(options) or ScriptedModel())
    app = typer.Typer()
    register(app)
    args = ["bench", "refcoco", "--model", "scripted", "--gt", str(gt), "--out", str(tmp_path / "run"), "--max-pixels", "50000"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "bench refcoco: 3 answered" in result.stderr and "1 errors, 3 scored" in result.stderr
    assert loaded[0].max_pixels == 50000 and loaded[0].device in ("cpu", "cuda", "auto")
    quiet = CliRunner().invoke(app, args + ["--quiet"])
    assert quiet.exit_code == 0 and "bench refcoco:" not in quiet.stderr
    misplaced = CliRunner().invoke(app, args + ["--gpus-per-worker", "1"])
    assert misplaced.exit_code == 2 and "applies with --ray" in misplaced.stderr
