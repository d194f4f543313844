"""ANLS for DocVQA / InfographicVQA, as the challenge's evaluator (shipped by Qwen-VL as
eval_mm/infographicsvqa_eval.py) computes it.

Per answer: both strings are normalized (strip, lowercase, whitespace runs to one space) and their
Levenshtein distance is divided by the longer of the two RAW strings (as uppercased, which is how the
script measures them), so padding the prediction with spaces lowers the normalized distance:
"abd   " against "abc" is 1/6, not 1/3. A question scores 1 - the smallest normalized distance over
its answers, or 0 when that is below the threshold (0.5)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rapidfuzz.distance import Levenshtein

from vlground.eval.benchmark import Benchmark, Option
from vlground.eval.inputs import InputProblems
from vlground.eval.questions import AnswerScores, Question, answers_for, load_questions

ID_KEYS = ("questionId", "question_id", "id")
ANLS_THRESHOLD = 0.5
EXPECTED = '{"data": [{"questionId", "answers": [...]}]} as in val_v1.0.json'


def _normalize(text: str) -> str:
    """strip, lowercase, whitespace runs to one space (split() drops the ends, so no strip() is needed)."""
    return " ".join(text.lower().split())


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


def load_docvqa(path: str | Path, problems: InputProblems | None = None) -> list[Question]:
    """Questions from a DocVQA/InfographicVQA annotation file (`{"data": [{"questionId", "answers"}]}`)."""
    return load_questions(path, benchmark="DocVQA", id_key="questionId", expected=EXPECTED, problems=problems)


@dataclass(kw_only=True)
class ANLSScores(AnswerScores):
    metric: str = "anls"

    @staticmethod
    def describe(summary: dict) -> list[str]:
        return [f"ANLS {summary['anls']:.4f} on {summary['n']} questions ({summary['no_answer']} without an answer)"]


def anls_scores(predictions: Sequence[str | None], answers: Sequence[str], counts: np.ndarray, threshold: float = ANLS_THRESHOLD) -> np.ndarray:
    """`anls_score` of every question at once: question i has the prediction `predictions[i]` (None
    scores 0) and the next `counts[i]` of the flat `answers`. The distances of all (answer,
    prediction) pairs come from one rapidfuzz `cpdist` call; divisors and minima are numpy's."""
    from rapidfuzz.process import cpdist

    rows = np.repeat(np.arange(len(predictions)), counts)
    answered = np.array([p is not None for p in predictions], dtype=bool)
    pairs = np.flatnonzero(answered[rows])
    out = np.zeros(len(predictions))
    if pairs.size == 0:
        return out
    pair_rows = rows[pairs]
    raw_answers = [answers[i] for i in pairs.tolist()]
    given = [p if p is not None else "" for p in predictions]
    normalized = list(map(_normalize, given))
    distance = cpdist(list(map(_normalize, raw_answers)), [normalized[r] for r in pair_rows.tolist()], scorer=Levenshtein.distance, workers=1)
    length = np.maximum(_upper_lengths(raw_answers), _upper_lengths(given)[pair_rows])
    values = np.zeros(pairs.size)
    np.divide(distance, length, out=values, where=length > 0)
    starts = np.flatnonzero(np.r_[True, pair_rows[1:] != pair_rows[:-1]])
    score = 1 - np.minimum.reduceat(values, starts)
    out[pair_rows[starts]] = np.where(score < threshold, 0.0, score)
    return out


def _upper_lengths(texts: list[str]) -> np.ndarray:
    """len(text.upper()), the reference's divisor ("ß".upper() is "SS")."""
    return np.fromiter(map(len, map(str.upper, texts)), dtype=np.int64, count=len(texts))


def score_docvqa(
    questions: Sequence[Question], records: Sequence[dict], threshold: float = ANLS_THRESHOLD, *, malformed: int = 0,
    problems: InputProblems | None = None,
) -> ANLSScores:
    """ANLS of `records` ({"questionId", "answer"}) on `questions`; a question without an answer
    scores 0 and is counted in `no_answer` (the reference script refuses such a submission)."""
    problems = problems if problems is not None else InputProblems()
    alignment, answers = answers_for(questions, records, ID_KEYS, problems)
    counts = np.array([len(q.answers) for q in questions], dtype=np.int64)
    scores = anls_scores(answers, [a for q in questions for a in q.answers], counts, threshold).tolist()
    per_question = [{"question_id": q.question_id, "answer": a, "score": score} for q, a, score in zip(questions, answers, scores)]
    return ANLSScores(per_question=per_question, alignment=alignment, ground_truth=questions, malformed=malformed,
                      problems=problems)


BENCHMARK = Benchmark(
    name="docvqa",
    items="questions",
    help="DocVQA / InfographicVQA ANLS, as the challenge evaluator computes it.",
    gt_help="Ground truth: val_v1.0.json (DocVQA) or the InfographicVQA equivalent.",
    pred_help="Predictions: JSON lines, or a JSON array [{\"questionId\", \"answer\"}].",
    rows_option="per-question",
    rows_help="Write each question's score to this JSON-lines file.",
    load=load_docvqa,
    score=score_docvqa,
    options=(Option("threshold", ANLS_THRESHOLD, "ANLS threshold: scores below it count 0.", type=float),),
    protocols=(("anls", "challenge evaluator: normalized Levenshtein over raw lengths, threshold 0.5"),),
)
