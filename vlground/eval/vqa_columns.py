"""The VQA normalizers of `vqa_normalize` over whole columns of strings at once (pyarrow compute).

Each distinct string is normalized once (the columns are dictionary-encoded first: a question's ten
answers repeat). Rows that pyarrow cannot treat exactly as Python does go through the per-string
reference functions instead, so the result equals them on every row: for the normalizers that
lowercase and split, text that is not ASCII (Unicode case mapping, digits and whitespace) or holds
the separators \\x1c-\\x1f (whitespace to Python's `str.split`, not to pyarrow's); for the
punctuation step alone, Unicode text with a comma or period (Python's \\d is Unicode); for all,
text with more than 32 periods (the references' limit).
For the rest, every step is the reference's, column-wise: the punctuation rule looks at the text as
it entered the step; a period followed by a digit is kept by marking it, deleting every other
period, and unmarking."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from vlground.extras import missing
from vlground.eval.vqa_normalize import (
    ARTICLES,
    CONTRACTIONS,
    NUMBER_WORDS,
    PUNCTUATION,
    evalai_answer,
    process_punctuation,
    vqa_prediction,
)

_KEPT_PERIOD = "\ue000"  # never in an ASCII row: marks a period that a digit follows
_PYTHON_ONLY = r"[^\x00-\x1b\x20-\x7f]"  # non-ASCII, or \x1c-\x1f
_PERIOD_LIMIT = 32
_ANY_MARK = "[" + re.escape("".join(PUNCTUATION) + ".") + "]"
# RE2 forms of the references' digit,digit tests (no lookarounds needed for a yes/no search)
_DIGIT_COMMA = {"vqa": "[0-9],[0-9]", "evalai": "[0-9],+[0-9]"}


def _punctuation(pc, texts, digit_comma: str):
    """`process_punctuation` on a column of ASCII text; rows without any mark or period pass as they are."""
    touched = pc.match_substring_regex(texts, _ANY_MARK)
    if not pc.any(touched).as_py():
        return texts
    marked = pc.filter(texts, touched)
    delete_all = pc.match_substring_regex(marked, digit_comma)
    out = marked
    for mark in PUNCTUATION:
        if not pc.any(pc.match_substring(marked, mark)).as_py():
            continue
        deleted = pc.or_(delete_all, pc.or_(pc.match_substring(marked, mark + " "), pc.match_substring(marked, " " + mark)))
        out = pc.if_else(deleted, pc.replace_substring(out, mark, ""), pc.replace_substring(out, mark, " "))
    out = pc.replace_substring_regex(out, r"\.([0-9])", _KEPT_PERIOD + r"\1")
    out = pc.replace_substring(pc.replace_substring(out, ".", ""), _KEPT_PERIOD, ".")
    return pc.replace_with_mask(texts, touched, out)


def _lookup(pc, pa, words, table: dict[str, str]):
    """Each word replaced by its entry in `table`, if it has one."""
    keys = pa.array(list(table))
    found = pc.take(pa.array(list(table.values())), pc.index_in(words, value_set=keys))
    return pc.coalesce(found, words)


def _digit_article(pc, pa, texts):
    """`process_digit_article` on a column of ASCII text: lowercase, split, number words, articles
    dropped, contractions, joined by single spaces."""
    lists = pc.ascii_split_whitespace(pc.ascii_lower(texts))
    words = _lookup(pc, pa, pc.list_flatten(lists), NUMBER_WORDS)
    keep = pc.and_(pc.not_equal(words, ""), pc.invert(pc.is_in(words, value_set=pa.array(sorted(ARTICLES)))))
    kept = _lookup(pc, pa, pc.filter(words, keep), CONTRACTIONS)
    return _rejoin(pc, pa, lists, len(texts), np.asarray(keep, dtype=bool), kept)


def _evalai_steps(pc, pa, texts):
    texts = pc.ascii_lower(texts)
    for old, new in ((",", ""), ("?", ""), ("'s", " 's")):
        texts = pc.replace_substring(texts, old, new)
    texts = pc.ascii_trim_whitespace(pc.replace_substring_regex(texts, "[\n\t]", " "))
    return _digit_article(pc, pa, _punctuation(pc, texts, _DIGIT_COMMA["evalai"]))


def _vqa_prediction_steps(pc, pa, texts):
    texts = pc.ascii_trim_whitespace(pc.replace_substring_regex(texts, "[\n\t]", " "))
    return _digit_article(pc, pa, _punctuation(pc, texts, _DIGIT_COMMA["vqa"]))


def _punctuation_steps(pc, pa, texts):
    return _punctuation(pc, texts, _DIGIT_COMMA["vqa"])


def _not_plain_ascii(pc, texts):
    """Rows that lowercasing and splitting must leave to Python: Unicode text, \\x1c-\\x1f."""
    return pc.match_substring_regex(texts, _PYTHON_ONLY)


def _unicode_digits_may_matter(pc, texts):
    """Rows where the punctuation step alone must be Python's: Unicode text with a comma or a
    period, whose neighbours Python's \\d might call digits (no lowercasing, no splitting here),
    and text holding the character that marks kept periods."""
    unicode_near_marks = pc.and_(pc.match_substring_regex(texts, "[^\x00-\x7f]"), pc.match_substring_regex(texts, "[,.]"))
    return pc.or_(unicode_near_marks, pc.match_substring(texts, _KEPT_PERIOD))


# name -> (column steps, the per-string reference they equal, the rows the steps leave to the reference)
NORMALIZERS: dict[str, tuple[Callable, Callable[[str], str], Callable]] = {
    "evalai": (_evalai_steps, evalai_answer, _not_plain_ascii),
    "vqa_prediction": (_vqa_prediction_steps, vqa_prediction, _not_plain_ascii),
    "vqa_punctuation": (_punctuation_steps, process_punctuation, _unicode_digits_may_matter),
}


def _rejoin(pc, pa, lists, n: int, kept: np.ndarray, words):
    """Rows of `lists` holding only their `kept` words (`words`, already filtered), joined by spaces."""
    rows = np.asarray(pc.list_parent_indices(lists))
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows[kept], minlength=n), out=offsets[1:])
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), words), " ")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def normalize_column(texts: Sequence[str], normalizer: str) -> list[str]:
    """`NORMALIZERS[normalizer]`'s reference applied to every string: each distinct string once, by
    the column steps, except the rows they leave to the reference (and those with over 32 periods).
    Without pyarrow (the light install), each distinct string by the reference."""
    steps, reference, left_to_python = NORMALIZERS[normalizer]
    if missing("arrow"):
        normalized = {text: reference(text) for text in dict.fromkeys(texts)}
        return [normalized[text] for text in texts]
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        column = pa.array(texts, type=pa.string())
    except UnicodeEncodeError:  # lone surrogates (from JSON escapes) have no UTF-8 form: those by the reference
        unencodable = {i for i, t in enumerate(texts) if not _encodable(t)}
        rest = iter(normalize_column([t for i, t in enumerate(texts) if i not in unencodable], normalizer))
        return [reference(t) if i in unencodable else next(rest) for i, t in enumerate(texts)]
    encoded = column.dictionary_encode()
    distinct = encoded.dictionary
    if len(distinct) == 0:
        return []
    by_python = pc.or_(left_to_python(pc, distinct), pc.greater(pc.count_substring(distinct, "."), _PERIOD_LIMIT))
    out = steps(pc, pa, distinct)
    if pc.any(by_python).as_py():
        exact = [reference(t) for t in pc.filter(distinct, by_python).to_pylist()]
        out = pc.replace_with_mask(out, by_python, pa.array(exact, type=pa.string()))
    return out.take(encoded.indices).to_pylist()
