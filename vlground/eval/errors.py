"""The input errors every evaluator raises; the CLI prints their message and exits non-zero."""
from __future__ import annotations


class EvalInputError(ValueError):
    """An input file cannot be used; the message names it and says what is expected."""


class GroundTruthError(EvalInputError):
    """The ground-truth file cannot be read."""


class PredictionFileError(EvalInputError):
    """The prediction file cannot be read at all (single bad lines are counted, not raised)."""
