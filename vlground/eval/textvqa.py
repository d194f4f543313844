"""TextVQA accuracy under its two published protocols.

- "textvqa" (default): the official EvalAI/mmf metric; prediction and all answers normalized by
  `evalai_answer`.
- "vqa-v2": the VQA evaluator as Qwen-VL ships it (eval_mm/vqa_eval.py), see `vqa_normalize`.
Both score a question as the mean, over the 10 ways of leaving one human answer out, of
min(1, matches among the other 9 / 3), where answers are told apart by position, not by value.
Qwen-VL's published TextVQA numbers used "vqa-v2"; the TextVQA leaderboard uses "textvqa"."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vlground.eval.errors import GroundTruthError
from vlground.eval.predictions import Alignment, align, answer_text
from vlground.eval.vqa_normalize import evalai_answer, vqa_answers, vqa_prediction

ID_KEYS = ("question_id", "questionId", "id")


@dataclass(frozen=True)
class VQAProtocol:
    """How a protocol normalizes the prediction and a question's human answers."""

    name: str
    summary: str
    prediction: Callable[[str], str]
    answers: Callable[[list[str]], list[str]]


VQA_PROTOCOLS = {
    p.name: p
    for p in [
        VQAProtocol("textvqa", "official EvalAI/mmf: prediction and all answers normalized alike",
                    evalai_answer, lambda answers: [evalai_answer(a) for a in answers]),
        VQAProtocol("vqa-v2", "Qwen-VL's vqa_eval.py: prediction normalized; answers punctuation only, if not all equal",
                    vqa_prediction, vqa_answers),
    ]
}


@dataclass(frozen=True)
class Question:
    question_id: str
    answers: list[str]


def load_textvqa(path: str | Path) -> list[Question]:
    """Questions from TextVQA_0.5.1_val.json (`data[*].question_id`, `answers` as strings) or a VQA
    annotation file (`annotations[*].answers[*].answer`)."""
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        rows = content["data"] if "data" in content else content["annotations"]
        return [
            Question(str(row["question_id"]), [a["answer"] if isinstance(a, dict) else str(a) for a in row["answers"]])
            for row in rows
        ]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise GroundTruthError(
            f"{path}: not TextVQA ground truth ({type(error).__name__}: {error}); expected "
            '{"data": [{"question_id", "answers": [...]}]} as in TextVQA_0.5.1_val.json'
        ) from None


def question_score(prediction: str, answers: Sequence[str]) -> float:
    """Mean over leaving each answer out of min(1, equal answers among the rest / 3). Inputs are
    already normalized."""
    if not answers:
        return 0.0
    matches = sum(a == prediction for a in answers)
    return sum(min(1.0, (matches - (a == prediction)) / 3) for a in answers) / len(answers)


@dataclass
class VQAScores:
    protocol: str
    per_question: list[dict]
    alignment: Alignment
    malformed: int = 0

    def summary(self) -> dict:
        scores = [q["score"] for q in self.per_question]
        return {
            "protocol": self.protocol,
            "accuracy": sum(scores) / len(scores) if scores else 0.0,
            "n": len(scores),
            "no_answer": sum(q["answer"] is None for q in self.per_question),
            **self.alignment.counts(),
            "malformed": self.malformed,
        }


def score_textvqa(questions: Sequence[Question], records: Sequence[dict], protocol: str = "textvqa", *, malformed: int = 0) -> VQAScores:
    """Accuracy of `records` ({"question_id", "answer"}) on `questions`; a question without an
    answer scores 0 and is counted in `no_answer`."""
    if protocol not in VQA_PROTOCOLS:
        raise ValueError(f"unknown TextVQA protocol {protocol!r}; protocols: {', '.join(VQA_PROTOCOLS)}")
    proto = VQA_PROTOCOLS[protocol]
    alignment = align([q.question_id for q in questions], records, ID_KEYS)
    per_question = []
    for question, record in zip(questions, alignment.records):
        answer = answer_text(record)
        normalized = proto.prediction(answer) if answer is not None else None
        score = question_score(normalized, proto.answers(question.answers)) if normalized is not None else 0.0
        per_question.append({"question_id": question.question_id, "answer": answer, "normalized": normalized, "score": score})
    return VQAScores(protocol, per_question, alignment, malformed)
