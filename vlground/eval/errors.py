"""The input errors every evaluator raises; the CLI prints their message and exits non-zero."""
from __future__ import annotations


class EvalInputError(ValueError):
    """An input file cannot be used; the message names it and says what is expected."""


class GroundTruthError(EvalInputError):
    """The ground-truth file cannot be read."""


class PredictionFileError(EvalInputError):
    """The prediction file cannot be read at all (single bad lines are counted, not raised)."""


class NothingToScore(EvalInputError):
    """The inputs hold no sample to score (an empty file, or every item refused): a run, not a usage
    error, that produced no number; the CLI exits with status 1."""
