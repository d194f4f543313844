"""The shape every benchmark's scores share: headline numbers, per-item rows, and an account of the
inputs (alignment, malformed prediction lines, refused items) so a number never hides what it lacks."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vlground.eval.inputs import InputProblems
from vlground.eval.predictions import Alignment


@dataclass(kw_only=True)
class Scores:
    """Subclasses give `headline()` (the benchmark's numbers, `n` among them), `rows()` (one dict
    per ground-truth item, what `--per-question` and its kin write) and `describe(summary)` (the
    text form); `summary()` is the JSON `--json` prints. `ground_truth` holds the items scored, in
    the order of the rows."""

    alignment: Alignment
    ground_truth: Sequence = ()
    malformed: int = 0
    problems: InputProblems = field(default_factory=InputProblems)

    def headline(self) -> dict:
        raise NotImplementedError

    def details(self) -> dict:
        """Numbers that follow the input account in the summary (none unless a benchmark has them)."""
        return {}

    def rows(self) -> list[dict]:
        raise NotImplementedError

    @staticmethod
    def describe(summary: dict) -> list[str]:
        raise NotImplementedError

    def summary(self) -> dict:
        return {**self.headline(), **self.alignment.counts(), "malformed": self.malformed, **self.problems.counts(), **self.details()}

    def lines(self) -> list[str]:
        return self.describe(self.summary())


def mean(values) -> float:
    """The mean as the reference scripts take it (a running sum in order, then one division); 0 for none."""
    values = list(values)
    return sum(values) / len(values) if values else 0.0
