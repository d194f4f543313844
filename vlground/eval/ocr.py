"""Character and word error rates of OCR output against reference transcriptions.

Rates are corpus-level, as OCR papers report them: total edit distance over total reference length
(characters for CER, whitespace-separated words for WER), plus the per-document mean of CER. Before
comparing, whitespace runs become one space (line breaks are layout, not content); `ignore_case`
lowercases both sides. A prediction with an `error`, or none at all, is scored as empty text (every
reference character deleted) and counted, never skipped.

References and predictions are matched by file name: a reference file `receipt.jpg.txt` (what
`vlground ocr --txt-dir` writes) belongs to the image named receipt.jpg, a reference `receipt.txt`
or a `{"path": "scans/receipt.png"}` line to any image whose name without extension is receipt."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz.distance import Levenshtein

from vlground.eval.benchmark import Benchmark, Option
from vlground.eval.errors import GroundTruthError
from vlground.eval.inputs import InputProblems, InvalidValue, json_value, repeated_id, text
from vlground.eval.predictions import align
from vlground.eval.scores import Scores, mean


@dataclass(frozen=True)
class Transcription:
    """The reference text of one image; `key` matches it with a prediction's "path"."""

    key: str
    path: str
    text: str


def document_key(path: str) -> str:
    """The file name without its extension: `scans/a.png` and `truth/a.txt` are the same document."""
    return Path(path).stem  # as with_suffix("").name, and "" for an empty path instead of an error


def reference_file_key(path: Path) -> str:
    """The key of a reference .txt file: its name without ".txt" (`receipt.jpg.txt` -> receipt.jpg,
    `a.txt` -> a)."""
    return path.name[: -len(".txt")]


def prediction_key(path: str, references: set[str]) -> str:
    """A prediction's key among `references`: its full file name when a reference has it, else
    its name without extension."""
    name = Path(path).name
    return name if name in references else document_key(path)


def _read_folder(path: Path, problems: InputProblems) -> list[Transcription]:
    files = sorted(f for f in path.rglob("*.txt") if f.is_file())
    items = []
    for file in files:
        try:
            items.append(Transcription(reference_file_key(file), str(file), file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as error:
            problems.refuse_gt(str(file), f"cannot be read as UTF-8 text ({error})")
    return items


def _read_lines(path: Path, problems: InputProblems) -> list[Transcription]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise GroundTruthError(f"{path}: cannot read references ({error})") from None
    items = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json_value(line)
            if not isinstance(row, dict) or "path" not in row or "text" not in row:
                raise InvalidValue('is not an object with "path" and "text"')
            reference = text(row["path"], "path")
            items.append(Transcription(document_key(reference), reference, text(row["text"], "text")))
        except (ValueError, InvalidValue) as error:
            problems.refuse_gt(f"{path}:{number}", f'not a reference line ({error}); expected {{"path", "text"}}')
    return items


def load_transcriptions(path: str | Path, problems: InputProblems | None = None) -> list[Transcription]:
    """References from JSON lines `{"path": image, "text": reference}` or from a folder of `.txt`
    files named like the images (`a.png.txt` or `a.txt` for a.png, searched recursively). A
    reference whose text is not a string, or whose name another reference already has, is refused."""
    path = Path(path)
    problems = problems if problems is not None else InputProblems()
    if path.is_dir():
        items = _read_folder(path, problems)
        if not items and not problems.items:
            raise GroundTruthError(f"{path}: no .txt reference files in this folder")
    else:
        items = _read_lines(path, problems)
    seen: dict[str, str] = {}
    unique = []
    for item in items:
        reason = repeated_id(seen, item.key, item.path)
        if reason is None:
            unique.append(item)
        else:
            problems.refuse_gt(item.path, f"{reason}; reference file names must be unique")
    return unique


def _normalize(text: str, ignore_case: bool) -> str:
    text = " ".join(text.split())
    return text.lower() if ignore_case else text


def edit_counts(reference: str, predicted: str, ignore_case: bool = False) -> dict[str, int]:
    """Character and word edits that turn `predicted` into `reference`, and the reference's length
    in characters and words, whitespace runs as one space: what every OCR figure here comes from."""
    ref, hyp = _normalize(reference, ignore_case), _normalize(predicted, ignore_case)
    return {"ref_chars": len(ref), "ref_words": len(ref.split()),
            "char_edits": Levenshtein.distance(ref, hyp), "word_edits": Levenshtein.distance(ref.split(), hyp.split())}


def pooled_rates(counts: Sequence[dict]) -> dict[str, float]:
    """Corpus CER and WER of several documents' `edit_counts`: edits summed over references summed."""
    chars = sum(c["ref_chars"] for c in counts)
    words = sum(c["ref_words"] for c in counts)
    char_edits = sum(c["char_edits"] for c in counts)
    word_edits = sum(c["word_edits"] for c in counts)
    return {"cer": char_edits / chars if chars else float(char_edits > 0),
            "wer": word_edits / words if words else float(word_edits > 0)}


@dataclass(kw_only=True)
class OCRScores(Scores):
    per_document: list[dict]

    def headline(self) -> dict:
        docs = self.per_document
        return {
            **pooled_rates(docs),
            "mean_document_cer": mean(d["cer"] for d in docs),
            "n": len(docs),
            "errors": sum(d["error"] is not None for d in docs),
        }

    def rows(self) -> list[dict]:
        return self.per_document

    @staticmethod
    def describe(summary: dict) -> list[str]:
        return [f"CER {summary['cer'] * 100:.2f}%  WER {summary['wer'] * 100:.2f}% on {summary['n']} documents "
                f"({summary['errors']} without text)"]


def _document(reference: Transcription, record: dict | None, ignore_case: bool) -> dict:
    error = None if record is not None else "no prediction"
    if record is not None and record.get("error"):
        error = str(record["error"])
    predicted = record.get("text") if record is not None and not error else ""
    counts = edit_counts(reference.text, predicted if isinstance(predicted, str) else "", ignore_case)
    return {"path": reference.path, **counts, "cer": pooled_rates([counts])["cer"], "error": error}


def score_ocr(
    references: Sequence[Transcription], records: Sequence[dict], *, ignore_case: bool = False, malformed: int = 0,
    problems: InputProblems | None = None,
) -> OCRScores:
    """Edit distances of `vlground ocr` output records ({"path", "text", "error"}) against `references`."""
    known = {t.key for t in references}
    keyed = [dict(r, _key=prediction_key(r["path"], known)) if isinstance(r.get("path"), str) else r for r in records]
    alignment = align([t.key for t in references], keyed, ("_key",), by_id_only=True)
    per_document = [_document(reference, record, ignore_case) for reference, record in zip(references, alignment.records)]
    return OCRScores(per_document=per_document, alignment=alignment, ground_truth=references, malformed=malformed,
                     problems=problems if problems is not None else InputProblems())


BENCHMARK = Benchmark(
    name="ocr",
    items="reference texts",
    help="Character and word error rates of OCR output (whitespace runs count as one space).",
    gt_help='References: JSON lines {"path", "text"}, or a folder of .txt files named like the images (a.png.txt or a.txt).',
    pred_help="The JSON lines `vlground ocr` writes.",
    rows_option="per-document",
    rows_help="Write each document's edit counts to this JSON-lines file.",
    load=load_transcriptions,
    score=score_ocr,
    options=(Option("ignore_case", False, "Lowercase both sides before comparing.", type=bool),),
)
