"""`vlground eval screenspot` against the official loops restated in tests/screenspot_reference.py, on
held-out generated predictions (hits, clicks on and just past the edges, outside the screenshot, box
answers, unreadable answers), breakdown by breakdown; and the ground-truth formats as released."""
from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

import screenspot_reference as reference
from vlground.core.geometry import smart_resize
from vlground.eval.errors import EvalInputError, GroundTruthError
from vlground.eval.inputs import InputProblems
from vlground.eval.registry import BENCHMARKS
from vlground.eval.screenspot import ProtocolError, load_screenspot, score_screenspot

SIZES = [(1280, 720), (1288, 728), (750, 1334), (2000, 1000), (1920, 1080)]
METRICS = ("n", "correct", "wrong_format", "accuracy", "text_accuracy", "icon_accuracy")


def write_json(path, value):
    path.write_text(json.dumps(value))
    return path


def random_box(rng, size):
    width, height = size
    x1, y1 = rng.randrange(0, width - 40), rng.randrange(0, height - 30)
    if rng.random() < 0.15:  # boxes that touch the screenshot's right or bottom edge
        return [x1, y1, width, height]
    return [x1, y1, x1 + rng.randrange(4, 40), y1 + rng.randrange(4, 30)]


def seeclick_answer(rng, box, size) -> str:
    """A SeeClick-style response (fractions, or a <box> on 0-1000) of one of many kinds."""
    width, height = size
    fx1, fy1, fx2, fy2 = box[0] / width, box[1] / height, box[2] / width, box[3] / height
    inside = (rng.uniform(fx1, fx2), rng.uniform(fy1, fy2))
    kind = rng.randrange(12)
    if kind == 0:
        return f"({fx1!r},{fy2!r})"  # exactly on the corner: a hit
    if kind == 1:
        return f"({math.nextafter(fx1, -1)!r},{inside[1]!r})"  # one step left of the edge: a miss
    if kind == 2:
        return f"({math.nextafter(fx2, 2)!r},{fy1!r})"
    if kind == 3:
        return f"<box>({rng.randrange(1000)},{rng.randrange(1000)}),({rng.randrange(1000)},{rng.randrange(1000)})</box>"
    if kind == 4:
        return f"[{fx1!r}, {fy1!r}, {fx2!r}, {fy2!r}]"
    if kind == 5:
        return rng.choice(["(1.25,0.5)", "(-0.1,0.3)", "(0.5,1.0000001)"])  # outside the screenshot
    if kind == 6:
        return rng.choice(["I cannot find it.", "the checkbox at (0.1,0.2)", "(0.1,0.2,0.3)", "<box>(1,2)</box>"])
    return f"({inside[0]!r},{inside[1]!r})" if kind < 10 else f"({rng.random()!r},{rng.random()!r})"


def make_screenspot(tmp_path, rng, suffix="", per_platform=45):
    images = tmp_path / "images"
    images.mkdir()
    for i, size in enumerate(SIZES):
        Image.new("RGB", size, "white").save(images / f"s{i}.png")
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    answers = {}
    for platform in ("mobile", "desktop", "web"):
        items = []
        for j in range(per_platform):
            i = rng.randrange(len(SIZES))
            x1, y1, x2, y2 = random_box(rng, SIZES[i])
            items.append({"img_filename": f"s{i}.png", "bbox": [x1, y1, x2 - x1, y2 - y1], "instruction": f"{platform} target {j}",
                          "data_type": rng.choice(["text", "icon", "icon"]), "data_source": rng.choice(["ios", "android", "shop"])})
            answers[platform, j] = seeclick_answer(rng, (x1, y1, x2, y2), SIZES[i])
        write_json(annotations / f"screenspot_{platform}{suffix}.json", items)
    return annotations, images, answers


@pytest.mark.parametrize("suffix", ["", "_v2"])
def test_seeclick_protocol_equals_seeclicks_script_on_every_platform(tmp_path, suffix):
    annotations, images, answers = make_screenspot(tmp_path, random.Random(7 + len(suffix)), suffix)
    expected = reference.seeclick_loop(str(annotations), str(images), lambda task, j, item: answers[task, j], suffix=suffix)
    targets = load_screenspot(annotations, image_root=images)
    records = [{"id": t.id, "text": answers[t.platform, int(t.id.split("#")[1])]} for t in targets]
    summary = score_screenspot(targets, records, "seeclick").summary()
    assert summary["benchmark"] == ("ScreenSpot-v2" if suffix else "ScreenSpot")
    for task, numbers in expected.items():
        assert {k: summary["platforms"][task][k] for k in METRICS} == numbers, task
    cells = [expected[t][f"{k}_accuracy"] for t in expected for k in ("text", "icon")]
    assert summary["macro_accuracy"] == sum(cells) / 6
    assert summary["n"] == sum(v["n"] for v in expected.values()) and summary["correct"] == sum(v["correct"] for v in expected.values())
    # the held-out set holds every case the scripts tell apart
    assert all(expected[t]["wrong_format"] for t in expected) and 0 < summary["accuracy"] < 1


def family_answer(rng, box, size, family):
    """(record, the wrapper's click in fractions) for a Qwen answer in the family's frame, or a
    click given in pixels."""
    width, height = size
    if family == "qwen2.5-vl":
        rh, rw = smart_resize(height, width)
    else:
        rw = rh = 1000
    to_frame = lambda x, y: (round(x / width * rw), round(y / height * rh))  # noqa: E731
    kind = rng.randrange(10)
    if kind == 0:  # a click written on the box's edge as the model's integer grid rounds it: hit or miss by the last bit
        x, y = to_frame(box[rng.choice([0, 2])], box[rng.choice([1, 3])])
    elif kind == 1:  # outside the screenshot, beside a box that may touch its edge
        x, y = rw + rng.randrange(1, 30), to_frame(0, (box[1] + box[3]) / 2)[1]
    elif kind == 2:
        x1, y1 = to_frame(box[0], box[1])
        x2, y2 = to_frame(box[2], box[3])
        answer = json.dumps([{"bbox_2d": [x1, y1, x2, y2], "label": "target"}])
        return {"text": answer}, reference.json_point(answer, (rw, rh))
    elif kind == 3:
        if rng.random() < 0.5:  # the computer-use tool call, read as ScreenSpot-Pro's Qwen2.5-VL wrapper reads it
            x, y = to_frame(rng.uniform(box[0] - 20, box[2] + 20), rng.uniform(box[1] - 20, box[3] + 20))
            answer = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [%d, %d]}}\n</tool_call>' % (x, y)
            return {"text": answer}, reference.qwen25vl_tool_call_point(answer, (rw, rh))
        return {"text": rng.choice(["I do not see it.", '[{"label": "x"}]', "[]"])}, None
    elif kind == 4:  # a click in pixels of the screenshot, on an edge or anywhere
        point = [float(box[0]), rng.uniform(box[1], box[3])] if rng.random() < 0.5 else [rng.uniform(0, width), rng.uniform(0, height)]
        return {"point": point}, [point[0] / width, point[1] / height]
    else:
        x, y = to_frame(rng.uniform(box[0], box[2]), rng.uniform(box[1], box[3])) if kind < 8 else (rng.randrange(rw), rng.randrange(rh))
    answer = json.dumps([{"point_2d": [x, y], "label": "target"}])
    return {"text": answer}, reference.json_point(answer, (rw, rh))


def make_pro(tmp_path, rng, family, per_file=60):
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    records, clicks = [], {}
    files = [("photoshop_windows", "Creative", "photoshop", "windows"), ("vscode_macos", "Dev", "vscode", "macos"),
             ("excel_windows", "Office", "excel", "windows")]
    for stem, group, application, platform in files:
        items = []
        for j in range(per_file):
            size = rng.choice(SIZES)
            box = random_box(rng, size)
            target_id = f"{application}_{j}"
            items.append({"id": target_id, "img_filename": f"{stem}/{j}.png", "bbox": box, "img_size": list(size),
                          "instruction": f"target {j}", "ui_type": rng.choice(["text", "icon"]), "group": group,
                          "application": application, "platform": platform})
            record, clicks[target_id] = family_answer(rng, box, size, family)
            records.append({"id": target_id, **record})
        write_json(annotations / f"{stem}.json", items)
    return annotations, records, clicks


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_family_protocol_equals_screenspot_pros_script_on_every_breakdown(tmp_path, family):
    annotations, records, clicks = make_pro(tmp_path, random.Random(11), family)
    expected = reference.pro_loop(str(annotations), lambda sample: clicks[sample["id"]])
    summary = score_screenspot(load_screenspot(annotations), records, "family", family).summary()
    assert summary["benchmark"] == "ScreenSpot-Pro" and "macro_accuracy" not in summary
    for breakdown in ("groups", "applications", "platforms"):
        assert {name: {k: m[k] for k in METRICS} for name, m in summary[breakdown].items()} == expected[breakdown], breakdown
    assert {k: summary[k] for k in METRICS} == expected["overall"]
    assert summary["wrong_format"] > 0 and 0 < summary["accuracy"] < 1


def test_family_protocol_equals_seeclicks_loop_fed_by_the_same_wrapper(tmp_path):
    rng = random.Random(5)
    annotations, images, _ = make_screenspot(tmp_path, rng)
    targets = load_screenspot(annotations, image_root=images)
    answers = {t.id: family_answer(rng, t.box, t.image_size, "qwen2.5-vl") for t in targets}

    def wrapper(task, j, item):
        click = answers[f"screenspot_{task}#{j}"][1]
        if click is None:
            raise ValueError("wrong format")
        return click

    expected = reference.seeclick_loop(str(annotations), str(images), wrapper)
    records = [{"id": key, **record} for key, (record, _) in answers.items()]
    summary = score_screenspot(targets, records, "family", "qwen2.5-vl").summary()
    for task, numbers in expected.items():
        assert {k: summary["platforms"][task][k] for k in METRICS} == numbers, task


def test_the_computer_use_tool_call_is_read_as_screenspot_pros_qwen25vl_wrapper_reads_it():
    from vlground.eval.screenspot import ScreenTarget

    size = (1280, 720)
    rh, rw = smart_resize(720, 1280)
    target = ScreenTarget("t", "a.png", "Save", (640, 300, 700, 340), "windows", "icon", "ScreenSpot-Pro", size)
    statuses = []
    for coordinate in ([644, 320], [643, 320], [644, 300, 700, 340]):
        answer = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": %s}}\n</tool_call>' % coordinate
        expected = reference.pro_correctness({"bbox": list(target.box), "img_size": list(size)},
                                             reference.qwen25vl_tool_call_point(answer, (rw, rh)))
        scores = score_screenspot([target], [{"id": "t", "text": answer}], "family", "qwen2.5-vl")
        statuses.append(scores.status[0])
        assert scores.status[0] == expected, coordinate
    assert statuses == ["correct", "wrong", "correct"]  # 644 of 1288 is the left edge 640 of 1280; a box's centre clicks


def test_qwen25vl_answers_read_in_the_resize_screenspot_pros_wrapper_used():
    """ScreenSpot-Pro's Qwen2.5-VL wrapper resizes with max_pixels 99999999; its 5120x2880 screenshots
    (over the released 12845056) reach the model larger than vlground's default assumes, so its raw
    answers score as the wrapper scores them only with --max-pixels 99999999 (or input_size per line)."""
    from vlground.eval.screenspot import ScreenTarget

    size = (5120, 2880)
    wrapper = smart_resize(2880, 5120, max_pixels=99999999)[::-1]
    assert wrapper != smart_resize(2880, 5120)[::-1]
    rng = random.Random(2)
    targets, records, expected = [], [], []
    for j in range(40):
        box = random_box(rng, size)
        x = round(rng.uniform(box[0] - 30, box[2] + 30) / size[0] * wrapper[0])
        y = round(rng.uniform(box[1] - 30, box[3] + 30) / size[1] * wrapper[1])
        answer = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [%d, %d]}}\n</tool_call>' % (x, y)
        targets.append(ScreenTarget(f"t{j}", "a.png", "x", tuple(box), "windows", "icon", "ScreenSpot-Pro", size))
        records.append({"id": f"t{j}", "text": answer})
        expected.append(reference.pro_correctness({"bbox": box, "img_size": list(size)}, reference.qwen25vl_tool_call_point(answer, wrapper)))
    assert score_screenspot(targets, records, "family", "qwen2.5-vl", max_pixels=99999999).status == expected
    assert score_screenspot(targets, records, "family", "qwen2.5-vl").status != expected  # the released resize: another frame
    with pytest.raises(EvalInputError, match="--min-pixels 10 is more than --max-pixels 5"):
        score_screenspot(targets, records, "family", "qwen2.5-vl", min_pixels=10, max_pixels=5)


def test_a_click_on_the_edge_in_the_models_grid_stays_on_it_to_the_last_bit():
    from vlground.eval.screenspot import ScreenTarget

    # 1068x720 is fed to Qwen2.5-VL as 1064x728: x 798 of 1064 is 0.75 of the width, as is the box's
    # left edge 801 of 1068; through pixels (798 * 1068 / 1064 / 1068) it would fall a bit short
    assert smart_resize(720, 1068)[1] == 1064
    target = ScreenTarget("t", "a.png", "Save", (801, 100, 900, 200), "windows", "text", "ScreenSpot-Pro", (1068, 720))
    answer = '[{"point_2d": [798, 150]}]'
    expected = reference.pro_correctness({"bbox": list(target.box), "img_size": [1068, 720]}, reference.json_point(answer, (1064, 728)))
    assert score_screenspot([target], [{"id": "t", "text": answer}], "family", "qwen2.5-vl").status == [expected] == ["correct"]


def test_a_click_outside_the_screenshot_is_not_moved_onto_its_edge():
    from vlground.eval.screenspot import ScreenTarget

    target = ScreenTarget("t", "a.png", "Close", (980, 0, 1000, 20), "web", "icon", "ScreenSpot-Pro", (1000, 500))
    scores = score_screenspot([target], [{"id": "t", "text": '[{"point_2d": [1010, 10]}]'}], "family", "qwen3-vl")
    assert scores.status == ["wrong"] and scores.clicks[0].tolist() == [1010.0, 5.0] and scores.distance[0] == 10.0


def test_the_answer_is_read_never_the_reasoning():
    from vlground.eval.screenspot import ScreenTarget

    target = ScreenTarget("t", "a.png", "Close", (0, 0, 100, 100), "web", "icon", "ScreenSpot-Pro", (1000, 1000))
    draft = '<think>maybe [{"point_2d": [50, 50]}]</think>[{"point_2d": [900, 900]}]'
    assert score_screenspot([target], [{"id": "t", "text": draft}], "family", "qwen3-vl").status == ["wrong"]
    assert score_screenspot([target], [{"id": "t", "text": "(0.05,0.05)</think>(0.9,0.9)"}], "seeclick").status == ["wrong"]
    cut = {"id": "t", "text": '[{"point_2d": [50, 50]}]', "reasoning_cut_short": True}
    assert score_screenspot([target], [cut], "family", "qwen3-vl").status == ["wrong_format"]


# --- ground truth and predictions as released and as users write them ---------------------------


def test_predictions_may_name_their_target_by_image_and_instruction(tmp_path):
    write_json(tmp_path / "screenspot_web.json", [
        {"img_filename": "a.png", "bbox": [10, 10, 20, 20], "instruction": "Search", "data_type": "text", "data_source": "shop"},
        {"img_filename": "a.png", "bbox": [50, 50, 20, 20], "instruction": "Cart", "data_type": "icon", "data_source": "shop"},
    ])
    Image.new("RGB", (100, 100)).save(tmp_path / "a.png")
    targets = load_screenspot(tmp_path / "screenspot_web.json")
    assert [t.box for t in targets] == [(10, 10, 30, 30), (50, 50, 70, 70)] and targets[0].image_size == (100, 100)
    records = [{"img_filename": "a.png", "instruction": "Cart", "point": [60, 60]}, {"image": "a.png", "instruction": "Search", "point": [0, 0]}]
    scores = score_screenspot(targets, records)
    assert scores.status == ["wrong", "correct"] and scores.alignment.by == "id"
    assert scores.rows()[0]["distance"] == pytest.approx(math.hypot(10, 10))


def test_a_click_needs_the_image_size_and_says_where_to_get_it(tmp_path):
    path = write_json(tmp_path / "screenspot_mobile.json", [
        {"img_filename": "gone.png", "bbox": [1, 1, 5, 5], "instruction": "a", "data_type": "icon", "data_source": "ios"}] * 2)
    targets = load_screenspot(path)
    problems = InputProblems(strict=False)
    scores = score_screenspot(targets, [{"point": [2, 2]}, {"point": [2, 2], "image_size": [10, 10]}], problems=problems)
    assert scores.status == ["refused", "correct"] and "--image-root" in problems.items[0]
    problems = InputProblems(strict=False)
    bad = [{"point": "2,2", "image_size": [10, 10]}, {"point": [2, 2], "image_size": [0, 10]}]
    assert score_screenspot(targets, bad, problems=problems).status == ["refused", "refused"]
    assert "'point' is '2,2'" in problems.items[0] and "'image_size' is 0" in problems.items[1]


def test_released_layouts_are_recognised_and_bad_items_refused(tmp_path):
    write_json(tmp_path / "screenspot_desktop_v2.json", [
        {"img_filename": "a.png", "bbox": [1, 2, 3, 4], "instruction": "x", "data_type": "text", "data_source": "macos"},
        {"img_filename": "a.png", "bbox": [1, 2, -3, 4], "instruction": "y", "data_type": "text", "data_source": "macos"},
        {"img_filename": "a.png", "bbox": "1,2,3,4", "instruction": "z", "data_type": "icon", "data_source": "macos"},
    ])
    problems = InputProblems(strict=False)
    targets = load_screenspot(tmp_path, problems=problems)
    assert [(t.id, t.release, t.platform, t.box) for t in targets] == [("screenspot_desktop_v2#0", "ScreenSpot-v2", "desktop", (1, 2, 4, 6))]
    assert len(problems.items) == 2 and "item 1" in problems.items[0]
    write_json(tmp_path / "screenspot_web.json", [])
    with pytest.raises(GroundTruthError, match="several releases"):
        load_screenspot(tmp_path)
    odd = write_json(tmp_path / "mine.json", [{"img_filename": "a.png", "bbox": [1, 2, 3, 4], "instruction": "x", "data_type": "text"}])
    with pytest.raises(GroundTruthError, match="cannot tell its platform"):
        load_screenspot(odd)


def test_screenspot_pro_items_keep_their_ids_groups_and_sizes(tmp_path):
    item = {"id": "ps_1", "img_filename": "ps/1.png", "bbox": [10, 20, 30, 40], "img_size": [3840, 2160], "instruction": "Crop",
            "ui_type": "icon", "group": "Creative", "application": "photoshop", "platform": "windows"}
    write_json(tmp_path / "photoshop_windows.json", [item, {**item, "bbox": [30, 40, 10, 20]}, item])
    problems = InputProblems(strict=False)
    [target] = load_screenspot(tmp_path, problems=problems)
    assert (target.id, target.box, target.image_size, target.group, target.application) == ("ps_1", (10, 20, 30, 40), (3840, 2160), "Creative", "photoshop")
    assert "ends before it starts" in problems.items[0] and "repeats" in problems.items[1]


def test_the_family_protocol_needs_a_family_for_text_only():
    from vlground.eval.screenspot import ScreenTarget

    target = ScreenTarget("t", "a.png", "x", (0, 0, 10, 10), "web", "text", "ScreenSpot-Pro", (100, 100))
    assert score_screenspot([target], [{"id": "t", "point": [5, 5]}]).status == ["correct"]
    with pytest.raises(ProtocolError, match="--family"):
        score_screenspot([target], [{"id": "t", "text": "(5,5)"}])


def test_eval_screenspot_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from vlground.cli.main import app

    write_json(tmp_path / "screenspot_mobile.json", [
        {"img_filename": "a.png", "bbox": [10, 10, 20, 20], "instruction": "Menu", "data_type": "icon", "data_source": "ios"}])
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (100, 50)).save(tmp_path / "imgs" / "a.png")
    (tmp_path / "p.jsonl").write_text(json.dumps({"id": "screenspot_mobile#0", "text": '[{"point_2d": [150, 500]}]'}) + "\n")
    result = CliRunner().invoke(app, ["eval", "screenspot", "--gt", str(tmp_path / "screenspot_mobile.json"), "--pred", str(tmp_path / "p.jsonl"),
                                      "--family", "qwen3-vl", "--image-root", str(tmp_path / "imgs"), "--json",
                                      "--per-target", str(tmp_path / "rows.jsonl"), "--report", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["accuracy"], summary["platforms"]["mobile"]["icon_accuracy"]) == (1.0, 1.0)
    row = json.loads((tmp_path / "rows.jsonl").read_text())
    assert row["click"] == [15.0, 25.0] and row["status"] == "correct"
    assert "screenspot" in BENCHMARKS and "Worst misses" in (tmp_path / "r.html").read_text()
    # Qwen2.5-VL read in a resize given on the command line: 100x50 with min_pixels 20000 is fed as 224x112: (12.9, 21.9)
    (tmp_path / "q.jsonl").write_text(json.dumps({"id": "screenspot_mobile#0", "text": '[{"point_2d": [29, 49]}]'}) + "\n")
    base = ["eval", "screenspot", "--gt", str(tmp_path / "screenspot_mobile.json"), "--pred", str(tmp_path / "q.jsonl"),
            "-f", "qwen2.5-vl", "--image-root", str(tmp_path / "imgs"), "--json"]
    resized = CliRunner().invoke(app, [*base, "--min-pixels", "20000"])
    assert resized.exit_code == 0 and json.loads(resized.stdout)["accuracy"] == 1.0, resized.output
    assert json.loads(CliRunner().invoke(app, base).stdout)["accuracy"] == 0.0  # as 112x56: (25.9, 43.8), off the box


def test_a_line_told_999_is_read_on_999():
    """Qwen3-VL's tool-call prompt tells the model its screen is 999x999 (bench writes "scale": 999)."""
    from vlground.eval.screenspot import ScreenTarget

    target = ScreenTarget("t", "a.png", "x", (998.5, 0, 999, 500), "web", "text", "ScreenSpot-Pro", (999, 999))
    call = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [999, 500]}}\n</tool_call>'
    assert score_screenspot([target], [{"id": "t", "text": call}], "family", "qwen3-vl").status == ["wrong"]  # 998.001 px on 1000
    scores = score_screenspot([target], [{"id": "t", "text": call, "scale": 999}], "family", "qwen3-vl")
    assert scores.status == ["correct"] and scores.clicks[0].tolist() == pytest.approx([999.0, 500.0])
    problems = InputProblems(strict=False)
    assert score_screenspot([target], [{"id": "t", "text": call, "scale": "999"}], "family", "qwen3-vl", problems=problems).status == ["refused"]


_PIECES = st.one_of(
    st.sampled_from(["<box>", "</box>", "box", "checkbox", "(", ")", ",", " ", "-", ".", "click at ", "\n"]),
    st.integers(-50, 1200).map(str),
    st.floats(0, 1.2, allow_nan=False).map(lambda v: f"{v:.4f}"),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=14).map("".join))
def test_seeclicks_reading_of_any_text_is_the_scripts(text):
    """On texts of numbers, signs, words and box markup: the same click as screenspot_test.py, or
    None exactly where the script raises (its wrong format)."""
    from vlground.eval.screenspot import _seeclick_click

    try:
        expected = tuple(reference.seeclick_click(text))
    except Exception:
        expected = None
    assert _seeclick_click(text) == expected
