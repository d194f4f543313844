"""Reasoning-shaped answers from public sources (tests/data/reasoning/cases.json, each with its
source URL and what of it is quoted): the boxes, in original pixels, are the answer's alone, and
reasoning cut short gives none and says so. Expected boxes are computed from the frame's formula
when the file is written, never by the parser."""
import json
from pathlib import Path

import numpy as np
import pytest

from vlground.grammar import parse

CASES = json.loads((Path(__file__).parent / "data" / "reasoning" / "cases.json").read_text(encoding="utf-8"))
KINDS = {"quoted", "quoted prefix", "quoted reasoning, constructed answer", "constructed reasoning, quoted answer",
         "reported shape, constructed text", "constructed"}


def test_every_case_says_where_it_comes_from_and_what_is_real():
    assert len(CASES) >= 15
    for case in CASES:
        assert case["kind"] in KINDS, case["name"]
        assert case["source"].startswith("https://") or (case["kind"] == "constructed" and case["source"] == "issue 20")
    assert sum(case["kind"] != "constructed" for case in CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_boxes_are_the_answers(case):
    r = parse(case["text"], case["family"], tuple(case["image_size"]), tuple(case["input_size"]) if "input_size" in case else None,
              thinking=case["thinking"], reasoning=case.get("reasoning_apart"))
    expect = case["expect"]
    assert r.reasoning_cut_short is expect["cut_short"]
    boxes = [d.box for d in r.detections if d.box is not None]
    np.testing.assert_allclose(np.array(boxes, dtype=float).reshape(-1, 4), np.array(expect["boxes"], dtype=float).reshape(-1, 4), atol=1e-9)
    points = [d.point for d in r.detections if d.point is not None]
    np.testing.assert_allclose(np.array(points, dtype=float).reshape(-1, 2), np.array(expect.get("points", []), dtype=float).reshape(-1, 2), atol=1e-9)
    if expect["cut_short"]:
        assert r.text == "" and r.reasoning
    for field in ("reasoning", "text", "clipped"):
        if field in expect:
            assert getattr(r, field) == expect[field], field
