"""TextVQA accuracy under its two published protocols.

- "textvqa" (default): the official EvalAI/mmf metric; prediction and all answers normalized by
  `evalai_answer`.
- "vqa-v2": the VQA evaluator as Qwen-VL ships it (eval_mm/vqa_eval.py), see `vqa_normalize`.
Both score a question as the mean, over the 10 ways of leaving one human answer out, of
min(1, matches among the other 9 / 3), where answers are told apart by position, not by value.
Qwen-VL's published TextVQA numbers used "vqa-v2"; the TextVQA leaderboard uses "textvqa"."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vlground.eval.benchmark import Benchmark, Option
from vlground.eval.errors import EvalInputError
from vlground.eval.inputs import InputProblems
from vlground.eval.questions import AnswerScores, Question, answers_for, load_questions
from vlground.eval.vqa_normalize import evalai_answer, vqa_answers, vqa_prediction

ID_KEYS = ("question_id", "questionId", "id")
EXPECTED = '{"data": [{"question_id", "answers": [...]}]} as in TextVQA_0.5.1_val.json'


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
    alignment, answers = answers_for(questions, records, ID_KEYS)
    per_question = []
    for question, answer in zip(questions, answers):
        normalized = proto.prediction(answer) if answer is not None else None
        score = question_score(normalized, proto.answers(question.answers)) if normalized is not None else 0.0
        per_question.append({"question_id": question.question_id, "answer": answer, "normalized": normalized, "score": score})
    return VQAScores(protocol=protocol, per_question=per_question, alignment=alignment, malformed=malformed,
                     problems=problems if problems is not None else InputProblems())


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
