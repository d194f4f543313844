"""The answers of GUI agents: where to click, written as an action rather than as a grounded phrase.

- Qwen's function calls (the computer-use and mobile-agent cookbooks):
  `<tool_call>{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [x, y]}}</tool_call>`;
  the mobile tool writes `"name": "mobile_use"` and `"action": "click"`.
- UI-TARS-style actions of Qwen2-VL / Qwen2.5-VL fine-tunes: `click(start_box='(x,y)')`, the value
  also as `<|box_start|>(x,y)<|box_end|>`, `[x1, y1, x2, y2]` or `<point>x y</point>`, and the key
  also `point=` / `start_point=`; read after the last `Action:` where there is one, as UI-TARS's own
  parser does (the `Thought:` before it is reasoning).
- `<|box_start|>(x,y)<|box_end|>` on its own (Qwen2-VL's box tokens around one point).
- gelab-zero's tab-separated `action:CLICK\tpoint:x,y`, read after its `<THINK>...</THINK>` block.
- a bare `(x, y)` or `[x, y]` that is the whole answer.

Every coordinate stays in the model's frame (the family's: `vlground.core.geometry`); `parse` moves
it. An action with four numbers is a box (a click target's extent), kept as one. Each item's
attributes say which action it was. This extractor runs where the family's own dialect found
nothing, so answers of boxes cost nothing more. Every pattern reads a bounded stretch of text from
a literal marker, so the whole pass is linear in the answer's length."""
from __future__ import annotations

import json
import re

from vlground.grammar import json_items
from vlground.grammar.items import NUMBER, Extraction, find

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
GELAB_THINK_CLOSE = "</THINK>"  # gelab-zero's reasoning tag, upper case (the parser's reasoning split knows <think>)
UITARS_ACTION = "Action:"  # UI-TARS writes "Thought: ..." (its reasoning) then "Action: click(...)"; its parser reads after the last
_VALUE_LIMIT = 200  # characters of an action's quoted value read at most (no real value is longer)
# name(key='value'): the action's name and the value of its first coordinate argument
_ACTION = re.compile(rf"""([A-Za-z_]\w{{0,40}})\(\s*(?:start_box|start_point|point)\s*=\s*(['"])([^'"]{{0,{_VALUE_LIMIT}}})\2""")
_BOX_TOKENS = re.compile(rf"<\|box_start\|>\s*\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)\s*<\|box_end\|>")
_GELAB = re.compile(rf"(?<![\w.])point\s*:\s*({NUMBER})\s*,\s*({NUMBER})")
_GELAB_ACTION = re.compile(r"action\s*:\s*(\w{1,40})")
_ACTION_BEFORE = 400  # characters before a gelab point searched for its action
_BARE = re.compile(rf"[`'\"]*\s*[(\[]\s*({NUMBER})\s*,\s*({NUMBER})\s*[)\]]\s*[`'\"]*\.?")
_NUMBERS = re.compile(NUMBER)
# a call the token limit cut inside its JSON: its coordinate, where written out to the closing bracket,
# and the name and action strings written before it
_CUT_COORDINATE = re.compile(rf'"coordinate"\s*:\s*\[\s*({NUMBER})\s*,\s*({NUMBER})\s*(?:,\s*({NUMBER})\s*,\s*({NUMBER})\s*)?\]')
_CUT_STRING = re.compile(r'"(name|action)"\s*:\s*"(\w{1,40})"')


def extract(text: str) -> Extraction:
    """Items of a GUI answer in `text` (see the module docstring), in the order written; an empty
    Extraction (with the text) when it holds none of these shapes."""
    found = Extraction(text=text.strip())
    if TOOL_OPEN in text:
        _tool_calls(text, found)
    if not found and "=" in text:
        after = text.rfind(UITARS_ACTION)  # a click drafted in the Thought before it is not the action
        for m in _ACTION.finditer(text, after + len(UITARS_ACTION) if after >= 0 else 0):
            numbers = _NUMBERS.findall(m.group(3))
            if len(numbers) in (2, 4):
                found.add(None, tuple(numbers), attributes={"action": m.group(1)})
    if not found and "<|box_start|>" in text:
        for m in _BOX_TOKENS.finditer(text):
            found.add(None, m.groups())
    if not found and "point" in text:
        after = text.rfind(GELAB_THINK_CLOSE)  # gelab-zero reasons in <THINK>...</THINK>: read what follows
        for m in _GELAB.finditer(text, after + len(GELAB_THINK_CLOSE) if after >= 0 else 0):
            actions = _GELAB_ACTION.findall(text, max(0, m.start() - _ACTION_BEFORE), m.start())
            found.add(None, m.groups(), attributes={"action": actions[-1]} if actions else None)
    if not found:
        bare = _BARE.fullmatch(text.strip())
        if bare is not None:
            found.add(None, bare.groups())
    return found


def _tool_calls(text: str, found: Extraction) -> None:
    """Every `<tool_call>` body holding a coordinate; a body cut off (no closer) runs to the next
    opener or the end."""
    at = find(text, TOOL_OPEN)
    close = 0  # the next closer at or after the current opener; -1 once there is none left
    while at >= 0:
        start = at + len(TOOL_OPEN)
        if 0 <= close < start:  # searched again only once passed: each stretch of text is read once
            close = find(text, TOOL_CLOSE, start)
        following = find(text, TOOL_OPEN, start)
        end = min(e for e in (close, following, len(text)) if e >= 0)
        _add_call(text[start:end], found, cut=end != close)
        at = following


def _add_call(body: str, found: Extraction, cut: bool = False) -> None:
    """The coordinate of one function call's JSON body, if it has one. A call `cut` off (no closer)
    whose JSON never ends is read up to where it stops: its coordinate if written out whole."""
    objects, _ = json_items.objects(body.strip())
    if cut and not objects:
        _add_cut_call(body, found)
        return
    for call in objects:
        if type(call) is not dict:
            continue
        arguments = call.get("arguments")
        if type(arguments) is str:  # some servers write the arguments as a JSON string
            decoded, _ = json_items.objects(arguments)
            arguments = decoded[0] if decoded else None
        if type(arguments) is not dict:
            continue
        coords = arguments.get("coordinate")
        if type(coords) not in (list, tuple) or len(coords) not in (2, 4):
            continue
        attributes = {k: v for k, v in (("tool", call.get("name")), ("action", arguments.get("action"))) if type(v) is str}
        found.add(None, coords, attributes=attributes)


def _add_cut_call(body: str, found: Extraction) -> None:
    m = _CUT_COORDINATE.search(body)
    if m is None:
        return
    named = dict(_CUT_STRING.findall(body, 0, m.start()))
    attributes = {k: v for k, v in (("tool", named.get("name")), ("action", named.get("action"))) if v}
    found.add(None, tuple(v for v in m.groups() if v is not None), attributes=attributes)


def format_call(coords, tool: str = "computer_use", action: str = "left_click") -> str:
    """A function call clicking at `coords` (x, y in the model's frame, integers), laid out as Qwen's
    cookbooks show the models answering: the call's JSON on its own line between the tags."""
    call = {"name": tool, "arguments": {"action": action, "coordinate": [int(round(v)) for v in coords]}}
    return f"{TOOL_OPEN}\n{json.dumps(call, ensure_ascii=False)}\n{TOOL_CLOSE}"
