"""Where a model's reasoning ends and its answer begins.

Thinking checkpoints reason before they answer. Qwen3.5 and Qwen3-VL-*-Thinking open the reasoning
in the prompt (their chat templates end it with `<think>`), so the generated text is reasoning,
`</think>`, answer: the closer alone marks the split. R1-style fine-tunes (VLM-R1 and followers)
write both tags and wrap the answer: `<think>...</think><answer>...</answer>`. Reasoning routinely
mentions draft boxes, so geometry is read from the answer alone, whatever the dialect.

The rules, for every `thinking` mode:
- the text splits at the LAST `</think>`: before it is reasoning (a leading `<think>` dropped),
  after it the answer;
- an `<answer>` block, where one is written after the reasoning, is the answer (the last opener;
  a block the token budget cut off runs to the end of the text);
- without any `</think>`:
  - "auto" (infer from the text): an opened `<think>` is reasoning cut short (the budget ran out
    before the model answered): no answer. No tag at all: the whole text is the answer;
  - "on" (the prompt opened the reasoning): the whole text is reasoning cut short;
  - "off" (the model was asked not to think): the whole text is the answer; a `<think>` in it is a
    stray tag, taken out of the answer's text, and what follows it is read as answer;
  - in "auto" and "on", an `<answer>` block after where the reasoning began still ends it (the
    model answered without closing its reasoning).
Reasoning cut short has no answer, so no detections. A runtime that receives the reasoning apart
(a server's `reasoning_content`) passes it as `separated`: the text is then the answer as under
"off", and reasoning with a blank answer is reasoning cut short. Every step is one search over the
text: linear time whatever it holds. The searches run backwards (`rfind`), several times faster in
CPython than forward searches for these tags."""
from __future__ import annotations

from typing import NamedTuple

from vlground.core.options import THINKING_SETTINGS as THINKING  # the modes generation and parsing share
OPEN, CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"


class Split(NamedTuple):
    """A model's text split: `answer` is what geometry is read from, `reasoning` the reasoning's
    text (None when there was none, or only white space), `cut_short` True when the reasoning never
    ended, so the model gave no answer (`answer` is then empty)."""

    answer: str
    reasoning: str | None = None
    cut_short: bool = False


def check_thinking(thinking: str) -> str:
    """`thinking` if it is one of THINKING; ValueError otherwise."""
    if thinking not in THINKING:
        raise ValueError(f"thinking must be one of {', '.join(THINKING)}; got {thinking!r}")
    return thinking


def split(text: str, thinking: str = "auto", separated: str | None = None) -> Split:
    """`text` as reasoning and answer under the rules of this module, for the `thinking` mode the
    answer was generated with ("auto" when not known); `separated` is reasoning the runtime already
    took out of `text`."""
    check_thinking(thinking)
    if separated is None and thinking != "on" and "<" not in text:  # no tag at all: the common answer, at memchr speed
        return Split(text)
    if separated is not None:
        parts = split(text, "off")
        reasoning = "\n".join(r for r in (_reasoning(separated), parts.reasoning) if r) or None
        if reasoning and not parts.answer.strip():
            return Split("", reasoning, cut_short=True)
        return Split(parts.answer, reasoning)
    close = text.rfind(CLOSE)
    if close >= 0:
        return Split(_answer(text, close + len(CLOSE)), _reasoning(text[:close]))
    if thinking == "off":
        return Split(_answer(text.replace(OPEN, "") if OPEN in text else text, 0))
    opened = text.rfind(OPEN)  # the last: where the reasoning that was never closed began
    if opened < 0 and thinking == "auto":
        return Split(_answer(text, 0))
    began = 0 if opened < 0 else opened + len(OPEN)
    answer_at = text.rfind(ANSWER_OPEN, began)
    if answer_at >= 0:
        return Split(_answer(text, answer_at), _reasoning(text[:answer_at]))
    return Split("", _reasoning(text), cut_short=True)


def _answer(text: str, start: int) -> str:
    """The answer in `text[start:]`: the content of its last `<answer>` block where there is one
    (to its `</answer>`, or to the end when cut off), else all of it."""
    at = text.rfind(ANSWER_OPEN, start)
    if at < 0:
        return text[start:]
    at += len(ANSWER_OPEN)
    end = text.find(ANSWER_CLOSE, at)
    return text[at:] if end < 0 else text[at:end]


def _reasoning(text: str) -> str | None:
    """The reasoning's text without the tag that opened it; None when it holds nothing."""
    text = text.replace(OPEN, "", 1).strip()
    return text or None
