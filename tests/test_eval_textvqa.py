"""TextVQA under both protocols: vectors checked by hand against the reference code's rules, each
chosen so that a plausible simplification scores it differently."""
from __future__ import annotations

import json
import random

import pytest

from vlground.eval.questions import Question
from vlground.eval.textvqa import VQA_PROTOCOLS, load_textvqa, question_score, score_textvqa
from vlground.eval.vqa_columns import NORMALIZERS, normalize_column
from vlground.eval.vqa_normalize import evalai_answer, process_punctuation, vqa_prediction


def score(prediction, answers, protocol):
    proto = VQA_PROTOCOLS[protocol]
    return question_score(proto.prediction(prediction), proto.answers(answers))


@pytest.mark.parametrize(
    "prediction, answers, textvqa, vqa_v2",
    [
        # from the issue
        ("Nokia", ["Nokia"] * 10, 1.0, 0.0),  # vqa-v2 lowercases the prediction, never equal answers
        ("two", ["2"] * 3 + ["two"] * 7, 1.0, 0.9),  # leave-one-out by position: 3 x 2/3 + 7 x 1, over 10
        ("x,y", ["x y"] * 10, 0.0, 1.0),  # textvqa deletes commas; vqa-v2 turns a lone one into a space
        ("5.", ["5"] * 10, 1.0, 1.0),  # a period after a digit still goes
        # ours
        ("1,000 x-ray", ["1000 x ray"] * 10, 1.0, 0.0),  # vqa-v2: a digit,digit deletes every mark, so "xray"
        ("." * 40, ["." * 8] * 10, 0.0, 1.0),  # at most 32 periods go (re.UNICODE passed as count)
        ("Nokia", ["Nokia"] * 9 + ["nokia"], 1.0, 0.3),  # vqa-v2 answers keep their case: 9 x 1/3 over 10
        ("Bob's", ["bob 's"] * 10, 1.0, 0.0),  # textvqa splits off 's
        ("the dont", ["don't"] * 10, 1.0, 1.0),  # article dropped, contraction table applied
        ("3.5 kg", ["3.5 kg"] * 4 + ["4 kg"] * 6, 1.0, 1.0),  # a period before a digit stays; 4 matches
        ("3.5 kg", ["3.5 kg"] * 2 + ["4 kg"] * 8, 0.6, 0.6),  # 2 x 1/3 + 8 x 2/3, over 10
    ],
)
def test_hand_checked_vectors(prediction, answers, textvqa, vqa_v2):
    assert score(prediction, answers, "textvqa") == pytest.approx(textvqa)
    assert score(prediction, answers, "vqa-v2") == pytest.approx(vqa_v2)


def test_punctuation_rule_looks_at_the_original_text():
    assert process_punctuation("yes/no") == "yes no"  # a mark between words becomes a space
    assert process_punctuation("yes / no") == "yes  no"  # next to a space it is deleted
    assert process_punctuation("a-b c -d") == "ab c d"  # " -" anywhere deletes every "-"
    assert evalai_answer("What's THE answer?") == "what 's answer"
    assert vqa_prediction("  Ten\tapples ") == "10 apples"


def write_gt(path):
    path.write_text(json.dumps({"dataset_name": "textvqa", "data": [
        {"question_id": 1, "question": "brand?", "answers": ["Nokia"] * 10},
        {"question_id": 2, "question": "how many?", "answers": ["2"] * 3 + ["two"] * 7},
        {"question_id": 3, "question": "what?", "answers": ["x y"] * 10},
    ]}))


def test_scores_an_evalai_submission_by_question_id(tmp_path):
    write_gt(tmp_path / "val.json")
    questions = load_textvqa(tmp_path / "val.json")
    submission = [{"question_id": 3, "answer": "x,y"}, {"question_id": 1, "answer": "Nokia"}, {"question_id": 2, "answer": "two"}]
    official = score_textvqa(questions, submission, "textvqa").summary()
    qwen = score_textvqa(questions, submission, "vqa-v2").summary()
    assert (official["accuracy"], official["n"], official["aligned_by"]) == (pytest.approx(2 / 3), 3, "id")
    assert qwen["accuracy"] == pytest.approx(1.9 / 3)


def test_a_question_without_an_answer_scores_zero_and_is_counted(tmp_path):
    write_gt(tmp_path / "val.json")
    scores = score_textvqa(load_textvqa(tmp_path / "val.json"), [{"question_id": 1, "answer": "nokia"}, {"question_id": 9, "answer": "x"}])
    summary = scores.summary()
    assert (summary["accuracy"], summary["no_answer"], summary["missing"], summary["unmatched"]) == (pytest.approx(1 / 3), 2, 2, 1)
    assert [q["score"] for q in scores.per_question] == [1.0, 0.0, 0.0]


def test_a_question_with_fewer_than_ten_answers_divides_by_their_number():
    # 3 x min(1, 2/3) over 3 answers is 2/3 (over 10 it would be 0.2); 6 x 1 over 6 is 1.0 (not 0.6)
    questions = [Question("1", ["x"] * 3), Question("2", ["b"] * 4 + ["c"] * 2)]
    records = [{"question_id": "1", "answer": "x"}, {"question_id": "2", "answer": "b"}]
    for protocol in VQA_PROTOCOLS:
        scores = [q["score"] for q in score_textvqa(questions, records, protocol).per_question]
        assert scores == [pytest.approx(2 / 3), 1.0], protocol
    assert question_score("x", ["x"] * 3) == pytest.approx(2 / 3)


PIECES = ["a", "the", "an", "Two", "none", "dont", "Im", "isnt", " ", "  ", "\t", "\n", "\v", "\x1c", ".", "..", "5", "3.5",
          ",", "1,000", "?", "'s", "/", "-", " -", "- ", "(", ")", "x", "é", "İ", "ß", "٣", "\u00a0", "!", "@", "`", "\\", "_",
          "=", "+", ">", "<", '"', "{", "}", "[", "]", ";", "Nokia", "'", "yes", "o'clock", "oclock", "*", "\ue000", "٣,٤"]


def random_texts(seed, count, ascii_only=False):
    rng = random.Random(seed)
    pieces = [p for p in PIECES if p.isascii()] if ascii_only else PIECES
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(count)]


def test_column_normalizers_equal_the_per_string_references(arrow):
    texts = random_texts(1, 1500) + random_texts(2, 1500, ascii_only=True) + ["." * 40 + "x", "." * 33 + "5", ""]
    for name, (_, reference, _) in NORMALIZERS.items():
        assert normalize_column(texts, name) == [reference(t) for t in texts], name


def test_vectorized_scores_equal_the_per_question_formula():
    rng = random.Random(5)
    pool = random_texts(3, 40, ascii_only=True) + ["Nokia", "nokia", "two", "2", "x y", "x,y"]
    questions = [Question(str(i), [rng.choice(pool) for _ in range(rng.randint(0, 10))]) for i in range(400)]
    records = [{"question_id": str(i), "answer": rng.choice(pool)} for i in range(0, 400, 1) if i % 7]
    for name, protocol in VQA_PROTOCOLS.items():
        scores = score_textvqa(questions, records, name).per_question
        by_id = {r["question_id"]: r["answer"] for r in records}
        expected = [question_score(protocol.prediction(by_id[q.question_id]), protocol.answers(q.answers)) if q.question_id in by_id
                    else 0.0 for q in questions]
        # to the last bit on Python 3.11; Python 3.12's sum() compensates rounding, numpy's does not (1e-16 apart)
        assert [q["score"] for q in scores] == pytest.approx(expected, abs=1e-12), name
