"""Prompt builders: the words each family was trained or evaluated with, for each task.

The templates live in the family registry; this module fills them and says how the answer is to be
read back (`response_prefix`: what the prompt already wrote of the answer, prepended before parsing)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vlground.core.families import Family, get_family

TASKS = ("ground", "detect", "caption", "grounded_caption", "read_text", "spot_text", "ask")
IMAGE_SLOT = "<img></img>"


@dataclass(frozen=True)
class Prompt:
    """What to send with one image.

    chat=True: `text` is the user turn; the backend adds the image and the chat template.
    chat=False: `text` is the whole model input, a prefix completion with IMAGE_SLOT where the image goes."""

    text: str
    task: str
    chat: bool = True
    response_prefix: str = ""
    max_new_tokens: int = 512


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
    needs = {"ground": ("phrase", phrase), "detect": ("categories", categories), "ask": ("question", question)}
    if task in needs and not needs[task][1]:
        raise ValueError(f"task {task!r} needs {needs[task][0]}")
    values = {
        "phrase": (phrase or "").strip(),
        "categories": ", ".join(c.strip() for c in categories or ()),
        "question": (question or "").strip(),
    }
    text = fam.prompts[task].format(**values)
    prefix = ""
    if not fam.chat:
        # A base model continues the text: what follows the image slot is the start of its answer.
        prefix = text.split(IMAGE_SLOT, 1)[1] if text.startswith(IMAGE_SLOT) and text.endswith("<box>") else ""
    return Prompt(
        text=text,
        task=task,
        chat=fam.chat,
        response_prefix=prefix,
        max_new_tokens=max_new_tokens or fam.max_new_tokens.get(task, 512),
    )
