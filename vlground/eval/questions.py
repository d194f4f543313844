"""The question type of the answer benchmarks (TextVQA, DocVQA, ...) and its one loader.

Their ground truth is one JSON object holding a list of questions (under "data", or "annotations"
for VQA annotation files), each with an id and its human answers: a list of strings, or of
{"answer": str} objects."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vlground.eval.errors import GroundTruthError
from vlground.eval.inputs import InputProblems, InvalidValue, identifier, repeated_id, text_list
from vlground.eval.predictions import Alignment, align, answer_text
from vlground.eval.scores import Scores, mean


@dataclass(frozen=True)
class Question:
    """One question: its id (as text, so 7 and "7" match) and its human answers as written."""

    question_id: str
    answers: list[str]


def read_json(path: Path, what: str, expected: str):
    """The JSON value of a whole file, or GroundTruthError saying what the file should hold."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GroundTruthError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise GroundTruthError(f"{path}: cannot read {what} ({getattr(error, 'strerror', None) or error})") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else f"{type(error).__name__}: {error}"
        raise GroundTruthError(f"{path}: not {what} ({reason}); expected {expected}") from None


def load_questions(
    path: str | Path,
    *,
    benchmark: str,
    id_key: str,
    expected: str,
    tables: Sequence[str] = ("data",),
    problems: InputProblems | None = None,
) -> list[Question]:
    """Questions from the first of `tables` the file holds. A question whose id or answers are of
    the wrong type, or whose id repeats an earlier one, is refused (see `InputProblems`)."""
    path = Path(path)
    problems = problems if problems is not None else InputProblems()
    content = read_json(path, f"{benchmark} ground truth", expected)
    table = next((t for t in tables if isinstance(content, dict) and t in content), None)
    rows = content[table] if table is not None else None
    if not isinstance(rows, list):
        raise GroundTruthError(f"{path}: not {benchmark} ground truth (no list under {' or '.join(map(repr, tables))}); expected {expected}")
    questions: list[Question] = []
    seen: dict[str, str] = {}
    for index, row in enumerate(rows):
        where = f"{path}: {table}[{index}]"
        try:
            if not isinstance(row, dict):
                raise InvalidValue(f"is {type(row).__name__}, not an object with {id_key!r} and 'answers'")
            for key in (id_key, "answers"):
                if key not in row:
                    raise InvalidValue(f"has no {key!r}")
            question = Question(identifier(row[id_key], id_key), text_list(row["answers"], "answers"))
        except InvalidValue as error:
            problems.refuse_gt(where, str(error))
            continue
        reason = repeated_id(seen, question.question_id, where)
        if reason is not None:
            problems.refuse_gt(where, reason)
            continue
        questions.append(question)
    return questions


def answers_for(
    questions: Sequence[Question], records: Sequence[dict], id_keys: Sequence[str], problems: InputProblems
) -> tuple[Alignment, list[str | None]]:
    """Each question's predicted answer (None: no prediction, or one without an answer string),
    records aligned by id when they carry one, else by order. An "answer" that is neither text
    nor null (a number, a list) is refused, not read as "no answer" unsaid."""
    alignment = align([q.question_id for q in questions], records, id_keys)
    answers = [answer_text(record) for record in alignment.records]
    for question, record, answer in zip(questions, alignment.records, answers):
        if answer is None and record is not None and record.get("answer") is not None:
            problems.refuse_prediction(f"prediction for question {question.question_id}", f"'answer' is {type(record['answer']).__name__}, not text")
    return alignment, answers


@dataclass(kw_only=True)
class AnswerScores(Scores):
    """Per-question rows ({"question_id", "answer", ..., "score"}) and their mean under `metric`;
    `protocol` is named in the summary when the benchmark has several."""

    metric: str
    per_question: list[dict]
    protocol: str | None = None

    def headline(self) -> dict:
        named = {"protocol": self.protocol} if self.protocol is not None else {}
        return {
            **named,
            self.metric: mean(q["score"] for q in self.per_question),
            "n": len(self.per_question),
            "no_answer": sum(q["answer"] is None for q in self.per_question),
        }

    def rows(self) -> list[dict]:
        return self.per_question
