"""What every runtime shares: the request and answer types, and ONE batching mechanism.

A backend implements `_generate_batch` for one batch (a local model runs it as one forward pass, a
server sends its requests concurrently); `Backend.generate`, which no backend overrides, resolves
each request's token budget once, forms the batches (similar prompt lengths together, so padding
stays small; by count, or by a token budget), splits a batch in two on out-of-memory until it fits,
and returns answers in the order of the requests. A local backend may also prepare the next batch
in the background (`_prepare`) and keep rows in flight with refill (`_row_engine`; see
`vlground.models.scheduling`). With `errors="record"` a failed request becomes a `Generation` with `error` set and
the others go on; with "raise" (the default) the first failure is raised."""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from vlground.core.families import Family
from vlground.core.geometry import model_input_size
from vlground.core.options import GenerationOptions, LoadOptions
from vlground.models.scheduling import generate_refill, plan_batches, prefetched
from vlground.prompts import Prompt

log = logging.getLogger("vlground")

# Tokens that end a chat answer (or pad it after the end) in the Qwen2-VL generations; grounding tokens
# are not among them.
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
ERROR_HANDLING = ("raise", "record")


@dataclass(frozen=True)
class Request:
    """One image (RGB, EXIF orientation already applied) and the prompt to run on it."""

    image: Image.Image
    prompt: Prompt


@dataclass(frozen=True)
class Generation:
    """The model's answer. `text` keeps grounding tokens (<ref>, <|box_start|>, ...) and drops only
    control tokens (padding, end of turn). `input_size` is the (width, height) the model actually saw,
    from the processor's output, never an assumption; None where the model squashes to a fixed size.
    `thinking`: the prompt opened a reasoning block, so `text` is reasoning, `</think>`, answer.
    `reasoning`: the reasoning a server returned apart (`reasoning_content`); `text` is then the answer.
    `error` is the exception that kept this request from an answer (then `text` is empty)."""

    text: str
    input_size: tuple[int, int] | None = None
    thinking: bool = False
    reasoning: str | None = None
    error: BaseException | None = field(default=None, compare=False)


def is_out_of_memory(error: BaseException) -> bool:
    """True for the errors torch raises when an accelerator or the host runs out of memory."""
    if isinstance(error, MemoryError):
        return True
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


class Backend(ABC):
    """A loaded model of one family, able to answer batches of requests. `runtime` names the entry
    of `vlground.models.RUNTIMES` it implements; `load(source, family, options)` builds one."""

    family: Family
    runtime: ClassVar[str] = ""
    # the default answer length when neither the options nor the task say less (a tiny trial checkpoint's)
    answer_budget: int | None = None

    @classmethod
    def load(cls, source: str | Path, family: Family, options: LoadOptions) -> Backend:
        """The backend for checkpoint folder (or server URL) `source` of `family`."""
        raise NotImplementedError(f"{cls.__name__} cannot be loaded by name; build it directly")

    @abstractmethod
    def _generate_batch(self, requests: Sequence[Request], budgets: Sequence[int],
                        options: GenerationOptions, prepared: Any = None) -> list[Generation]:
        """Answers for one batch, in order; request i may write at most `budgets[i]` new tokens.
        `prepared` is `_prepare(requests)` when it was made ahead (else None). May raise
        out-of-memory (the caller splits and retries), or return a Generation with `error` for a
        request that failed on its own."""

    def input_size(self, image_size: tuple[int, int]) -> tuple[int, int] | None:
        """(width, height) the model will see for an image of `image_size`, before it runs (a prompt
        that tells the model its screen size needs it); None where it squashes to a fixed size."""
        if self.family.patch_size is None:
            return None
        return model_input_size(self.family, image_size)

    def _costs(self, requests: Sequence[Request], options: GenerationOptions) -> list[int] | None:
        """Prompt tokens of each request (what a token budget counts), or None where the backend
        cannot count them (a server): batches then go by image area and the budget does not apply."""
        return None

    def _prepare(self, requests: Sequence[Request], options: GenerationOptions) -> Any:
        """The model inputs of a batch, made ahead in a background thread with `prefetch`; None when
        the backend has nothing to prepare."""
        return None

    def _row_engine(self, requests: Sequence[Request], budgets: Sequence[int], options: GenerationOptions):
        """A `scheduling.RowEngine` over these requests for refill, or None where the runtime has none."""
        return None

    def thinking_budget(self, options: GenerationOptions) -> int:
        """Reasoning tokens a request may write before `</think>` is forced: the options', else the
        default, no more than a tiny trial checkpoint's `answer_budget`."""
        if options.max_thinking_tokens is not None:
            return options.max_thinking_tokens
        return min(options.thinking_budget, self.answer_budget or options.thinking_budget)

    def _notice(self, message: str) -> None:
        """`message` as a warning, once per backend (a job calls `generate` once per chunk)."""
        told = self.__dict__.setdefault("_told", set())
        if message not in told:
            told.add(message)
            log.warning(message)

    def _free_memory(self) -> None:
        """Release cached accelerator memory after an out-of-memory error."""
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generate(
        self,
        requests: Sequence[Request],
        options: GenerationOptions | None = None,
        progress: Callable[[int], None] | None = None,
        *,
        errors: str = "raise",
    ) -> list[Generation]:
        """Answers for all requests, in their order. `progress(n)` is called as n more are done.
        `errors`: "raise" the first failure, or "record" it in that request's Generation and go on
        (a batch that fails as a whole is retried one request at a time, so one bad input does not
        cost its neighbours their answers)."""
        if errors not in ERROR_HANDLING:
            raise ValueError(f"errors must be one of {', '.join(ERROR_HANDLING)}, got {errors!r}")
        options = options or GenerationOptions()
        budgets = [options.budget(min(r.prompt.max_new_tokens, self.answer_budget or r.prompt.max_new_tokens)) for r in requests]
        answers: list[Generation | None] = [None] * len(requests)
        costs = self._costs(requests, options)
        token_budget = options.token_budget if costs is not None else None
        if costs is None:
            costs = [r.image.width * r.image.height for r in requests]
            if options.scheduling:
                self._notice(f"{', '.join(options.scheduling)}: {self.runtime or 'this'} runtime schedules its own "
                             "batches; ignored")
        if options.refill and requests:
            self._generate_refilled(requests, budgets, costs, options, answers, progress, errors)
        todo = [i for i, answer in enumerate(answers) if answer is None]
        batches = [[todo[j] for j in batch] for batch in plan_batches([costs[i] for i in todo], options.batch_size,
                                                                    token_budget)]
        prepare = (lambda batch: self._prepare([requests[i] for i in batch], options)) if options.prefetch else (lambda batch: None)
        inputs = prefetched(prepare, batches, options.prefetch)
        try:
            for batch, prepared in zip(batches, inputs):
                if options.do_sample and options.seed is not None:
                    _seed(options.seed)  # each batch samples from the same seed: reruns give the same answers
                done = self._generate_recording(requests, budgets, batch, options, prepared) if errors == "record" else \
                    self._generate_splitting(requests, budgets, batch, options, prepared)
                for index, answer in zip(batch, done):
                    if answer.error is not None and errors == "raise":
                        raise answer.error
                    answers[index] = answer
                if progress:
                    progress(len(batch))
        finally:
            inputs.close()
        return answers  # type: ignore[return-value]

    def _generate_refilled(self, requests, budgets, costs, options, answers: list, progress, errors: str) -> None:
        """Fill `answers` by refill where the runtime has a row engine. A failure (out of memory
        included) leaves the requests not yet answered to plain batches, which split on
        out-of-memory and record per request; with errors="raise" any other failure is raised."""
        engine = self._row_engine(requests, budgets, options)
        if engine is None:
            return
        if options.do_sample and options.seed is not None:
            _seed(options.seed)

        def done(index: int, ids: list[int]) -> None:
            answers[index] = engine.answer(index, ids)
            if progress:
                progress(1)

        try:
            # similar prompt lengths in a row, so requests that join together carry little padding
            order = sorted(range(len(requests)), key=lambda i: costs[i])
            generate_refill(engine, order, costs, engine.limits, options, engine.stats, done)
        except Exception as error:  # noqa: BLE001 -- raised, or the requests left get a second way
            if errors == "raise" and not is_out_of_memory(error):
                raise
            left = sum(answer is None for answer in answers)
            log.warning("refill stopped (%s); the %d requests left run in plain batches", error, left)
            self._free_memory()

    def _generate_recording(self, requests, budgets, batch: list[int], options, prepared=None) -> list[Generation]:
        try:
            return self._generate_splitting(requests, budgets, batch, options, prepared)
        except Exception as error:  # noqa: BLE001 -- recorded, never swallowed
            if len(batch) == 1:
                log.warning("request failed: %s", error)
                return [Generation(text="", error=error)]
        log.warning("a batch of %d failed; retrying its requests one at a time", len(batch))
        return [self._generate_recording(requests, budgets, [i], options)[0] for i in batch]

    def _generate_splitting(self, requests, budgets, batch: list[int], options, prepared=None) -> list[Generation]:
        try:
            chosen, limits = [requests[i] for i in batch], [budgets[i] for i in batch]
            if prepared is None:
                return self._generate_batch(chosen, limits, options)
            return self._generate_batch(chosen, limits, options, prepared=prepared)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            failure = error
        # handled outside the except block, and the error dropped before retrying, so the failed
        # batch's tensors (held by its traceback) are freed first
        if len(batch) == 1:
            self._free_memory()
            raise MemoryError("out of memory on a single image; lower --max-pixels or use a smaller model or dtype") from failure
        failure = None
        self._free_memory()
        half = len(batch) // 2
        log.warning("out of memory on a batch of %d; retrying as %d + %d", len(batch), half, len(batch) - half)
        return self._generate_splitting(requests, budgets, batch[:half], options) + self._generate_splitting(
            requests, budgets, batch[half:], options
        )


def to_device(tensor, device):
    """`tensor` on `device`; to CUDA through pinned host memory without blocking, so a batch prepared
    in the background is copied while the GPU still works on the one before."""
    if not str(device).startswith("cuda"):
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def resolve_device_dtype(device: str = "auto", dtype: str = "auto"):
    """("cuda" when available else "cpu", bfloat16 on an accelerator else float32) for "auto";
    explicit values pass through as a torch device string and torch dtype. A device not present
    here raises DeviceUnavailableError (a ValueError) naming the ones that are."""
    import torch

    from vlground.core.device import check_device

    check_device(device)  # a device that is not here is refused before any weight is read
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}
    if dtype == "auto":
        resolved = torch.float32 if device == "cpu" else torch.bfloat16
    elif dtype in names:
        resolved = names[dtype]
    else:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, bf16, fp16 or fp32")
    return device, resolved
