"""Prompt builders: the words each family was trained or evaluated with, for each task.

The templates live in the family registry; this module fills them and says how the answer is to be
read back (`response_prefix`: what the prompt already wrote of the answer, prepended before parsing).
The point task (where to click) has two styles: "plain", the family's own words (a family with no
point syntax is asked for the box, whose centre is the point), and "tool_call", the function-call
prompt of Qwen's computer-use cookbooks (gui_tools.json, one entry per generation with its source)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from vlground.core.families import Family, get_family

TASKS = ("ground", "detect", "caption", "grounded_caption", "read_text", "spot_text", "ask", "point")
POINT_STYLES = ("plain", "tool_call")
IMAGE_SLOT = "<img></img>"


@dataclass(frozen=True)
class Prompt:
    """What to send with one image.

    chat=True: `text` is the user turn; the backend adds the image and the chat template, with
    `system` as the system turn where one is set (a tool description).
    chat=False: `text` is the whole model input, a prefix completion with IMAGE_SLOT where the image goes.
    `scale` is the divisor the answer's 0-1000 coordinates are read with (999 where the prompt
    told the model the screen is 999 wide, as Qwen3-VL's mobile-agent cookbook does)."""

    text: str
    task: str
    chat: bool = True
    response_prefix: str = ""
    max_new_tokens: int = 512
    system: str | None = None
    scale: float = 1000


def build_prompt(
    task: str,
    family: str | Family,
    *,
    phrase: str | None = None,
    categories: Sequence[str] | str | None = None,
    question: str | None = None,
    max_new_tokens: int | None = None,
) -> Prompt:
    """The prompt for `task` in `family`'s words; `phrase` for ground, `categories` for detect,
    `question` for ask."""
    fam = get_family(family)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    if isinstance(categories, str):
        categories = [categories]
    needs = {"ground": ("phrase", phrase), "point": ("phrase", phrase), "detect": ("categories", categories),
             "ask": ("question", question)}
    if task in needs and not needs[task][1]:
        raise ValueError(f"task {task!r} needs {needs[task][0]}")
    values = {
        "phrase": (phrase or "").strip(),
        "categories": ", ".join(c.strip() for c in categories or ()),
        "question": (question or "").strip(),
    }
    # a family with no point syntax is asked for the box: its centre is the point
    template_task = task if task in fam.prompts else "ground"
    text = fam.prompts[template_task].format(**values)
    prefix = ""
    if not fam.chat:
        # A base model continues the text: what follows the image slot is the start of its answer.
        prefix = text.split(IMAGE_SLOT, 1)[1] if text.startswith(IMAGE_SLOT) and text.endswith("<box>") else ""
    return Prompt(
        text=text,
        task=task,
        chat=fam.chat,
        response_prefix=prefix,
        max_new_tokens=max_new_tokens or fam.max_new_tokens.get(template_task, 512),
    )


def point_prompt(family: str | Family, target: str, *, style: str = "plain", input_size: tuple[int, int] | None = None,
                 tool: str = "computer_use", max_new_tokens: int | None = None) -> Prompt:
    """The prompt asking `family` where `target` (an element, or an instruction such as "open the
    settings") is. style "plain": the family's point prompt (`build_prompt("point", ...)`).
    style "tool_call": `target` is the user turn and the cookbook's `tool` ("computer_use", the
    desktop tool Qwen's ScreenSpot numbers were measured with, or "mobile_use") is described in the
    system turn, with the screen size the cookbook writes there: for Qwen2.5-VL the model input's
    `input_size` (width, height; what smart_resize makes of the screenshot), for Qwen3-VL and
    later the size its cookbook writes: 1000x1000 for computer_use, 999x999 for mobile_use (answers
    then read with that scale)."""
    if style not in POINT_STYLES:
        raise ValueError(f"unknown point style {style!r}; styles: {', '.join(POINT_STYLES)}")
    fam = get_family(family)
    if style == "plain":
        return build_prompt("point", fam, phrase=target, max_new_tokens=max_new_tokens)
    entry = gui_tool(fam, tool)
    if not (target or "").strip():
        raise ValueError("the point task needs a target: what to click")
    if entry["screen"] == "input":
        if input_size is None:
            raise ValueError(f"a {fam.name} tool-call prompt needs the model input size (width, height): the screen size it is told")
        width, height = input_size
    else:
        width = height = int(entry["screen"])
    function = json.loads(json.dumps(entry["functions"][tool]))
    function["description"] = function["description"].format(width=width, height=height)
    system = _FUNCTION_CALLS.format(system=entry["system"], tool=json.dumps({"type": "function", "function": function}, ensure_ascii=False))
    return Prompt(text=target.strip(), task="point", system=system, scale=entry["scale"],
                  max_new_tokens=max_new_tokens or fam.max_new_tokens.get("point", 512))


# How Qwen's function-calling format lists tools in the system turn (qwen_agent's NousFnCallPrompt, the
# Qwen2.5 chat template's tools block): the same words in both cookbooks.
_FUNCTION_CALLS = (
    "{system}\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tool}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
    '<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


@cache
def _gui_tools() -> dict:
    return json.loads((Path(__file__).parent / "gui_tools.json").read_text(encoding="utf-8"))


def tool_names() -> tuple[str, ...]:
    """The GUI tools any generation has (`point_prompt(..., tool=)`), for checks made before a model is known."""
    return tuple(sorted({t for e in _gui_tools().values() if isinstance(e, dict) for t in e["functions"]}))


def check_tool(style: str, tool: str) -> None:
    """ValueError for a tool no generation has, or one given with a style other than "tool_call"."""
    if tool not in tool_names():
        raise ValueError(f"unknown tool {tool!r}; tools: {', '.join(tool_names())}")
    if tool != "computer_use" and style != "tool_call":
        raise ValueError(f"the tool ({tool}) is for the tool_call style; the {style} style asks without one")


def gui_tool(family: str | Family, tool: str = "computer_use") -> dict:
    """The GUI tools entry of gui_tools.json for `family` (its functions) with the system turn, screen size and scale
    `tool`'s own cookbook writes (Qwen3-VL's computer-use cookbook tells 1000x1000, its mobile-agent cookbook 999x999);
    ValueError for an unknown tool, or a family whose checkpoints were not trained on function calls."""
    fam = get_family(family)
    for entry in _gui_tools().values():
        if isinstance(entry, dict) and fam.name in entry["families"]:
            if tool not in entry["functions"]:
                raise ValueError(f"unknown tool {tool!r}; tools: {', '.join(entry['functions'])}")
            return {**entry, **entry.get("per_tool", {}).get(tool, {})}
    users = sorted(f for e in _gui_tools().values() if isinstance(e, dict) for f in e["families"])
    raise ValueError(f"{fam.name} has no tool-call prompt (families with one: {', '.join(users)}); use style 'plain'")
