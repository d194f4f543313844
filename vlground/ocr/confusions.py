"""Fixing the look-alike characters PP-OCR confuses, where the neighbours leave no doubt.

Only unambiguous contexts are touched: "l" inside an all-capitals word or alone ("FlLE", "l am"),
"l" starting a word before a consonant no English word puts there ("lnvoice", "lmport": an "I"),
"rn" where English has no "rn" ("pharrnacy", "rnarket": an "m"), "0" starting or inside a word of
letters ("0pen", "C0FFEE"), "O" inside a number ("2O24"). A word that mixes letters and digits on
purpose ("B52", "10am", "XR-200") is left alone, and so are short ones, which abbreviations
("lb", "lbs", "ltd") make unsafe."""
from __future__ import annotations

import re

_WORD = re.compile(r"[A-Za-z0-9]+")
# English words open with "l" only before a vowel, "l" or "y" ("llama", "lymph"): before any other
# letter the "l" is a capital I ("lnvoice", "lmportant", "lsland").
_CAPITAL_I_AS_L = re.compile(r"^l(?=[bcdfgjkmnpqrstvwxz][a-z]{2,}$)")
# "m" read as "rn": after another "r" ("pharrnacy", "farrnhouse") or opening a word ("rnarket").
_M_AS_RN = re.compile(r"(?<=r)rn(?=[aeiouy])|^rn(?=[aeiouy])")


def _fix_word(word: str) -> str:
    letters = [c for c in word if c.isalpha()]
    digits = [c for c in word if c.isdigit()]
    if word == "l":
        return "I"
    if len(word) >= 4 and word.islower():
        word = _M_AS_RN.sub("m", _CAPITAL_I_AS_L.sub("I", word, count=1) if word[0] == "l" else word)
    if letters and not digits and len(letters) >= 2:
        others = [c for c in letters if c != "l"]
        if others and all(c.isupper() for c in others) and len(others) >= 2:
            return word.replace("l", "I")
        return word
    if digits == ["0"] * len(digits) and len(letters) >= 2 and word[-1] != "0":
        # zeros where the word is letters: "0pen", "C0FFEE", "0il"; "10" or "A0" never reach here
        upper = sum(c.isupper() for c in letters) > len(letters) / 2
        return "".join(("O" if upper or i == 0 else "o") if c == "0" else c for i, c in enumerate(word))
    if letters == ["O"] * len(letters) and len(digits) >= 2 and word[0].isdigit() and word[-1].isdigit():
        return word.replace("O", "0")
    return word


# PP-OCR's recognizer is trained on Chinese as well, and now and then writes the fullwidth form of
# ASCII punctuation (U+FF01-U+FF5E: "Batch\uff1a B-20417"); in a line with no CJK character the
# ASCII form is meant. The offset between the two ranges is fixed by Unicode.
_FULLWIDTH_TO_ASCII = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def fix_confusions(text: str) -> str:
    """`text` with look-alikes fixed word by word (see the module docstring), and fullwidth ASCII
    forms made ASCII where no CJK character is around."""
    if not _CJK.search(text):
        text = text.translate(_FULLWIDTH_TO_ASCII)
    return _WORD.sub(lambda m: _fix_word(m.group(0)), text)
