"""RefCOCO scoring: IoU arithmetic, each protocol's reading rules (hand-checked vectors), agreement
with a per-sample loop of Qwen-VL's script, alignment and per-split numbers."""
from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest

from vlground.eval.boxes import accuracy_at, centre_hit, iou
from vlground.eval.refcoco import ProtocolError, score_refcoco
from vlground.eval.refcoco_data import RefSample

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_refcoco_scoring.py"


def _reference_module():
    pytest.importorskip("torch", reason="the reference script computes with torch (the models extra)")
    spec = importlib.util.spec_from_file_location("bench_refcoco_scoring", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample(box, width=1000, height=1000, split="val", id=None, sent="thing"):
    return RefSample(id=id, sent=sent, box=tuple(float(v) for v in box), width=width, height=height, split=split)


def test_iou_matches_hand_computed_values_without_plus_one():
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 5, 15, 15], [0, 0, 0, 0], [10, 10, 0, 0]], dtype=float)
    gt = np.array([[0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 10, 10], [0, 0, 0, 0], [0, 0, 10, 10]], dtype=float)
    # identical; touching corners (no +1, so no overlap); 25 / (100 + 100 - 25); two empty boxes; reversed corners
    np.testing.assert_allclose(iou(pred, gt), [1.0, 0.0, 25 / 175, 0.0, 0.0])


def test_centre_hit_includes_edges_and_accuracy_thresholds_are_inclusive():
    pred = np.array([[0, 0, 20, 20], [30, 30, 40, 40]], dtype=float)
    gt = np.array([[10, 10, 50, 50], [0, 0, 10, 10]], dtype=float)
    assert centre_hit(pred, gt).tolist() == [True, False]
    # float32 IoUs are widened before comparing, as `iou.item() >= t` does: float32(0.9) is 0.89999998
    at = accuracy_at(np.array([0.5, 0.49999, 0.9], dtype=np.float32))
    assert at[0.5] == pytest.approx(2 / 3) and at[0.9] == 0.0 and at[0.1] == 1.0


# ---- protocol qwen-vl: evaluate_grounding.py ----

def test_qwen_vl_divides_by_999_which_decides_a_borderline_hit():
    # (0,0),(10,10) on a 1000x1000 image is 10.01 px wide under /999 and 10 px under /1000;
    # against a 14.15 px ground truth that is IoU 0.50044 (hit) versus 0.49944 (miss).
    samples = [sample((0, 0, 14.15, 14.15))]
    records = [{"text": "(0,0),(10,10)"}]
    assert score_refcoco(samples, records, "qwen-vl").summary()["accuracy"] == 1.0
    assert score_refcoco(samples, records, "family", "qwen-vl").summary()["accuracy"] == 0.0


def test_qwen_vl_takes_the_first_pair_and_its_regex_quirks():
    box = (100.1, 200.2, 300.3, 400.4)  # exactly (100,200),(300,400) / 999 * 1000
    cases = {
        "<ref>x</ref><box>(100,200),(300,400)</box>": True,
        "(100,200),(300,400) and (0,0),(5,5)": True,  # first match only
        "(0,0),(5,5) and (100,200),(300,400)": False,
        "( 100, 200),(300 ,400 )": True,  # float() accepts the spaces
        "(1e2,2e2),(3e2,4e2)": True,  # and exponents
        "(100,200), (300,400)": False,  # a space after the comma: no match at all
        "(a) (100,200),(300,400)": False,  # the lazy group swallows "a) (100": float fails -> zeros
        "(100,200,5),(300,400)": False,  # three values in a group
        "(100;200),(300,400)": False,  # no comma in the first group
        "no box at all": False,
    }
    samples = [sample(box) for _ in cases]
    scores = score_refcoco(samples, [{"text": t} for t in cases], "qwen-vl")
    assert scores.hits.tolist() == list(cases.values())
    summary = scores.summary()
    assert summary["n"] == len(cases)  # unparsable answers stay in the denominator
    assert summary["unparsable"] == 5


def test_qwen_vl_computes_in_float32_like_the_torch_script():
    # float32 gives IoU exactly 0.5 here (a hit); float64 gives 0.49999998901766246 (a miss).
    samples = [sample((118.97, 103.23, 852.59, 658.4), width=639, height=508)]
    scores = score_refcoco(samples, [{"text": "(186,203),(997,975)"}], "qwen-vl")
    assert scores.hits.tolist() == [True]
    reference = _reference_module().reference_ious(["(186,203),(997,975)"], [[118.97, 103.23, 852.59, 658.4]], [(639, 508)])
    assert reference[0] >= 0.5


def test_qwen_vl_agrees_with_a_per_sample_loop_of_the_script_on_odd_answers():
    rng = random.Random(7)
    pieces = ["(", ")", ",", " ", "\n", "1", "23", "4.5", "-7", "999", "e3", "nan", "é", "a", "(12,34),(560,780)", "),("]
    answers = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 14))) for _ in range(400)]
    answers += [f"({rng.randint(0, 998)},{rng.randint(0, 998)}),({rng.randint(0, 998)},{rng.randint(0, 998)})" for _ in range(400)]
    samples = []
    for _ in answers:
        w, h = rng.randint(100, 800), rng.randint(100, 800)
        x1, y1 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
        samples.append(sample((x1, y1, rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h)), width=w, height=h))
    reference = _reference_module().reference_ious(answers, [list(s.box) for s in samples], [(s.width, s.height) for s in samples])
    scores = score_refcoco(samples, [{"text": a} for a in answers], "qwen-vl")
    assert scores.hits.tolist() == [v >= 0.5 for v in reference]
    finite = ~np.isnan(reference)
    np.testing.assert_array_equal(scores.ious[finite], np.asarray(reference)[finite])


# ---- protocol lmms-eval ----

def test_lmms_eval_reads_fractions_from_the_first_bracketed_quadruple():
    gt = (64.0, 48.0, 320.0, 240.0)  # on 640x480: [0.1, 0.1, 0.5, 0.5]
    cases = {
        "[0.1, 0.1, 0.5, 0.5]": True,
        "The box is [0.1,0.1,0.5,0.5] or [0, 0, 1, 1]": True,
        "[0, 0, 1, 1] or [0.1,0.1,0.5,0.5]": False,  # first only; IoU 0.0833
        "[64, 48, 320, 240]": False,  # pixels are read as fractions: far outside
        "[1e-1, 0.1, 0.5, 0.5]": False,  # no exponents in its pattern
        "[.1, .1, .5, .5]": False,  # nor bare leading dots
        "[\u00a00.1, 0.1, 0.5, 0.5]": True,  # Python's \\s includes the no-break space
        "(0.1, 0.1, 0.5, 0.5)": False,
    }
    samples = [sample(gt, width=640, height=480) for _ in cases]
    scores = score_refcoco(samples, [{"text": t} for t in cases], "lmms-eval")
    assert scores.hits.tolist() == list(cases.values())
    assert scores.summary()["unparsable"] == 3
    np.testing.assert_allclose(scores.pred_boxes[0], gt)


def test_lmms_eval_counts_the_zero_box_centre_like_its_center_acc():
    # an unreadable answer is [0, 0, 0, 0]; its centre (0, 0) lies on a box that touches the origin
    scores = score_refcoco([sample((0, 0, 10, 10))], [{"text": "no idea"}], "lmms-eval")
    assert scores.summary()["centre_accuracy"] == 1.0 and scores.summary()["accuracy"] == 0.0


# ---- protocol family (default) ----

def test_family_protocol_uses_each_familys_grammar_and_frame():
    samples = [sample((100, 100, 200, 200), width=640, height=480)]
    qwen2 = score_refcoco(samples, [{"text": "<|box_start|>(156,208),(312,416)<|box_end|>"}], "family", "qwen2-vl")
    assert qwen2.ious[0] == pytest.approx(iou(np.array([[99.84, 99.84, 199.68, 199.68]]), np.array([[100, 100, 200, 200.0]]))[0])
    # Qwen2.5-VL writes pixels of the resized input: 640x480 -> 644x476 with the released settings
    json_answer = '```json\n[{"bbox_2d": [100, 99, 201, 198], "label": "thing"}]\n```'
    qwen25 = score_refcoco(samples, [{"text": json_answer}], "family", "qwen2.5-vl")
    expected = (100 * 640 / 644, 99 * 480 / 476, 201 * 640 / 644, 198 * 480 / 476)
    np.testing.assert_allclose(qwen25.pred_boxes[0], expected)
    # an input size on the line wins over the derived one
    given = score_refcoco(samples, [{"text": json_answer, "input_size": [640, 480]}], "family", "qwen2.5-vl")
    np.testing.assert_allclose(given.pred_boxes[0], (100, 99, 201, 198))


def test_family_protocol_needs_a_family_for_text_but_not_for_boxes():
    samples = [sample((10, 10, 20, 20))]
    with pytest.raises(ProtocolError, match="--family"):
        score_refcoco(samples, [{"text": "(1,1),(2,2)"}], "family")
    scores = score_refcoco(samples, [{"box": [10, 10, 20, 20], "text": "ignored"}], "family")
    assert scores.hits.tolist() == [True]


def test_box_records_and_null_boxes():
    samples = [sample((10, 10, 20, 20)), sample((10, 10, 20, 20))]
    scores = score_refcoco(samples, [{"box": [10, 10, 20, 20]}, {"box": None}], "qwen-vl")
    assert scores.hits.tolist() == [True, False]
    assert scores.summary()["unparsable"] == 1


# ---- alignment and splits ----

def test_alignment_by_id_reports_missing_unmatched_and_duplicates():
    samples = [sample((0, 0, 10, 10), id="a"), sample((0, 0, 10, 10), id="b"), sample((0, 0, 10, 10), id="c")]
    records = [
        {"id": "c", "box": [0, 0, 10, 10]},
        {"id": "a", "box": [0, 0, 10, 10]},
        {"id": "a", "box": [50, 50, 60, 60]},
        {"id": "zzz", "box": [0, 0, 10, 10]},
    ]
    summary = score_refcoco(samples, records, "qwen-vl").summary()
    assert summary["aligned_by"] == "id"
    assert (summary["accuracy"], summary["missing"], summary["unmatched"], summary["duplicates"]) == (2 / 3, 1, 1, 1)


def test_alignment_by_order_counts_missing_and_extra_lines():
    samples = [sample((0, 0, 10, 10)), sample((0, 0, 10, 10))]
    short = score_refcoco(samples, [{"box": [0, 0, 10, 10]}], "qwen-vl").summary()
    assert (short["aligned_by"], short["missing"], short["accuracy"]) == ("order", 1, 0.5)
    long = score_refcoco(samples[:1], [{"box": [0, 0, 10, 10]}] * 3, "qwen-vl").summary()
    assert long["unmatched"] == 2


def test_per_split_numbers():
    samples = [sample((0, 0, 10, 10), split="testA"), sample((0, 0, 10, 10), split="testB"), sample((0, 0, 10, 10), split="testB")]
    records = [{"box": [0, 0, 10, 10]}, {"box": [0, 0, 10, 10]}, {"text": "nothing"}]
    splits = score_refcoco(samples, records, "qwen-vl").summary()["splits"]
    assert splits["testA"]["accuracy"] == 1.0 and splits["testA"]["n"] == 1
    assert splits["testB"]["accuracy"] == 0.5 and splits["testB"]["unparsable"] == 1


def test_the_pyarrow_fast_path_reads_exactly_what_the_python_patterns_read(arrow):
    from vlground.eval.refcoco import PROTOCOLS, _read_lmms, _read_qwen_vl

    rng = random.Random(11)
    numbers = ["0.5", "1", "-2", "3.25", ".5", "1e2", "٣", "007", "x", "", " 4", "5 "]
    spaces = ["", " ", "  ", "\v", "\x1c", "\u00a0", "\n", "\t"]
    noise = ["", "the box ", "(a) ", "[0, 1] ", "é ", "),(", "(1,2),(3,4) "]

    def num():
        return rng.choice(numbers)

    def gap():
        return rng.choice(spaces)

    texts = []
    for _ in range(1500):
        texts.append(rng.choice(noise) + f"[{gap()}{num()},{gap()}{num()},{gap()}{num()},{gap()}{num()}{gap()}]" + rng.choice(noise))
        texts.append(rng.choice(noise) + f"({num()},{num()}{rng.choice(['', ',1'])}),{gap()}({num()},{num()})" + rng.choice(noise))
    texts.append(None)
    for name, read_one in (("qwen-vl", _read_qwen_vl), ("lmms-eval", _read_lmms)):
        coords, parsed = PROTOCOLS[name].read_texts(texts, [None] * len(texts), None, [None] * len(texts))
        expected = [read_one(t) if t is not None else None for t in texts]
        assert parsed.tolist() == [e is not None for e in expected], name
        assert 100 < parsed.sum() < len(texts) - 100, name  # both outcomes well represented
        for row, e in zip(coords, expected):
            if e is not None:
                assert row.tolist() == list(e), name


def test_reference_run_layout_drops_each_ranks_last_partial_batch():
    from vlground.eval.refcoco import reference_run_kept

    # 10 samples on 3 GPUs: shards 0-3, 4-6, 7-9; batch 2 keeps 0-3, 4-5, 7-8
    assert np.flatnonzero(reference_run_kept(10, 3, 2)).tolist() == [0, 1, 2, 3, 4, 5, 7, 8]
    assert reference_run_kept(5).all()
    samples = [sample((0, 0, 10, 10)) for _ in range(4)]
    records = [{"box": [0, 0, 10, 10]}] * 3 + [{"text": "none"}]
    summary = score_refcoco(samples, records, "qwen-vl", counted=reference_run_kept(4, 1, 3)).summary()
    assert (summary["accuracy"], summary["n"], summary["dropped"]) == (1.0, 3, 1)


def test_qwen_vl_scores_an_unreadable_answer_as_the_zero_box_not_as_no_box():
    # evaluate_grounding.py turns it into (0, 0, 0, 0): IoU 0, but its centre (0, 0) lies on a
    # ground-truth box that touches the origin; a NaN box would have no centre at all
    scores = score_refcoco([sample((0, 0, 10, 10)), sample((5, 5, 10, 10))], [{"text": "no idea"}, {"text": "(1,2"}], "qwen-vl")
    assert scores.centre.tolist() == [True, False] and scores.hits.tolist() == [False, False]
    assert scores.summary()["centre_accuracy"] == 0.5 and scores.summary()["unparsable"] == 2
    np.testing.assert_array_equal(scores.pred_boxes, np.zeros((2, 4)))


def test_centre_hit_reads_each_axis_on_boxes_that_are_not_square():
    gt = np.array([[0, 0, 100, 20]] * 3, dtype=float)  # wide and short
    pred = np.array([[40, 0, 60, 10],    # centre (50, 5): inside
                     [40, 30, 60, 50],   # centre (50, 40): below the box, though 40 < x2 = 100
                     [110, 0, 130, 10]], dtype=float)  # centre (120, 5): right of it, though 5 < y2
    assert centre_hit(pred, gt).tolist() == [True, False, False]


@pytest.mark.parametrize("protocol, draft, answer", [
    ("qwen-vl", "<ref>cat</ref><box>(0,0),(100,100)</box>", "<ref>cat</ref><box>(500,500),(999,999)</box>"),
    ("lmms-eval", "[0.0, 0.0, 0.1, 0.1]", "[0.5, 0.5, 1.0, 1.0]"),
    ("family", '```json\n[{"bbox_2d": [0, 0, 100, 100]}]\n```', '```json\n[{"bbox_2d": [500, 500, 1000, 1000]}]\n```'),
])
def test_every_protocol_scores_the_answer_never_the_draft_in_the_reasoning(protocol, draft, answer):
    """A thinking model drafts a box while it reasons: the regex protocols' first match would be the
    draft. Closer-only (the prompt opened <think>) and R1-style <answer> blocks both score the answer."""
    truth = [sample((500, 500, 1000, 1000), id=str(i)) for i in range(3)]
    records = [
        {"id": "0", "text": f"The cat may be at {draft}, no, lower.\n</think>\n{answer}"},
        {"id": "1", "text": f"<think>first guess {draft}</think><answer>{answer}</answer>"},
        {"id": "2", "text": f"<think>still thinking {draft} and the budget ran out"},
    ]
    scores = score_refcoco(truth, records, protocol, family="qwen3-vl")
    assert scores.ious[:2].tolist() == pytest.approx([1.0, 1.0], abs=0.01)
    assert scores.ious[2] == 0.0 and not scores.parsed[2]


def test_a_record_whose_reasoning_was_cut_short_scores_no_box_even_without_tags():
    """With thinking on the prompt opened the reasoning, so a budget cut leaves no tag at all: the
    record's reasoning_cut_short says the text is reasoning, and a box in it is not an answer."""
    truth = [sample((0, 0, 100, 100), id=0)]
    records = [{"id": 0, "text": "maybe <ref>cat</ref><box>(0,0),(100,100)</box>", "reasoning_cut_short": True}]
    for protocol in ("qwen-vl", "family"):
        scores = score_refcoco(truth, records, protocol, family="qwen-vl")
        assert scores.ious[0] == 0.0 and not scores.parsed[0]


def test_integer_ids_on_both_sides_align_by_value():
    """Samples built in Python may carry int ids; predictions' ids are read as strings, so 7 and "7"
    must meet on either side (they scored 0 before, aligned 'by id' with nothing found)."""
    truth = [sample((0, 0, 10, 10), id=0), sample((50, 50, 60, 60), id=1)]
    records = [{"id": 1, "box": [50, 50, 60, 60]}, {"id": "0", "box": [0, 0, 10, 10]}]
    summary = score_refcoco(truth, records, "qwen-vl").summary()
    assert (summary["aligned_by"], summary["accuracy"], summary["missing"], summary["unmatched"]) == ("id", 1.0, 0, 0)
