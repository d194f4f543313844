"""What a benchmark is to the rest of vlground: one entry (`Benchmark`) per module, listed in
`vlground.eval.registry`, from which `vlground eval NAME` and `vlground eval protocols` are built.

A benchmark module supplies a ground-truth loader (`load(path, problems=..., **loader options)`)
and a scorer (`score(items, records, malformed=..., problems=..., **options) -> Scores`); the
pipeline around them (reading the predictions, refusing bad inputs or collecting them, refusing to
score nothing) is here, the same for every benchmark."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlground.core.families import UnknownFamilyError
from vlground.eval.errors import EvalInputError, NothingToScore, PredictionFileError
from vlground.eval.inputs import InputProblems
from vlground.eval.predictions import read_predictions
from vlground.eval.scores import Scores


@dataclass(frozen=True)
class Option:
    """A setting of one benchmark, as `--name` on its command (underscores become dashes); passed
    to the loader when `loader`, else to the scorer."""

    name: str
    default: object
    help: str
    type: type = str
    flags: tuple[str, ...] = ()
    min: int | None = None
    loader: bool = False


@dataclass(frozen=True)
class Benchmark:
    """`items` names what the ground truth holds (samples, questions, ...); `rows_option` the flag
    that writes `Scores.rows()` (per-question, per-sample, ...); `protocols` lists (name, what it
    reproduces) for `vlground eval protocols`."""

    name: str
    help: str
    items: str
    gt_help: str
    pred_help: str
    rows_option: str
    rows_help: str
    load: Callable[..., list]
    score: Callable[..., Scores]
    options: tuple[Option, ...] = ()
    protocols: tuple[tuple[str, str], ...] = ()
    draws_images: bool = False  # the report draws the images its items name (then `eval NAME --image-root`)
    loads_images: bool = False  # the loader reads what it needs of those images too (given `image_root`)

    def evaluate(self, gt: str | Path, pred: str | Path, *, strict: bool = False, **options) -> Scores:
        """Score the prediction file `pred` against the ground truth `gt`. Without `strict`, refused
        inputs are counted and named in the summary; with it, the first one is an error, as are
        malformed prediction lines and repeated prediction ids. Raises NothingToScore when there is
        no ground-truth item or no prediction, EvalInputError for any other input it refuses."""
        predictions = read_predictions(pred)
        if not predictions.records:
            raise NothingToScore(f"{pred}: no predictions in this file; nothing to score")
        if strict and predictions.malformed:
            raise PredictionFileError(f"{pred}:{predictions.malformed[0]}: not a JSON object ({len(predictions.malformed)} such lines)")
        problems = InputProblems(strict=strict)
        loader = {o.name for o in self.options if o.loader} | ({"image_root"} if self.loads_images else set())
        load_options = {k: v for k, v in options.items() if k in loader}
        selection = {k: v for k, v in load_options.items() if k != "image_root"}  # what chose the items, not where images are
        items = require_items(self.load(Path(gt), problems=problems, **load_options), Path(gt), problems, self.items, selection)
        try:
            scores = self.score(items, predictions.records, malformed=len(predictions.malformed), problems=problems,
                                **{k: v for k, v in options.items() if k not in loader})
        except UnknownFamilyError as error:  # a --family the registry does not know is an input like the others
            raise EvalInputError(str(error)) from None
        if strict and scores.alignment.duplicates:
            raise PredictionFileError(f"{pred}: {scores.alignment.duplicates} predictions repeat an id already answered")
        return scores


def require_items(items: list, gt: Path, problems: InputProblems, what: str = "samples", selection: dict | None = None) -> list:
    """`items` unless there are none, which is NothingToScore naming the selection and the refused items."""
    if not items:
        chosen = ", ".join(f"{k} {v!r}" for k, v in (selection or {}).items() if v is not None)
        refused = f" ({len(problems.items)} refused, first: {problems.items[0]})" if problems.items else ""
        raise NothingToScore(f"{gt}: no {what} to score" + (f" with {chosen}" if chosen else "") + refused)
    return items

