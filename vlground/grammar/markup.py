"""Document answers: QwenVL HTML (`data-bbox="x1 y1 x2 y2"` on elements) and Qwen3-VL markdown
(`<!-- Image (x1, y1, x2, y2) -->`), plus the plain "x1,y1,x2,y2 label" line form."""
from __future__ import annotations

import re
from html.parser import HTMLParser

from vlground.grammar.items import NUMBER, Extraction, RawItem, clean_label

_MD_IMAGE = re.compile(
    rf"<!--\s*(?P<label>[A-Za-z][\w ]*?)\s*\(\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*\)\s*-->"
)
_PLAIN_LINE = re.compile(
    rf"^\s*[-*]?\s*\[?\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*,\s*({NUMBER})\s*\]?\s*[:\-]?\s*(?P<label>.*?)\s*$", re.M
)
_VOID = {"br", "img", "hr", "meta", "input", "link", "area", "base", "col", "source", "wbr"}


class _BoxedElements(HTMLParser):
    """Collects each element carrying data-bbox with the text inside it (nested ones included)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[RawItem] = []
        self.text: list[str] = []
        self._open: list[tuple[str, RawItem | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        item = None
        numbers = re.findall(NUMBER, values.get("data-bbox") or "")
        if len(numbers) == 4:
            label = values.get("class") or tag
            attributes = {k: v for k, v in values.items() if k not in ("data-bbox", "class")}
            item = RawItem(label=clean_label(label), coords=tuple(float(n) for n in numbers), attributes=attributes)
            self.items.append(item)
        if tag not in _VOID:
            self._open.append((tag, item, len(self.text)))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, item, start = self._open.pop()
            if item is not None:
                item.text = " ".join("".join(self.text[start:]).split()) or None
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def extract_html(text: str) -> Extraction:
    parser = _BoxedElements()
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # a broken document still yields what was read before the break
        pass
    for tag, item, start in parser._open:  # elements never closed (answer cut off)
        if item is not None and item.text is None:
            item.text = " ".join("".join(parser.text[start:]).split()) or None
    return Extraction(items=parser.items, text=re.sub(r"\n\s*\n+", "\n", "".join(parser.text)).strip())


def extract_markdown(text: str) -> Extraction:
    items = [
        RawItem(label=clean_label(m.group("label").lower()), coords=tuple(float(m.group(i)) for i in range(2, 6)))
        for m in _MD_IMAGE.finditer(text)
    ]
    return Extraction(items=items, text=_MD_IMAGE.sub("", text).strip())


def extract_plain(text: str) -> Extraction:
    items = [
        RawItem(label=clean_label(m.group("label")), coords=tuple(float(m.group(i)) for i in range(1, 5)))
        for m in _PLAIN_LINE.finditer(text)
    ]
    return Extraction(items=items, text=_PLAIN_LINE.sub(lambda m: m.group("label"), text).strip())
