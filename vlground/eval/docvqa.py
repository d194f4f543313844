"""ANLS for DocVQA / InfographicVQA, as the challenge's evaluator (shipped by Qwen-VL as
eval_mm/infographicsvqa_eval.py) computes it.

Per answer: both strings are normalized (strip, lowercase, whitespace runs to one space) and their
Levenshtein distance is divided by the longer of the two RAW strings (as uppercased, which is how the
script measures them), so padding the prediction with spaces lowers the normalized distance:
"abd   " against "abc" is 1/6, not 1/3. A question scores 1 - the smallest normalized distance over
its answers, or 0 when that is below the threshold (0.5)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz.distance import Levenshtein

from vlground.eval.errors import GroundTruthError
from vlground.eval.predictions import Alignment, align, answer_text

ID_KEYS = ("questionId", "question_id", "id")
ANLS_THRESHOLD = 0.5


def _normalize(text: str) -> str:
    return " ".join(text.strip().lower().split())


def normalized_distance(prediction: str, answer: str) -> float:
    """Levenshtein distance of the normalized strings over the longer raw (uppercased) length; 0
    when both are empty."""
    length = max(len(answer.upper()), len(prediction.upper()))
    return Levenshtein.distance(_normalize(answer), _normalize(prediction)) / length if length else 0.0


def anls_score(prediction: str, answers: Sequence[str], threshold: float = ANLS_THRESHOLD) -> float:
    """One question's ANLS: 1 - min normalized distance over the answers, 0 below `threshold`."""
    if not answers:
        return 0.0
    score = 1 - min(normalized_distance(prediction, a) for a in answers)
    return 0.0 if score < threshold else score


@dataclass(frozen=True)
class DocQuestion:
    question_id: str
    answers: list[str]


def load_docvqa(path: str | Path) -> list[DocQuestion]:
    """Questions from a DocVQA/InfographicVQA annotation file (`{"data": [{"questionId", "answers"}]}`)."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["data"]
        return [DocQuestion(str(row["questionId"]), [str(a) for a in row["answers"]]) for row in rows]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise GroundTruthError(
            f"{path}: not DocVQA ground truth ({type(error).__name__}: {error}); expected "
            '{"data": [{"questionId", "answers": [...]}]} as in val_v1.0.json'
        ) from None


@dataclass
class ANLSScores:
    per_question: list[dict]
    alignment: Alignment
    malformed: int = 0

    def summary(self) -> dict:
        scores = [q["score"] for q in self.per_question]
        return {
            "anls": sum(scores) / len(scores) if scores else 0.0,
            "n": len(scores),
            "no_answer": sum(q["answer"] is None for q in self.per_question),
            **self.alignment.counts(),
            "malformed": self.malformed,
        }


def score_docvqa(
    questions: Sequence[DocQuestion], records: Sequence[dict], threshold: float = ANLS_THRESHOLD, *, malformed: int = 0
) -> ANLSScores:
    """ANLS of `records` ({"questionId", "answer"}) on `questions`; a question without an answer
    scores 0 and is counted in `no_answer` (the reference script refuses such a submission)."""
    alignment = align([q.question_id for q in questions], records, ID_KEYS)
    per_question = []
    for question, record in zip(questions, alignment.records):
        answer = answer_text(record)
        score = anls_score(answer, question.answers, threshold) if answer is not None else 0.0
        per_question.append({"question_id": question.question_id, "answer": answer, "score": score})
    return ANLSScores(per_question, alignment, malformed)
