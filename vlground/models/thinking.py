"""Answers that reason first: whether a checkpoint thinks, and the thinking budget of local generation.

Qwen3.5's chat template ends the prompt with `<think>\\n` unless it is given enable_thinking=False (then
it writes the empty block `<think>\\n\\n</think>\\n\\n` itself); Qwen3-VL-*-Thinking's opens the block
whatever it is given. The generated text is then reasoning, `</think>`, answer. A local model's own
template is read to tell which of THINKING a checkpoint is; a server's checkpoint is told by its name.

The reasoning has its own budget (`GenerationOptions.max_thinking_tokens`): a row that has reasoned
that long without closing gets `</think>` forced, token by token, and goes on to answer; the answer
then has its own budget, counted from the closer. So a thinking model always answers, and long
reasoning never eats the answer's tokens."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vlground.core.families import THINKING

if TYPE_CHECKING:  # torch only when a batch reasons: `import vlground` and the server runtime need none
    import torch

CLOSER = "</think>"


def thinks(mode: str, setting: str, model: str) -> bool:
    """Whether a generation reasons first, for a checkpoint whose template behaves as `mode` (one of
    THINKING) and the user's `setting` ("auto", "on", "off"). "off" on a checkpoint that always
    thinks is an error: its template has no switch."""
    if mode not in THINKING:
        raise ValueError(f"thinking mode must be one of {', '.join(THINKING)}, got {mode!r}")
    if setting == "off" and mode == "always":
        raise ValueError(f"{model} always reasons before it answers (its chat template opens <think> whatever it is "
                         "told), so thinking cannot be turned off: use --thinking auto, or the Instruct checkpoint")
    if setting == "auto":
        return mode != "never"
    return setting == "on"


def template_kwargs(mode: str, setting: str, thinking: bool) -> dict[str, bool]:
    """The `chat_template_kwargs` a server's template is sent: `enable_thinking` wherever it can
    matter (a checkpoint that thinks, or a setting other than "auto"), nothing for the others, so
    their requests stay as they were."""
    return {"enable_thinking": thinking} if thinking or mode != "never" or setting != "auto" else {}


def template_thinking(processor) -> str:
    """How the loaded chat template treats reasoning (one of THINKING), from the generation prompts it
    writes with and without enable_thinking=False."""

    def opens(**switch) -> bool:
        message = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
        text = processor.apply_chat_template(message, add_generation_prompt=True, tokenize=False, **switch)
        return text.rstrip().endswith("<think>")

    if not opens():
        return "never"
    return "default" if not opens(enable_thinking=False) else "always"


class ThinkingBudget:
    """The thinking budget of one batch whose prompts are `prompt_length` tokens long (left padded)
    and open a reasoning block: `processor` (a transformers logits processor) forces the closer's
    tokens on rows that have written `budget` new tokens without closing; `stopper` (a stopping
    criterion) ends a row once it has written `answer_limits[row]` tokens after its closer. State
    is kept per row and updated from the tokens appended since the last call: O(batch) per step."""

    def __init__(self, closer: Sequence[int], budget: int, answer_limits: Sequence[int], prompt_length: int):
        import torch
        from transformers import LogitsProcessor, StoppingCriteria

        self.closer = torch.tensor(list(closer))
        self.budget = budget
        self.answer_limits = torch.tensor(list(answer_limits))
        self.prompt_length = prompt_length
        self.closed_at = torch.full((len(answer_limits),), -1)  # new-token count when the closer ended; -1: open
        self.seen = prompt_length + 1
        budget_state = self

        class Processor(LogitsProcessor):
            def __call__(self, input_ids, scores):
                return budget_state._force(input_ids, scores)

        class Stopper(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return budget_state._stop(input_ids)

        self.processor, self.stopper = Processor(), Stopper()

    @property
    def max_new_tokens(self) -> int:
        """What the batch may write at most: the reasoning, the closer and the longest answer."""
        return self.budget + len(self.closer) + int(self.answer_limits.max())

    def _update(self, input_ids: torch.Tensor) -> int:
        """Record closers completed by the tokens appended since the last call; the new-token count."""
        length, width = input_ids.shape[1], len(self.closer)
        first = max(self.seen, self.prompt_length + width)  # the first window end not checked yet
        if first <= length:
            tail = input_ids[:, first - width :].detach().to("cpu")  # only the new tokens cross to the host
            for end in range(width, tail.shape[1] + 1):
                done = (tail[:, end - width : end] == self.closer).all(dim=1) & (self.closed_at < 0)
                self.closed_at[done] = first - width + end - self.prompt_length
        self.seen = length + 1
        return length - self.prompt_length

    def _force(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = self._update(input_ids) - self.budget
        if not 0 <= step < len(self.closer):
            return scores
        rows = (self.closed_at < 0).nonzero().flatten().to(scores.device)
        if not len(rows):
            return scores
        scores = scores.clone()
        scores[rows] = float("-inf")
        scores[rows, int(self.closer[step])] = 0.0
        return scores

    def _stop(self, input_ids: torch.Tensor) -> torch.Tensor:
        written = self._update(input_ids)
        done = (self.closed_at >= 0) & (written - self.closed_at >= self.answer_limits)
        return done.to(input_ids.device)
