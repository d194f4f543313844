"""Document answers: QwenVL HTML (`data-bbox="x1 y1 x2 y2"` on elements) and Qwen3-VL markdown
(`<!-- Image (x1, y1, x2, y2) -->`), plus the plain "x1,y1,x2,y2 label" line form.

All three are read in one forward pass. HTML is scanned by hand rather than with `html.parser`,
whose handling of unclosed tags and comments is quadratic on Python < 3.13. A construct left open
at the end (a tag, comment or declaration without its `>`) ends the markup: the rest is text."""
from __future__ import annotations

import html
import re

from vlground.grammar.items import NUMBER, Extraction, clean_label, safe_attributes

# Inside one comment: "Image (x1, y1, x2, y2)". The label takes its trailing spaces itself (no
# `\s*` after it to fight over them), so a failed match costs one pass over the comment.
_MD_BODY = re.compile(
    rf"\s*(?P<label>[A-Za-z][\w ]*)\(\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*\)\s*"
)
_H = r"[^\S\n]"  # white space that does not end the line
# One line "x1,y1,x2,y2 label", optionally "- [x1, y1, x2, y2]: label". Every run of spaces is read
# by exactly one quantifier (the optional marks begin with their non-space character).
_PLAIN_LINE = re.compile(
    rf"^{_H}*(?:[-*]{_H}*)?(?:\[{_H}*)?({NUMBER}){_H}*,{_H}*({NUMBER}){_H}*,{_H}*({NUMBER}){_H}*,{_H}*({NUMBER})"
    rf"{_H}*(?:\]{_H}*)?(?:[:\-]{_H}*)?(?P<label>[^\n]*)$",
    re.M,
)
_BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")
# The end of a tag: unquoted runs and quoted values alternate, each beginning where the other cannot.
_TAG_REST = re.compile(r"""[^"'>]*(?:(?:"[^"]*"|'[^']*')[^"'>]*)*>""")
_TAG_NAME = re.compile(r"[A-Za-z][^\s/<>]*")
_ATTRIBUTE = re.compile(r"""([^\s"'=/>]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+))?""")
_VOID = {"br", "img", "hr", "meta", "input", "link", "area", "base", "col", "source", "wbr"}
MAX_OPEN = 64  # elements open at once; a start tag past this closes the innermost (documented cap)


class _Document:
    """The state of one pass over an HTML answer: boxed elements found, text read, elements open."""

    def __init__(self) -> None:
        self.found = Extraction()
        self.text: list[str] = []
        self.open: list[tuple[str, int | None, int]] = []  # (tag, index of its item or None, text chunks before it)
        self.open_tags: dict[str, int] = {}  # how many of each tag are open

    def start(self, tag: str, attrs: str) -> None:
        values = {m.group(1).lower(): _unquote(m.group(2)) for m in _ATTRIBUTE.finditer(attrs)}
        index = None
        numbers = re.findall(NUMBER, values.get("data-bbox") or "")
        if len(numbers) == 4:
            label = clean_label(values.get("class") or tag)
            index = self.found.add(label, tuple(float(n) for n in numbers), None, safe_attributes(values, skip=("data-bbox", "class")))
        if tag in _VOID:
            return
        if len(self.open) >= MAX_OPEN:
            self.close_innermost()
        self.open.append((tag, index, len(self.text)))
        self.open_tags[tag] = self.open_tags.get(tag, 0) + 1

    def end(self, tag: str) -> None:
        """Close `tag` and every element opened inside it; an end tag nothing opened is ignored."""
        if self.open_tags.get(tag):
            while self.close_innermost() != tag:
                pass

    def close_innermost(self) -> str:
        tag, index, start = self.open.pop()
        self.open_tags[tag] -= 1
        inside = " ".join("".join(self.text[start:]).split()) if index is not None else ""
        if inside:
            self.found.texts[index] = inside
        return tag

    def data(self, chunk: str) -> None:
        if chunk:
            self.text.append(html.unescape(chunk) if "&" in chunk else chunk)


def extract_html(text: str) -> Extraction:
    doc = _Document()
    i, n = 0, len(text)
    while i < n:
        lt = text.find("<", i)
        if lt < 0:
            break
        doc.data(text[i:lt])
        i = _markup(text, lt, doc)
        if i < 0:  # left open at the end of the answer: the rest is text
            i = lt
            break
    doc.data(text[i:])
    while doc.open:  # elements never closed (answer cut off)
        doc.close_innermost()
    doc.found.text = _BLANK_LINES.sub("\n", "".join(doc.text)).strip()
    return doc.found


def _markup(text: str, lt: int, doc: _Document) -> int:
    """Read the markup at `text[lt] == "<"` into `doc`; where reading goes on, or -1 when the
    construct is never closed. A "<" that starts no markup is text."""
    after = text[lt + 1 : lt + 2]
    if text.startswith("<!--", lt):
        close = text.find("-->", lt + 4)
        return -1 if close < 0 else close + 3
    if after in ("!", "?"):  # declarations and processing instructions
        close = text.find(">", lt + 2)
        return -1 if close < 0 else close + 1
    closing = after == "/"
    name = _TAG_NAME.match(text, lt + 1 + closing)
    if name is None:
        doc.data("<")
        return lt + 1
    rest = _TAG_REST.match(text, name.end())
    if rest is None:
        return -1
    tag = name.group().lower()
    if closing:
        doc.end(tag)
    else:
        doc.start(tag, text[name.end() : rest.end() - 1])
    return rest.end()


def _unquote(value: str | None) -> str | None:
    if value is not None and value[:1] in ("'", '"'):
        value = value[1:-1]
    return html.unescape(value) if value is not None and "&" in value else value


def extract_markdown(text: str) -> Extraction:
    """Every `<!-- Image (x1, y1, x2, y2) -->` comment, each read on its own; other comments stay."""
    found = Extraction()
    kept: list[str] = []
    last = 0
    start = text.find("<!--")
    while start >= 0:
        close = text.find("-->", start + 4)
        if close < 0:
            break
        start = text.rfind("<!--", start, close)  # of "<!-- a <!-- Image (...) -->", the inner one
        m = _MD_BODY.fullmatch(text, start + 4, close)
        if m is not None:
            found.add(clean_label(m.group("label").lower()), tuple(float(m.group(i)) for i in range(2, 6)))
            kept.append(text[last:start])
            last = close + 3
        start = text.find("<!--", close + 3)
    kept.append(text[last:])
    found.text = "".join(kept).strip()
    return found


def extract_plain(text: str) -> Extraction:
    found = Extraction()
    for m in _PLAIN_LINE.finditer(text):
        found.add(clean_label(m.group("label")), tuple(float(m.group(i)) for i in range(1, 5)))
    found.text = _PLAIN_LINE.sub(lambda m: m.group("label").strip(), text).strip() if found.coords else text.strip()
    return found
