"""TextVQA under both protocols: vectors checked by hand against the reference code's rules, each
chosen so that a plausible simplification scores it differently."""
from __future__ import annotations

import json

import pytest

from vlground.eval.textvqa import VQA_PROTOCOLS, load_textvqa, question_score, score_textvqa
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
