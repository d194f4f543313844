"""`vlground bench screenspot`: clicks asked through the bench job (resume, errors, the report), scored
as `eval screenspot` scores them."""
from __future__ import annotations

import json

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from vlground.core.families import get_family
from vlground.core.options import GenerationOptions
from vlground.eval.screenspot import load_screenspot
from vlground.grammar import parse
from vlground.jobs.bench import run_screenspot_bench


class PointingModel:
    """Answers like Qwen3-VL (point_2d on 0-1000): the middle of the screenshot, a far corner for
    instructions with "miss", nothing readable for "mumble"; a batch holding "crash" raises."""

    family = get_family("qwen3-vl")

    def __init__(self):
        self.asked: list[str] = []
        self.styles: set[str] = set()

    def point(self, images, targets, options=None, *, style="plain"):
        self.asked += targets
        self.styles.add(style)
        if any("crash" in t for t in targets):
            raise RuntimeError("CUDA error: device-side assert triggered")
        results = []
        for image, target in zip(images, targets):
            raw = "I see no such thing" if "mumble" in target else '[{"point_2d": [%s], "label": "x"}]' % ("990, 990" if "miss" in target else "500, 500")
            results.append(parse(raw, self.family, image.size))
        return results


def make_gt(tmp_path, instructions, size=(200, 100)):
    """ScreenSpot mobile targets, each the box around the screenshot's middle, and one whose image is gone."""
    (tmp_path / "imgs").mkdir(exist_ok=True)
    Image.new("RGB", size, "white").save(tmp_path / "imgs" / "s.png")
    items = [{"img_filename": "s.png", "bbox": [size[0] // 2 - 10, size[1] // 2 - 10, 20, 20], "instruction": text,
              "data_type": "text" if i % 2 else "icon", "data_source": "ios"} for i, text in enumerate(instructions)]
    items.append({"img_filename": "gone.png", "bbox": [0, 0, 5, 5], "instruction": "lost", "data_type": "icon", "data_source": "ios"})
    path = tmp_path / "screenspot_mobile.json"
    path.write_text(json.dumps(items))
    return path


def bench(tmp_path, model, gt, **options):
    return run_screenspot_bench(model, "pointing", load_screenspot(gt, image_root=tmp_path / "imgs"), tmp_path / "out", gt_name=str(gt),
                                image_root=tmp_path / "imgs", generation=GenerationOptions(batch_size=2), **options)


def test_writes_predictions_rows_and_report_scored_as_eval_screenspot(tmp_path):
    from vlground.eval.registry import BENCHMARKS

    gt = make_gt(tmp_path, ["Menu", "a miss", "Save", "mumble"])
    report = bench(tmp_path, PointingModel(), gt, html_report=tmp_path / "report.html")
    assert (report["n"], report["correct"], report["wrong_format"], report["errors"]) == (5, 2, 1, 1)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "vlground bench screenspot" in page and "“a miss”" in page and "Answers without a click: 2" in page
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert lines[0]["point"] == [100.0, 50.0] and lines[0]["image_size"] == [200, 100] and lines[0]["id"] == "screenspot_mobile#0"
    assert lines[4]["error"].startswith(str(tmp_path / "imgs" / "gone.png"))
    rows = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["correct", "wrong", "correct", "wrong_format", "error"]
    assert report["worst"][0]["instruction"] == "a miss" and report["worst"][0]["distance"] > 0
    again = BENCHMARKS["screenspot"].evaluate(gt, tmp_path / "out" / "predictions.jsonl", family="qwen3-vl", image_root=tmp_path / "imgs")
    assert {k: again.summary()[k] for k in ("n", "correct", "accuracy", "platforms")} == {k: report[k] for k in ("n", "correct", "accuracy", "platforms")}


def test_resumes_after_an_interruption_without_asking_again(tmp_path):
    gt = make_gt(tmp_path, ["Menu", "a miss", "Save", "Back"])
    first = bench(tmp_path, PointingModel(), gt)
    predictions = tmp_path / "out" / "predictions.jsonl"
    kept = predictions.read_text().splitlines()[:2]
    predictions.write_text("\n".join(kept) + '\n{"index": 2, "instruction": "Sa')  # killed mid-line
    model = PointingModel()
    second = bench(tmp_path, model, gt)
    assert model.asked == ["Save", "Back"] and second["answered_this_run"] == 3
    assert {k: second[k] for k in ("n", "accuracy", "errors")} == {k: first[k] for k in ("n", "accuracy", "errors")}
    with pytest.raises(Exception, match="style was 'plain', now 'tool_call'"):
        bench(tmp_path, PointingModel(), gt, style="tool_call")


def test_a_failing_batch_is_asked_again_target_by_target(tmp_path):
    gt = make_gt(tmp_path, ["crash", "Menu", "Save", "Back"])
    report = bench(tmp_path, PointingModel(), gt)
    errors = [json.loads(line)["error"] for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [e for e in errors if e is not None and "device-side" in e] == ["model failed: RuntimeError: CUDA error: device-side assert triggered"]
    assert (report["n"], report["errors"], report["correct"]) == (5, 2, 3)


def test_cli_asks_in_the_chosen_style_and_prints_the_breakdown(tmp_path, monkeypatch):
    import vlground
    from vlground.cli.eval import register

    gt = make_gt(tmp_path, ["Menu", "a miss"])
    model = PointingModel()
    monkeypatch.setattr(vlground, "load_model", lambda name, options: model)
    app = typer.Typer()
    register(app)
    args = ["bench", "screenspot", "--model", "pointing", "--gt", str(gt), "--out", str(tmp_path / "run"), "--image-root", str(tmp_path / "imgs"),
            "--style", "tool_call"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert model.styles == {"tool_call"} and "platform mobile: 33.33 on 3" in result.stdout
    assert "bench screenspot: 3 answered" in result.stderr
    wrong = CliRunner().invoke(app, args[:-1] + ["clicky"])
    assert wrong.exit_code == 2 and "plain or tool_call" in wrong.stderr


def test_a_tiny_checkpoint_asked_in_both_styles_resumes_after_ctrl_c(tmp_path, tiny_checkpoint):
    """Model.point on a tiny Qwen2.5-VL with forced answers: the 260x180 screenshot is seen as 252x168,
    so the answers are written in that frame; a Ctrl-C during the fifth target (the second chunk of
    four) keeps the first four, and the rerun asks only the rest."""
    import vlground
    from vlground.testing.forced import forced_answers

    Image.new("RGB", (260, 180), "white").save(tmp_path / "screen.png")
    boxes = {"Submit": [50, 35, 30, 20], "Cancel": [180, 125, 30, 20], "Help": [5, 5, 20, 20], "Close": [230, 5, 20, 20],
             "Back": [5, 150, 20, 20], "Next": [230, 150, 20, 20]}
    items = [{"img_filename": "screen.png", "bbox": box, "instruction": name, "data_type": "text", "data_source": "windows"}
             for name, box in boxes.items()]
    gt = tmp_path / "screenspot_desktop.json"
    gt.write_text(json.dumps(items))
    # in the model's 252x168 frame; Help is clicked on Close: a miss
    clicks = {"Submit": (63, 42), "Cancel": (189, 126), "Help": (232, 14), "Close": (232, 14), "Back": (14, 149), "Next": (232, 149)}

    def answer(prompt_text, interrupt_at=None):
        name = next(n for n in boxes if n in prompt_text.rsplit("user", 1)[1])
        if name == interrupt_at:
            raise KeyboardInterrupt
        x, y = clicks[name]
        if "<tools>" in prompt_text:
            return '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [%d, %d]}}\n</tool_call>' % (x, y)
        return '[{"point_2d": [%d, %d], "label": "%s"}]' % (x, y, name)

    model = vlground.load_model(tiny_checkpoint("qwen2.5-vl"), device="cpu")
    targets = load_screenspot(gt)
    generation = GenerationOptions(batch_size=1, max_new_tokens=200)
    for style in ("plain", "tool_call"):
        out = tmp_path / style
        with forced_answers(model.backend, lambda p: answer(p, interrupt_at="Back")), pytest.raises(KeyboardInterrupt):
            run_screenspot_bench(model, "tiny", targets, out, gt_name=str(gt), style=style, generation=generation)
        kept = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert [r["instruction"] for r in kept] == ["Submit", "Cancel", "Help", "Close"] and kept[0]["input_size"] == [252, 168]
        asked = []
        with forced_answers(model.backend, lambda p: asked.append(p) or answer(p)):
            report = run_screenspot_bench(model, "tiny", targets, out, gt_name=str(gt), style=style, generation=generation)
        assert len(asked) == 2 and report["answered_this_run"] == 2
        assert (report["n"], report["correct"], report["wrong_format"]) == (6, 5, 0), style
        rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
        assert rows[0]["click"] == pytest.approx([63 / 252 * 260, 42 / 168 * 180]) and rows[2]["status"] == "wrong"


def test_a_qwen3_tool_call_is_scored_on_the_screen_it_was_told(tmp_path, tiny_checkpoint):
    """Qwen3-VL's computer-use prompt says the screen is 1000x1000: 250 is x 65.0 on a 260-wide
    screenshot, inside a box that ends at 65.03 (read on 999 it would be 65.07, outside)."""
    import vlground
    from vlground.testing.forced import forced_answers

    Image.new("RGB", (260, 180), "white").save(tmp_path / "screen.png")
    gt = tmp_path / "screenspot_web.json"
    gt.write_text(json.dumps([{"img_filename": "screen.png", "bbox": [64.9, 0, 0.13, 180], "instruction": "the divider",
                               "data_type": "icon", "data_source": "shop"}]))
    model = vlground.load_model(tiny_checkpoint("qwen3-vl"), device="cpu")
    call = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [250, 500]}}\n</tool_call>'
    with forced_answers(model.backend, lambda prompt: call if "resolution is 1000x1000." in prompt else "no"):
        report = run_screenspot_bench(model, "tiny3", load_screenspot(gt), tmp_path / "out", gt_name=str(gt), style="tool_call",
                                      generation=GenerationOptions(max_new_tokens=200))
    line = json.loads((tmp_path / "out" / "predictions.jsonl").read_text())
    assert "scale" not in line and line["point"] == pytest.approx([65.0, 90.0])
    assert report["correct"] == 1


@pytest.mark.parametrize("executor", ["ray", "processes"])
def test_every_target_is_asked_once_with_the_answers_of_one_process(tmp_path, request, tiny_checkpoint, executor):
    """`--ray` and `--workers 2`: two actors or worker processes each load the tiny checkpoint
    (greedy, so its answers are the same noise as in one process); each target answered once, the
    missing screenshot an error line, same scores."""
    import vlground
    from vlground.jobs.loop import RunOptions

    gt = make_gt(tmp_path, [f"button {i}" for i in range(5)], size=(120, 90))
    model = str(tiny_checkpoint("qwen2.5-vl"))
    common = dict(gt_name=str(gt), image_root=tmp_path / "imgs", generation=GenerationOptions(batch_size=2, max_new_tokens=8))
    targets = load_screenspot(gt, image_root=tmp_path / "imgs")
    alone = run_screenspot_bench(vlground.load_model(model, device="cpu"), model, targets, tmp_path / "alone", **common)
    run = RunOptions(ray=request.getfixturevalue("ray_cluster"), workers=2) if executor == "ray" else RunOptions(workers=2)
    spread = run_screenspot_bench(None, model, targets, tmp_path / executor, run=run, **common)

    def lines(folder):
        return sorted((json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()), key=lambda r: r["index"])

    assert lines(tmp_path / executor) == lines(tmp_path / "alone") and [r["index"] for r in lines(tmp_path / executor)] == list(range(6))
    assert lines(tmp_path / executor)[5]["error"] and lines(tmp_path / executor)[0]["input_size"] == [112, 84]
    assert {k: spread[k] for k in ("n", "correct", "wrong_format", "errors")} == {k: alone[k] for k in ("n", "correct", "wrong_format", "errors")}
