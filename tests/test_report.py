"""The HTML evaluation report: its content, and that it renders in a real browser (headless Chromium)."""
import base64
import io
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from chromium import render
from vlground.eval.docvqa import score_docvqa
from vlground.eval.ocr import Transcription, score_ocr
from vlground.eval.refcoco import score_refcoco
from vlground.eval.refcoco_data import RefSample
from vlground.eval.report import WORST, write_report
from vlground.eval.textvqa import Question, score_textvqa

WIDTH, HEIGHT = 1280, 900


def _refcoco(tmp_path, n=15):
    """Samples on real image files (a brown rectangle each), and Qwen-VL answers near the truth;
    every fifth answer is unreadable text."""
    rng = np.random.default_rng(0)
    samples, records = [], []
    for i in range(n):
        image = Image.new("RGB", (240, 180), (200, 220, 240))
        x1, y1 = int(rng.integers(10, 100)), int(rng.integers(10, 60))
        box = (x1, y1, x1 + int(rng.integers(40, 120)), y1 + int(rng.integers(40, 100)))
        ImageDraw.Draw(image).rectangle(box, fill=(120, 80, 40))
        image.save(tmp_path / f"{i}.png")
        samples.append(RefSample(str(i), f"brown box {i}", tuple(map(float, box)), 240, 180, ["val", "testA", "testB"][i % 3], f"{i}.png"))
        q = np.round((np.array(box) + rng.normal(0, 12, 4)) / [240, 180, 240, 180] * 1000).astype(int)
        text = f"<ref>x</ref><box>({q[0]},{q[1]}),({q[2]},{q[3]})</box>" if i % 5 else f"<b>no box</b> {i}"
        records.append({"id": str(i), "text": text})
    return samples, score_refcoco(samples, records, "qwen-vl")


def _images(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_refcoco_report_holds_numbers_plots_worst_samples_and_raw_unparsable_answers(tmp_path):
    samples, scores = _refcoco(tmp_path)
    summary = scores.summary()
    page = write_report(tmp_path / "r.html", scores, image_root=tmp_path,  # the scores hold their ground truth
                        context={"command": "vlground eval refcoco --gt g.jsonl && echo <done>"}).read_text()
    assert f"{summary['accuracy'] * 100:.2f}%" in page
    assert "Qwen-VL evaluate_grounding.py" in page and "vlground eval refcoco --gt g.jsonl &amp;&amp; echo &lt;done&gt;" in page
    for name, split in summary["splits"].items():  # accuracy at every threshold, per split
        assert all(f"{v * 100:.2f}%" in page for v in split["accuracy_at"].values())
    images = _images(page)
    assert all(src.startswith("data:image/") for src in images)  # self-contained
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert len(images) == 2 + WORST  # the two plots, then the worst samples drawn
    assert "&lt;b&gt;no box&lt;/b&gt; 0" in page and "<b>no box" not in page  # raw text, escaped
    assert f"Unparsable answers: {summary['unparsable']}" in page


def _decoded(src: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"))


def test_worst_sample_shows_ground_truth_and_prediction(tmp_path):
    samples, scores = _refcoco(tmp_path)
    page = write_report(tmp_path / "r.html", scores, ground_truth=samples, image_root=tmp_path).read_text()
    worst = int(np.argsort(scores.ious, kind="stable")[WORST - 1])  # a parsed one (the unparsable come first)
    assert scores.parsed[worst]
    drawn = _decoded(_images(page)[2 + WORST - 1])
    plain = np.array(Image.open(tmp_path / f"{worst}.png").convert("RGB"))
    x1, y1, x2, y2 = (int(round(v)) for v in samples[worst].box)
    px1, py1, px2, py2 = (int(round(v)) for v in scores.pred_boxes[worst])
    for x, y in ((x1, (y1 + y2) // 2), (px1, (py1 + py2) // 2)):  # left edges of both boxes
        assert np.abs(drawn[y, x].astype(int) - plain[y, x]).sum() > 60


def test_images_not_at_hand_are_said_not_fatal(tmp_path):
    samples, scores = _refcoco(tmp_path)
    page = write_report(tmp_path / "r.html", scores, ground_truth=samples, image_root=tmp_path / "elsewhere").read_text()
    assert page.count("image not at hand") == WORST and len(_images(page)) == 2


def test_textvqa_report_lists_the_worst_questions_with_normalized_answers(tmp_path):
    questions = [Question("1", ["two"] * 10), Question("2", ["Coca-Cola"] * 8 + ["coke"] * 2), Question("3", ["yes"] * 10)]
    records = [{"question_id": "1", "answer": "Two"}, {"question_id": "2", "answer": "pepsi"}]
    scores = score_textvqa(questions, records)
    page = write_report(tmp_path / "t.html", scores, ground_truth=questions).read_text()
    rows = re.findall(r"<tr><td>(\d)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", page)
    assert rows[0][0] in ("2", "3") and rows[-1] == ("1", "Two", "2", "2 ×10")  # worst first; "two" -> "2"
    assert ("3", "(none)", "", "yes ×10") in rows
    assert "coca cola ×8, coke ×2" in page  # human answers as the official protocol compares them
    assert len(_images(page)) == 1


def test_docvqa_and_ocr_reports(tmp_path):
    questions = [Question("7", ["Total Due"])]
    docs = score_docvqa(questions, [{"questionId": "7", "answer": "  total   due "}])
    page = write_report(tmp_path / "d.html", docs, ground_truth=questions).read_text()
    assert "<td>total due</td>" in page and "ANLS" in page
    ocr = score_ocr([Transcription("a", "a.png", "HELLO")], [{"path": "a.png", "text": "HELL0"}])
    page = write_report(tmp_path / "o.html", ocr).read_text()
    assert "20.00%" in page and "a.png" in page


def test_unknown_scores_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no report for dict"):
        write_report(tmp_path / "x.html", {"accuracy": 1.0})


def test_report_renders_in_headless_chromium(tmp_path):
    samples, scores = _refcoco(tmp_path)
    path = write_report(tmp_path / "r.html", scores, ground_truth=samples, image_root=tmp_path)
    shown = render(path, WIDTH, HEIGHT)
    assert len(shown.images) == 2 + WORST
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in shown.images), shown.images
    assert [i["naturalWidth"] for i in shown.images[:2]] == [560, 560]  # the plots at their size
    assert shown.errors == []
    assert shown.page_height > HEIGHT  # plots and samples make a page longer than the window
    shot = Image.open(io.BytesIO(shown.screenshot))
    assert shot.size == (WIDTH, HEIGHT)
    assert len(np.unique(np.array(shot.convert("RGB")).reshape(-1, 3), axis=0)) > 50  # not a blank page


def test_the_browser_check_sees_a_broken_page(tmp_path):
    """The render check can fail: an undecodable image, a missing file and a console error are seen."""
    page = tmp_path / "bad.html"
    page.write_text('<img src="data:image/png;base64,AAAA"><img src="missing.png"><script>console.error("boom")</script>')
    shown = render(page)
    assert [i["naturalWidth"] for i in shown.images] == [0, 0]
    assert "console: boom" in shown.errors and any("ERR_FILE_NOT_FOUND" in e for e in shown.errors)


def test_the_worst_samples_are_the_lowest_ious_when_there_are_more_than_shown(tmp_path):
    samples, scores = _refcoco(tmp_path, n=WORST + 8)
    page = write_report(tmp_path / "r.html", scores, image_root=tmp_path).read_text()
    shown = [int(i) for i in re.findall(r"<figcaption>#(\d+) ", page)]
    assert len(scores.ious) > WORST and shown == list(np.argsort(scores.ious, kind="stable")[:WORST])
    assert max(scores.ious[shown]) <= min(np.delete(scores.ious, shown))


def test_screenspot_report_draws_the_worst_misses_farthest_first(tmp_path):
    """Screenshots with a dark button each; clicks near or far from it. The report lists the misses
    farthest from their box first, each picture showing the box and the click drawn on the screenshot."""
    from vlground.eval.screenspot import ScreenTarget, score_screenspot

    rng = np.random.default_rng(1)
    targets, records = [], []
    for i in range(WORST + 8):
        image = Image.new("RGB", (1600, 900), (235, 235, 235))
        x1, y1 = int(rng.integers(200, 1300)), int(rng.integers(100, 700))
        box = (x1, y1, x1 + 60, y1 + 30)
        ImageDraw.Draw(image).rectangle(box, fill=(40, 40, 90))
        image.save(tmp_path / f"s{i}.png")
        targets.append(ScreenTarget(f"t{i}", f"s{i}.png", f"button {i}", tuple(map(float, box)), ["mobile", "web"][i % 2],
                                    ["text", "icon"][i % 3 == 0], "ScreenSpot-Pro", (1600, 900), group="Dev", application="vscode"))
        away = 3 * i + 5  # each miss a little farther off than the one before
        records.append({"id": f"t{i}", "point": [box[2] + away, box[3] + away] if i % 4 else [box[0] + 5, box[1] + 5]})
    records[1] = {"id": "t1", "text": "no idea"}
    scores = score_screenspot(targets, records, "family", "qwen3-vl")
    summary = scores.summary()
    page = write_report(tmp_path / "r.html", scores, image_root=tmp_path, context={"command": "vlground eval screenspot"}).read_text()
    assert f"{summary['accuracy'] * 100:.2f}%" in page and "Per platform" in page and "Per application group" in page
    assert "a hit is the click inside the box, edges included" in page
    worst = scores.worst_misses(WORST)
    assert [scores.distance[i] for i in worst] == sorted((scores.distance[i] for i in worst), reverse=True)
    captions = re.findall(r"<figcaption>#(\d+) ", page)
    assert [int(c) for c in captions] == worst and len(worst) == WORST
    assert "Answers without a click: 1" in page and "&#x27;no idea&#x27;" in page
    images = _images(page)
    assert len(images) == 1 + WORST and all(src.startswith("data:image/") for src in images)
    shown = render(tmp_path / "r.html", WIDTH, HEIGHT)
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in shown.images) and shown.errors == []


def test_screenspot_miss_picture_shows_the_box_and_the_click_around_them(tmp_path):
    from vlground.eval.report import CROP_MARGIN
    from vlground.eval.screenspot import ScreenTarget, score_screenspot

    Image.new("RGB", (1600, 900), (235, 235, 235)).save(tmp_path / "s.png")
    target = ScreenTarget("t", "s.png", "Save", (700.0, 400.0, 760.0, 430.0), "web", "icon", "ScreenSpot-Pro", (1600, 900))
    click = (900.0, 500.0)
    scores = score_screenspot([target], [{"id": "t", "point": list(click)}])
    page = write_report(tmp_path / "r.html", scores, image_root=tmp_path).read_text()
    drawn = _decoded(_images(page)[1]).astype(int)
    left, top = 700 - CROP_MARGIN, 400 - CROP_MARGIN  # the picture is cut to box and click with the margin around
    scale = drawn.shape[1] / (900 + CROP_MARGIN + 1 - left)
    at = lambda x, y: drawn[int((y - top) * scale), int((x - left) * scale)]  # noqa: E731
    background = np.array([235, 235, 235])
    assert np.abs(at(*click) - background).sum() > 60  # the click's dot
    assert np.abs(at(700, 415) - background).sum() > 60  # the box's left edge
    assert np.abs(at(800, 450) - background).sum() < 30  # nothing drawn between them
