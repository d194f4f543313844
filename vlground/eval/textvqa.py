"""TextVQA accuracy under its two published protocols.

- "textvqa" (default): the official EvalAI/mmf metric; prediction and all answers normalized by
  `evalai_answer`.
- "vqa-v2": the VQA evaluator as Qwen-VL ships it (eval_mm/vqa_eval.py), see `vqa_normalize`.
Both score a question as the mean, over the 10 ways of leaving one human answer out, of
min(1, matches among the other 9 / 3), where answers are told apart by position, not by value.
Qwen-VL's published TextVQA numbers used "vqa-v2"; the TextVQA leaderboard uses "textvqa"."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlground.eval.benchmark import Benchmark, Option
from vlground.eval.errors import EvalInputError
from vlground.eval.inputs import InputProblems
from vlground.eval.questions import AnswerScores, Question, answers_for, load_questions
from vlground.eval.vqa_columns import NORMALIZERS, normalize_column

ID_KEYS = ("question_id", "questionId", "id")
EXPECTED = '{"data": [{"question_id", "answers": [...]}]} as in TextVQA_0.5.1_val.json'


@dataclass(frozen=True)
class VQAProtocol:
    """How a protocol normalizes the prediction and a question's human answers: by the normalizers
    of `vqa_columns.NORMALIZERS` named here; `varied_answers_only` leaves a question's answers as
    they are when they are all the same string (Qwen-VL's vqa_eval.py)."""

    name: str
    summary: str
    prediction_normalizer: str
    answer_normalizer: str
    varied_answers_only: bool = False

    def prediction(self, text: str) -> str:
        return NORMALIZERS[self.prediction_normalizer][1](text)

    def answers(self, answers: list[str]) -> list[str]:
        if self.varied_answers_only and len(set(answers)) <= 1:
            return list(answers)
        return [NORMALIZERS[self.answer_normalizer][1](a) for a in answers]

    def all_answers(self, questions: Sequence[Question]) -> list[str]:
        """Every question's answers, normalized, one flat list (column-wise `answers`)."""
        if not self.varied_answers_only:
            return normalize_column([a for q in questions for a in q.answers], self.answer_normalizer)
        varied = [len(set(q.answers)) > 1 for q in questions]
        done = iter(normalize_column([a for q, v in zip(questions, varied) if v for a in q.answers], self.answer_normalizer))
        return [next(done) if v else a for q, v in zip(questions, varied) for a in q.answers]


VQA_PROTOCOLS = {
    p.name: p
    for p in [
        VQAProtocol("textvqa", "official EvalAI/mmf: prediction and all answers normalized alike", "evalai", "evalai"),
        VQAProtocol("vqa-v2", "Qwen-VL's vqa_eval.py: prediction normalized; answers punctuation only, if not all equal",
                    "vqa_prediction", "vqa_punctuation", varied_answers_only=True),
    ]
}


def load_textvqa(path: str | Path, problems: InputProblems | None = None) -> list[Question]:
    """Questions from TextVQA_0.5.1_val.json (`data[*].question_id`, `answers` as strings) or a VQA
    annotation file (`annotations[*].answers[*].answer`)."""
    return load_questions(path, benchmark="TextVQA", id_key="question_id", expected=EXPECTED,
                          tables=("data", "annotations"), problems=problems)


def question_score(prediction: str, answers: Sequence[str]) -> float:
    """Mean over leaving each answer out of min(1, equal answers among the rest / 3). Inputs are
    already normalized."""
    if not answers:
        return 0.0
    matches = sum(a == prediction for a in answers)
    return sum(min(1.0, (matches - (a == prediction)) / 3) for a in answers) / len(answers)


def leave_one_out_scores(predictions: Sequence[str | None], answers: Sequence[str], counts: np.ndarray) -> np.ndarray:
    """`question_score` of every question at once: question i has the prediction `predictions[i]`
    (None scores 0) and the next `counts[i]` of the flat `answers`. Each answer's term is summed
    in answer order, one answer position at a time, so every float equals the per-question sum."""
    n = len(predictions)
    rows = np.repeat(np.arange(n), counts)
    ids = {a: i for i, a in enumerate(dict.fromkeys(answers))}
    answer_codes = np.fromiter(map(ids.__getitem__, answers), dtype=np.int64, count=len(answers))
    prediction_codes = np.fromiter((-1 if p is None else ids.get(p, -2) for p in predictions), dtype=np.int64, count=n)
    equal = answer_codes == prediction_codes[rows]
    matches = np.bincount(rows[equal], minlength=n)
    terms = np.minimum(1.0, (matches[rows] - equal) / 3)
    position = np.arange(len(answers)) - np.repeat(np.cumsum(counts) - counts, counts)
    total = np.zeros(n)
    for j in range(int(counts.max(initial=0))):
        at = position == j
        total[rows[at]] += terms[at]
    answered = np.array([p is not None for p in predictions], dtype=bool) & (counts > 0)
    return np.where(answered, total / np.maximum(counts, 1), 0.0)


@dataclass(kw_only=True)
class VQAScores(AnswerScores):
    metric: str = "accuracy"

    @staticmethod
    def describe(summary: dict) -> list[str]:
        return [f"protocol {summary['protocol']}: accuracy {summary['accuracy'] * 100:.2f} on {summary['n']} "
                f"questions ({summary['no_answer']} without an answer)"]


def score_textvqa(
    questions: Sequence[Question], records: Sequence[dict], protocol: str = "textvqa", *, malformed: int = 0,
    problems: InputProblems | None = None,
) -> VQAScores:
    """Accuracy of `records` ({"question_id", "answer"}) on `questions`; a question without an
    answer scores 0 and is counted in `no_answer`."""
    if protocol not in VQA_PROTOCOLS:
        raise EvalInputError(f"unknown TextVQA protocol {protocol!r}; protocols: {', '.join(VQA_PROTOCOLS)}")
    proto = VQA_PROTOCOLS[protocol]
    problems = problems if problems is not None else InputProblems()
    alignment, answers = answers_for(questions, records, ID_KEYS, problems)
    given = [i for i, a in enumerate(answers) if a is not None]
    normalized: list[str | None] = [None] * len(questions)
    for i, text in zip(given, normalize_column([answers[i] for i in given], proto.prediction_normalizer)):
        normalized[i] = text
    counts = np.array([len(q.answers) for q in questions], dtype=np.int64)
    scores = leave_one_out_scores(normalized, proto.all_answers(questions), counts).tolist()
    per_question = [
        {"question_id": q.question_id, "answer": a, "normalized": t, "score": score}
        for q, a, t, score in zip(questions, answers, normalized, scores)
    ]
    return VQAScores(protocol=protocol, per_question=per_question, alignment=alignment, ground_truth=questions, malformed=malformed,
                     problems=problems)


BENCHMARK = Benchmark(
    name="textvqa",
    items="questions",
    help="TextVQA accuracy (soft VQA score over the 10 human answers).",
    gt_help="Ground truth: TextVQA_0.5.1_val.json, or a VQA annotation file.",
    pred_help="Predictions: JSON lines, or a JSON array of objects (the EvalAI submission).",
    rows_option="per-question",
    rows_help="Write each question's normalized answer and score to this JSON-lines file.",
    load=load_textvqa,
    score=score_textvqa,
    options=(Option("protocol", "textvqa", "textvqa (official EvalAI normalization) or vqa-v2 (Qwen-VL's VQA evaluator)."),),
    protocols=tuple((name, p.summary) for name, p in VQA_PROTOCOLS.items()),
)
