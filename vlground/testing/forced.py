"""Forced answers for tiny random checkpoints: the model writes a chosen text, token by token, through
the real load -> prompt -> generate -> decode -> parse path, so a test can check actual pixel boxes.

Random weights answer noise that rarely holds a box, so end-to-end tests could only check types. Here
the model still runs every forward pass (vision tower, prefill, KV cache, batching, left padding);
only the scores it picks the next token from are replaced by ones that choose the next token of the
answer chosen for that row's prompt, then the end of turn. Rows of one batch get their own answers,
so a permuted or mis-cut batch shows. In-process only (a subprocess or a server is not patched).

Answers that reason (`REASONING_ANSWERS`: reasoning with draft boxes, `</think>`, the final answer)
behave as a thinking model does under a thinking budget: when the backend forces `</think>` on a
row, the row's forced text jumps to what follows its own closer, so the answer still comes."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from unittest import mock

import torch

Answers = dict[str, str] | Callable[[str], str]


def answer_for(answers: Answers, prompt_text: str) -> str:
    """The answer chosen for a prompt: `answers(prompt_text)`, or the value of the first key of the
    dict that occurs in the prompt text. No match is an error naming the prompt (a test must not
    quietly run on noise)."""
    if callable(answers):
        return answers(prompt_text)
    for key, answer in answers.items():
        if key in prompt_text:
            return answer
    raise KeyError(f"no forced answer for the prompt {prompt_text[-200:]!r}; keys: {list(answers)}")


def with_reasoning(answer: str, draft: str, *, words: int = 0) -> str:
    """What a thinking checkpoint writes before `answer`: reasoning that proposes `draft` (say, a box in
    the wrong place), `words` more words of musing, `</think>`, then the answer. There is no opening
    <think>: the chat template wrote it at the end of the prompt."""
    musing = " hmm" * words
    return f"The user wants a box. A first guess: {draft}{musing}. No, that is the wrong object; checking again.\n</think>\n\n{answer}"


@contextmanager
def forced_answers(backend, answers: Answers) -> Iterator[None]:
    """While active, `backend` (an HFBackend or a QwenVLBackend on CPU) answers each prompt with
    `answer_for(answers, prompt)`; `answers` maps a piece of the prompt text (e.g. the phrase) to the
    answer, or is a function of the prompt text."""
    runtime = getattr(backend, "runtime", "")
    if runtime == "transformers":
        patch = _force_transformers(backend, answers)
    elif runtime == "qwen-vl-native":
        patch = _force_native(backend, answers)
    else:
        raise TypeError(f"forced answers work on local tiny models (transformers, qwen-vl-native), not {type(backend).__name__}")
    with patch:
        yield


@contextmanager
def forced_loading(answers: Answers) -> Iterator[None]:
    """While active, every model loaded through `vlground.load_model` (the CLI's included, in this
    process) answers with forced answers."""
    import vlground.tasks as tasks

    original = tasks.load_backend
    entered = []

    def load_backend(*args, **kwargs):
        backend = original(*args, **kwargs)
        patch = forced_answers(backend, answers)
        patch.__enter__()
        entered.append(patch)
        return backend

    tasks.load_backend = load_backend
    try:
        yield
    finally:
        tasks.load_backend = original
        for patch in reversed(entered):
            patch.__exit__(None, None, None)


class _Forcing:
    """A transformers logits processor: row r gets the next token of its target. After a `closer`
    token the row did not get from its target (the backend forced it), the row goes on from what
    follows its target's own closer."""

    def __init__(self, targets: list[list[int]], prompt_length: int, closer: int | None = None):
        self.targets, self.prompt_length, self.closer = targets, prompt_length, closer
        self.cursors = [0] * len(targets)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > self.prompt_length:
            last = input_ids[:, -1].tolist()
            for row, (target, token) in enumerate(zip(self.targets, last)):
                given = target[min(self.cursors[row], len(target) - 1)]
                if token == self.closer and given != self.closer and self.closer in target:
                    self.cursors[row] = len(target) - target[::-1].index(self.closer)
                else:
                    self.cursors[row] += 1
        return _one_hot_scores(scores, [t[min(c, len(t) - 1)] for t, c in zip(self.targets, self.cursors)])


def _one_hot_scores(scores: torch.Tensor, tokens: list[int]) -> torch.Tensor:
    forced = torch.full_like(scores, float("-inf"))
    forced[torch.arange(len(tokens)), torch.tensor(tokens)] = 0.0
    return forced


@contextmanager
def _force_transformers(backend, answers: Answers) -> Iterator[None]:
    from transformers import LogitsProcessorList

    model, tokenizer = backend.model, backend.tokenizer
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    closer = tokenizer.encode("</think>", add_special_tokens=False)
    original = model.generate

    def generate(*args, **kwargs):
        input_ids = kwargs["input_ids"]
        prompts = tokenizer.batch_decode(input_ids, skip_special_tokens=False)
        targets = [tokenizer.encode(answer_for(answers, p), add_special_tokens=False) + [end] for p in prompts]
        forcing = _Forcing(targets, input_ids.shape[1], closer[0] if len(closer) == 1 else None)
        # first, so the backend's own processors (the thinking budget) still have the last word
        kwargs["logits_processor"] = LogitsProcessorList([forcing, *kwargs.get("logits_processor", [])])
        return original(*args, **kwargs)

    with mock.patch.object(model, "generate", generate):  # restores what was there, a test's own patch included
        yield


@contextmanager
def _force_native(backend, answers: Answers) -> Iterator[None]:
    model, tokenizer = backend.model, backend.tokenizer
    state: dict = {}
    decode, logits = backend._decode, model.logits

    def forced_decode(prompts, *args, **kwargs):
        texts = [tokenizer.decode(p.ids) for p in prompts]
        state["targets"] = [tokenizer.encode(answer_for(answers, t)) + [tokenizer.eod_id] for t in texts]
        state["step"] = 0
        return decode(prompts, *args, **kwargs)

    def forced_logits(hidden):
        scores = logits(hidden)  # the real head still runs
        step, state["step"] = state["step"], state["step"] + 1
        return _one_hot_scores(scores, [t[min(step, len(t) - 1)] for t in state["targets"]])

    with mock.patch.object(backend, "_decode", forced_decode), mock.patch.object(model, "logits", forced_logits):
        yield


class ForcedWorker:
    """A job worker (`vlground.jobs.loop.Worker`) whose model answers with forced answers wherever
    the worker runs: in this process, a worker process or a Ray actor, where a patch made in the
    test's process does not reach. `answers` must pickle (a dict, or a function importable there)."""

    def __init__(self, worker, answers: Answers) -> None:
        self.worker, self.answers = worker, answers
        self._forcing = None

    def setup(self) -> None:
        self._forcing = forced_loading(self.answers)
        self._forcing.__enter__()  # for the life of the process the worker runs in
        self.worker.setup()

    def __call__(self, items: list) -> list:
        return self.worker(items)

    def failed(self, item, reason: str):
        return self.worker.failed(item, reason)

    def __getattr__(self, name: str):  # the job's own attributes (`job`, `name`, ...)
        if name.startswith("_") or name == "worker":
            raise AttributeError(name)
        return getattr(self.worker, name)

    def __getstate__(self) -> dict:
        return {"worker": self.worker, "answers": self.answers, "_forcing": None}
