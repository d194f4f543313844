"""Reasoning kept apart from the answer (vlground.grammar.reasoning): for every dialect the boxes
come from the answer alone, reasoning cut short gives none and says so, and clipped coordinates are
counted. Real model outputs are in tests/test_parse_conformance.py."""
import json

import pytest
from typer.testing import CliRunner

from vlground.cli.main import app
from vlground.core.results import Detection, Result
from vlground.grammar import format_detections, parse
from vlground.grammar.reasoning import THINKING, split

SIZE = (1000, 500)
DRAFT = Detection("draft", box=(10.0, 10.0, 100.0, 100.0))
FINAL = Detection("final", box=(500.0, 250.0, 900.0, 450.0))

# family -> how an answer of its dialect is written; the draft and the answer are both complete answers
WRITERS = {
    "qwen-vl": lambda d: format_detections([d], "qwen-vl", SIZE),
    "qwen2-vl": lambda d: format_detections([d], "qwen2-vl", SIZE),
    "qwen2.5-vl": lambda d: format_detections([d], "qwen2.5-vl", SIZE),
    "qwen3-vl": lambda d: format_detections([d], "qwen3-vl", SIZE),
}
# document and line forms of the JSON family (written on the 0-1000 frame of qwen3-vl)
FORMS = {
    "html": lambda d: f'<p data-bbox="{_thousandths(d)}">{d.label}</p>',
    "markdown": lambda d: f"<!-- Image ({', '.join(_thousandths(d).split())}) -->",
    "plain": lambda d: f"{','.join(_thousandths(d).split())} {d.label}",
}


def _thousandths(d: Detection) -> str:
    x1, y1, x2, y2 = d.box
    w, h = SIZE
    return f"{round(x1 / w * 1000)} {round(y1 / h * 1000)} {round(x2 / w * 1000)} {round(y2 / h * 1000)}"


def labels(result: Result) -> list:
    return [d.label for d in result.detections]


def close_to(result: Result, detection: Detection) -> bool:
    return len(result) == 1 and all(abs(a - b) <= 1.5 for a, b in zip(result.detections[0].box, detection.box))


def shapes(write):
    """The shapes of issue 20 for answers written by `write`: (name, text, cut short)."""
    draft, final = write(DRAFT), write(FINAL)
    return [
        ("closer only (template opened <think>)", f"The user wants... maybe {draft}. Check again.\n</think>\n\n{final}", False),
        ("both tags", f"<think>\nFirst guess {draft}\n</think>\n{final}", False),
        ("R1 answer block", f"<think>draft {draft}</think><answer>{final}</answer>", False),
        ("R1 answer block cut off", f"<think>draft {draft}</think> <answer>{final}", False),
        ("two reasoning blocks", f"<think>{draft}</think><think>again {draft}</think>\n{final}", False),
        ("nested", f"<think>a <think>{draft}</think> b</think>{final}", False),
        ("budget cut mid-reasoning", f"<think>\nLet me look. A candidate: {draft} and", True),
    ]


CASES = [(family, *shape) for family, write in WRITERS.items() for shape in shapes(write)]
CASES += [(f"qwen3-vl:{form}", *shape) for form, write in FORMS.items() for shape in shapes(write)]


@pytest.mark.parametrize("family,name,text,cut_short", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_boxes_come_from_the_answer_alone_in_every_dialect(family, name, text, cut_short):
    r = parse(text, family.split(":")[0], SIZE)
    assert r.reasoning_cut_short is cut_short
    if cut_short:
        assert len(r) == 0 and r.text == "" and "candidate" in r.reasoning
    else:
        assert close_to(r, FINAL), (name, r)
        assert r.reasoning is not None and "draft" not in r.text


def test_the_answer_without_reasoning_is_read_as_before():
    text = WRITERS["qwen2.5-vl"](FINAL)
    for thinking in THINKING[::2]:  # auto and off
        r = parse(text, "qwen2.5-vl", SIZE, thinking=thinking)
        assert close_to(r, FINAL) and r.reasoning is None and not r.reasoning_cut_short


def test_thinking_on_without_a_closer_is_reasoning_cut_short():
    text = "The user asks for the car. " + WRITERS["qwen3-vl"](DRAFT)  # the template opened <think>
    on = parse(text, "qwen3-vl", SIZE, thinking="on")
    assert on.reasoning_cut_short and len(on) == 0 and on.reasoning == text
    assert close_to(parse(text, "qwen3-vl", SIZE), DRAFT)  # auto: nothing says it is reasoning


def test_thinking_off_takes_a_stray_opener_out_and_reads_the_rest():
    text = "<think>" + WRITERS["qwen3-vl"](FINAL)
    off = parse(text, "qwen3-vl", SIZE, thinking="off")
    assert close_to(off, FINAL) and not off.reasoning_cut_short and off.reasoning is None
    assert "<think>" not in off.text
    auto = parse(text, "qwen3-vl", SIZE)
    assert auto.reasoning_cut_short and len(auto) == 0


def test_a_closer_is_honoured_in_every_mode():
    text = f"{WRITERS['qwen3-vl'](DRAFT)}</think>{WRITERS['qwen3-vl'](FINAL)}"
    for thinking in THINKING:
        r = parse(text, "qwen3-vl", SIZE, thinking=thinking)
        assert close_to(r, FINAL) and r.reasoning.startswith("```json")


def test_an_answer_block_ends_unclosed_reasoning():
    text = f"<think>maybe {WRITERS['qwen3-vl'](DRAFT)} <answer>{WRITERS['qwen3-vl'](FINAL)}</answer>"
    for thinking in ("auto", "on"):
        r = parse(text, "qwen3-vl", SIZE, thinking=thinking)
        assert close_to(r, FINAL) and not r.reasoning_cut_short and r.reasoning.startswith("maybe")


def test_an_empty_reasoning_block_is_no_reasoning():
    r = parse("<think>\n\n</think>\n\n" + WRITERS["qwen3-vl"](FINAL), "qwen3-vl", SIZE)
    assert close_to(r, FINAL) and r.reasoning is None


def test_split_at_the_last_closer_and_the_last_answer_block():
    parts = split("<think>a</think>b</think><answer>x</answer><answer>y</answer> tail")
    assert parts.reasoning == "a</think>b" and parts.answer == "y" and not parts.cut_short


def test_an_unknown_thinking_mode_is_an_error():
    with pytest.raises(ValueError, match="auto, on, off"):
        parse("x", "qwen3-vl", SIZE, thinking="yes")


def test_clipped_coordinates_are_counted():
    over = '```json\n[{"bbox_2d": [-5, 10, 1010, 1200], "label": "a"}, {"bbox_2d": [0, 0, 1000, 1000], "label": "b"}]\n```'
    r = parse(over, "qwen3-vl", SIZE)
    assert r.clipped == 3 and r.detections[0].box == (0.0, 5.0, 1000.0, 500.0)
    assert parse(over.replace("1010", "999"), "qwen3-vl", SIZE).clipped == 2
    # the columnar path of long answers counts the same
    many = "[" + ", ".join(f'{{"bbox_2d": [{i}, 0, 1001, {i + 1}], "label": "x"}}' for i in range(100)) + "]"
    assert parse(many, "qwen3-vl", SIZE).clipped == 100
    # points and quads too, and the 999 divisor makes 1000 fall outside
    assert parse("<ref>a</ref><quad>(0,0),(1000,0),(1000,1000),(-1,1000)</quad>", "qwen-vl", SIZE).clipped == 1
    assert parse("<ref>a</ref><box>(0,0),(1000,999)</box>", "qwen-vl", SIZE, scale=999).clipped == 1
    assert parse('{"point_2d": [1001, 5]}', "qwen3-vl", SIZE).clipped == 1


def test_to_dict_carries_reasoning_and_the_flags_only_where_set():
    r = parse(f"draft {WRITERS['qwen3-vl'](DRAFT)}</think>{WRITERS['qwen3-vl'](FINAL)}", "qwen3-vl", SIZE)
    assert set(r.to_dict()) == {"detections", "text", "reasoning"}
    cut = parse("<think>hmm", "qwen3-vl", SIZE).to_dict()
    assert cut == {"detections": [], "text": "", "reasoning": "hmm", "reasoning_cut_short": True}
    assert set(parse(WRITERS["qwen3-vl"](FINAL), "qwen3-vl", SIZE).to_dict()) == {"detections", "text"}
    assert r != parse(WRITERS["qwen3-vl"](FINAL), "qwen3-vl", SIZE) and "reasoning=" in repr(r)


def test_vlground_parse_thinking():
    runner = CliRunner()
    text = "The user wants the car " + WRITERS["qwen3-vl"](DRAFT)
    on = runner.invoke(app, ["parse", text, "-f", "qwen3-vl", "--image-size", "1000x500", "--thinking", "on"])
    assert on.exit_code == 0 and "cut short" in on.stderr
    assert json.loads(on.stdout) == {"detections": [], "text": "", "reasoning": text, "reasoning_cut_short": True}
    auto = json.loads(runner.invoke(app, ["parse", text, "-f", "qwen3-vl", "--image-size", "1000x500"]).stdout)
    assert len(auto["detections"]) == 1 and "reasoning" not in auto
    bad = runner.invoke(app, ["parse", text, "-f", "qwen3-vl", "--image-size", "1000x500", "--thinking", "yes"])
    assert bad.exit_code == 2 and "--thinking" in bad.stderr


def test_reasoning_received_apart_from_the_answer():
    # a server with a reasoning parser returns reasoning_content and content separately
    answer = WRITERS["qwen3-vl"](FINAL)
    for thinking in THINKING:  # the text is the answer whatever the mode: no closer needed
        r = parse(answer, "qwen3-vl", SIZE, thinking=thinking, reasoning="draft " + WRITERS["qwen3-vl"](DRAFT))
        assert close_to(r, FINAL) and r.reasoning.startswith("draft") and not r.reasoning_cut_short
    cut = parse("  ", "qwen3-vl", SIZE, reasoning="still looking at " + WRITERS["qwen3-vl"](DRAFT))
    assert cut.reasoning_cut_short and len(cut) == 0
    assert not parse("", "qwen3-vl", SIZE, reasoning="").reasoning_cut_short  # no reasoning, no answer


REASONED = f"draft {WRITERS['qwen3-vl'](DRAFT)}</think>{WRITERS['qwen3-vl'](FINAL)}"


def test_label_and_detect_records_carry_the_reasoning():
    from vlground.core.records import Record

    record = Record.from_result("a.jpg", parse(REASONED, "qwen3-vl", SIZE), model="m")
    line = json.loads(record.to_json())
    assert line["reasoning"].startswith("draft") and len(line["detections"]) == 1
    assert Record.from_dict(line) == record and record.result.reasoning == line["reasoning"]
    cut = Record.from_result("b.jpg", parse("<think>hmm", "qwen3-vl", SIZE), model="m").to_dict()
    assert cut["reasoning_cut_short"] is True and cut["detections"] == []
    plain = Record.from_result("c.jpg", parse(WRITERS["qwen3-vl"](FINAL), "qwen3-vl", SIZE), model="m").to_dict()
    assert set(plain) == {"path", "model", "width", "height", "detections", "text", "error"}  # records without reasoning unchanged


def test_bench_prediction_lines_carry_the_reasoning():
    from vlground.eval.refcoco_data import RefSample
    from vlground.jobs.bench import _record

    sample = RefSample(id=None, sent="the car", box=(0, 0, 1, 1), width=10, height=10, split="val", image="a.jpg")
    line = _record(0, sample, REASONED, [1, 2, 3, 4], None, parse(REASONED, "qwen3-vl", SIZE))
    assert line["reasoning"].startswith("draft") and "reasoning_cut_short" not in line
    assert "reasoning" not in _record(0, sample, "x", None, None, parse("x", "qwen3-vl", SIZE))


def test_ocr_records_of_a_thinking_engine_carry_the_reasoning_and_warn_when_cut_short():
    from PIL import Image

    from vlground.core.records import Record
    from vlground.io.documents import PageJob
    from vlground.io.sources import Source
    from vlground.jobs.ocr import page_record
    from vlground.ocr.engine import QwenEngine

    class Reader:  # a model whose answers reason first: one answered, one cut short
        def read_text(self, images, options=None):
            return [parse("reading the sign</think>EXIT", "qwen3-vl", SIZE), parse("<think>the sign says", "qwen3-vl", SIZE)]

    engine = QwenEngine(Reader(), "m")
    image = Image.new("RGB", (10, 10))
    pages = engine.read([image, image])
    answered, cut = (page_record(PageJob(Source(f"{name}.png")), "m", image, page) for page, name in zip(pages, ("a", "b")))
    assert answered.text == "EXIT" and answered.to_dict()["reasoning"] == "reading the sign" and not answered.warnings
    assert cut.text == "" and "cut short" in cut.warnings[0] and cut.to_dict()["reasoning"] == "the sign says"
    assert Record.from_dict(json.loads(answered.to_json())).reasoning == "reading the sign"
