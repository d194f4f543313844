"""ANLS as the DocVQA/InfographicVQA evaluator computes it, with vectors that tell its raw-length
divisor and threshold apart from the textbook formula."""
from __future__ import annotations

import json
import random

import pytest

from vlground.eval.docvqa import anls_score, load_docvqa, score_docvqa
from vlground.eval.questions import Question


@pytest.mark.parametrize(
    "prediction, answers, expected",
    [
        ("abd   ", ["abc"], 1 - 1 / 6),  # the vector: distance 1 over the raw length 6
        ("a    b", ["ab"], 1 - 1 / 6),  # normalized "a b" vs "ab" is 1 edit; divided by 6, not 3
        ("  The  Cat ", ["the cat"], 1.0),  # strip, lowercase, whitespace collapsed
        ("abcd", ["abxy"], 0.5),  # exactly at the threshold: kept
        ("abc", ["xyc"], 0.0),  # 1/3 is below 0.5: zero
        ("abd", ["foo", "abc"], 1 - 1 / 3),  # best answer wins
        ("\u00df", ["s"], 0.5),  # "ß".upper() is "SS": the divisor is 2, not 1
        ("", [""], 1.0),  # both empty
    ],
)
def test_hand_checked_vectors(prediction, answers, expected):
    assert anls_score(prediction, answers) == pytest.approx(expected)


def test_scores_a_submission_against_val_json(tmp_path):
    (tmp_path / "val_v1.0.json").write_text(json.dumps({"dataset_name": "docvqa", "data": [
        {"questionId": 10, "question": "total?", "answers": ["$12.00", "12.00"]},
        {"questionId": 11, "question": "date?", "answers": ["1 May 1999"]},
    ]}))
    questions = load_docvqa(tmp_path / "val_v1.0.json")
    summary = score_docvqa(questions, [{"questionId": "11", "answer": "1 may 1999"}, {"questionId": 10, "answer": "12.0"}]).summary()
    assert summary["n"] == 2 and summary["aligned_by"] == "id"
    assert summary["anls"] == pytest.approx((1 - 1 / 5 + 1.0) / 2)


def test_vectorized_anls_equals_the_per_question_formula():
    rng = random.Random(9)
    pool = ["abc", "abd   ", "  The  Cat ", "the cat", "\u00df", "s", "", "1 May 1999", "1 may 1999", "$12.00", "12.0", "x\x1cy", "x y"]
    questions = [Question(str(i), [rng.choice(pool) for _ in range(rng.randint(0, 3))]) for i in range(300)]
    records = [{"questionId": str(i), "answer": rng.choice(pool)} for i in range(300) if i % 5]
    scores = [q["score"] for q in score_docvqa(questions, records).per_question]
    by_id = {r["questionId"]: r["answer"] for r in records}
    assert scores == [anls_score(by_id[q.question_id], q.answers) if q.question_id in by_id else 0.0 for q in questions]
