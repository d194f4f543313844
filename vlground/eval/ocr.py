"""Character and word error rates of OCR output against reference transcriptions.

Rates are corpus-level, as OCR papers report them: total edit distance over total reference length
(characters for CER, whitespace-separated words for WER), plus the per-document mean of CER. Before
comparing, whitespace runs become one space (line breaks are layout, not content); `ignore_case`
lowercases both sides. A prediction with an `error`, or none at all, is scored as empty text (every
reference character deleted) and counted, never skipped."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz.distance import Levenshtein

from vlground.eval.errors import GroundTruthError
from vlground.eval.predictions import Alignment, align


@dataclass(frozen=True)
class Transcription:
    """The reference text of one image; `key` matches it with a prediction's "path"."""

    key: str
    path: str
    text: str


def document_key(path: str) -> str:
    """The file name without its extension: `scans/a.png` and `truth/a.txt` are the same document."""
    return Path(path).with_suffix("").name


def load_transcriptions(path: str | Path) -> list[Transcription]:
    """References from JSON lines `{"path": image, "text": reference}` or from a folder of `.txt`
    files named like the images (`a.png` -> `a.txt`, searched recursively)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.rglob("*.txt"))
        if not files:
            raise GroundTruthError(f"{path}: no .txt reference files in this folder")
        items = [Transcription(document_key(str(f)), str(f), f.read_text(encoding="utf-8")) for f in files]
    else:
        items = []
        try:
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    row = json.loads(line)
                    items.append(Transcription(document_key(row["path"]), row["path"], str(row["text"])))
        except (OSError, UnicodeDecodeError) as error:
            raise GroundTruthError(f"{path}: cannot read references ({error})") from None
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise GroundTruthError(
                f'{path}:{number}: not a reference line ({type(error).__name__}: {error}); expected {{"path", "text"}}'
            ) from None
    keys = [t.key for t in items]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise GroundTruthError(f"{path}: several references share the file name {repeated[:5]}; names must be unique")
    return items


def _normalize(text: str, ignore_case: bool) -> str:
    text = " ".join(text.split())
    return text.lower() if ignore_case else text


@dataclass
class OCRScores:
    per_document: list[dict]
    alignment: Alignment
    malformed: int = 0

    def summary(self) -> dict:
        docs = self.per_document
        chars = sum(d["ref_chars"] for d in docs)
        words = sum(d["ref_words"] for d in docs)
        char_edits = sum(d["char_edits"] for d in docs)
        word_edits = sum(d["word_edits"] for d in docs)
        return {
            "cer": char_edits / chars if chars else float(char_edits > 0),
            "wer": word_edits / words if words else float(word_edits > 0),
            "mean_document_cer": sum(d["cer"] for d in docs) / len(docs) if docs else 0.0,
            "n": len(docs),
            "errors": sum(d["error"] is not None for d in docs),
            **self.alignment.counts(),
            "malformed": self.malformed,
        }


def score_ocr(
    references: Sequence[Transcription], records: Sequence[dict], *, ignore_case: bool = False, malformed: int = 0
) -> OCRScores:
    """Edit distances of `vlground ocr` output records ({"path", "text", "error"}) against `references`."""
    keyed = [dict(r, _key=document_key(r["path"])) if isinstance(r.get("path"), str) else r for r in records]
    alignment = align([t.key for t in references], keyed, ("_key",), by_id_only=True)
    per_document = []
    for reference, record in zip(references, alignment.records):
        error = None if record is not None else "no prediction"
        if record is not None and record.get("error"):
            error = str(record["error"])
        predicted = record.get("text") if record is not None and not error else ""
        ref = _normalize(reference.text, ignore_case)
        hyp = _normalize(predicted if isinstance(predicted, str) else "", ignore_case)
        char_edits = Levenshtein.distance(ref, hyp)
        word_edits = Levenshtein.distance(ref.split(), hyp.split())
        per_document.append(
            {
                "path": reference.path,
                "ref_chars": len(ref),
                "ref_words": len(ref.split()),
                "char_edits": char_edits,
                "word_edits": word_edits,
                "cer": char_edits / len(ref) if ref else float(char_edits > 0),
                "error": error,
            }
        )
    return OCRScores(per_document, alignment, malformed)
