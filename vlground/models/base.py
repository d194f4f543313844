"""What every runtime shares: the request and answer types, and batching that survives memory limits.

A backend implements `_generate_batch` for one batch; `Backend.generate` forms the batches (similar
image sizes together, so padding stays small), splits a batch in two on out-of-memory until it fits,
and returns answers in the order of the requests."""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PIL import Image

from vlground.families import Family
from vlground.prompts import Prompt

log = logging.getLogger("vlground")

# Tokens that end a chat answer (or pad it after the end) in the Qwen2-VL generations; grounding tokens
# are not among them.
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


@dataclass(frozen=True)
class Request:
    """One image (RGB, EXIF orientation already applied) and the prompt to run on it."""

    image: Image.Image
    prompt: Prompt


@dataclass(frozen=True)
class Generation:
    """The model's answer. `text` keeps grounding tokens (<ref>, <|box_start|>, ...) and drops only
    control tokens (padding, end of turn). `input_size` is the (width, height) the model actually saw,
    from the processor's output, never an assumption; None where the model squashes to a fixed size."""

    text: str
    input_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class GenerationOptions:
    """Decoding settings shared by all backends. Greedy by default, so results are reproducible.
    `min_new_tokens` pins output length (benchmarks)."""

    max_new_tokens: int | None = None
    min_new_tokens: int = 0
    batch_size: int = 8
    do_sample: bool = False
    temperature: float = 1.0


def is_out_of_memory(error: BaseException) -> bool:
    """True for the errors torch raises when an accelerator or the host runs out of memory."""
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def plan_batches(requests: Sequence[Request], batch_size: int) -> list[list[int]]:
    """Indices of `requests` grouped into batches of at most `batch_size`, images of similar pixel
    count together (stable, so equal sizes keep their order)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = sorted(range(len(requests)), key=lambda i: requests[i].image.width * requests[i].image.height)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class Backend(ABC):
    """A loaded model of one family, able to answer batches of requests."""

    family: Family

    @abstractmethod
    def _generate_batch(self, requests: Sequence[Request], options: GenerationOptions) -> list[Generation]:
        """Answers for one batch, in order. May raise out-of-memory; the caller splits and retries."""

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
    ) -> list[Generation]:
        """Answers for all requests, in their order. `progress(n)` is called as n more are done."""
        options = options or GenerationOptions()
        answers: list[Generation | None] = [None] * len(requests)
        for batch in plan_batches(requests, options.batch_size):
            for index, answer in zip(batch, self._generate_splitting(requests, batch, options)):
                answers[index] = answer
            if progress:
                progress(len(batch))
        return answers  # type: ignore[return-value]

    def _generate_splitting(
        self, requests: Sequence[Request], batch: list[int], options: GenerationOptions
    ) -> list[Generation]:
        try:
            return self._generate_batch([requests[i] for i in batch], options)
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
        return self._generate_splitting(requests, batch[:half], options) + self._generate_splitting(
            requests, batch[half:], options
        )


def resolve_device_dtype(device: str = "auto", dtype: str = "auto"):
    """("cuda" when available else "cpu", bfloat16 on an accelerator else float32) for "auto";
    explicit values pass through as a torch device string and torch dtype."""
    import torch

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
