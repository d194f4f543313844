"""Options as objects: how to load a model (`LoadOptions`) and how to decode (`GenerationOptions`).

Each is one frozen dataclass that travels unchanged from the caller (task methods, CLI) down to the
backend, as whisper's `DecodingOptions` does, so no layer re-lists a dozen arguments. Values are
checked when the object is built, with a message naming the option; `with_overrides` is the one
place keyword forms (`model.ground(img, "cat", max_new_tokens=20)`) become an options object."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

THINKING_SETTINGS = ("auto", "on", "off")
DEFAULT_THINKING_TOKENS = 4096
DTYPES = ("auto", "bf16", "bfloat16", "fp16", "float16", "fp32", "float32")
# the names of vlground.models.RUNTIMES, which this layer cannot import (tests/test_tasks.py holds them equal)
RUNTIMES = ("transformers", "qwen-vl-native", "server")


class OptionsError(ValueError):
    """An option with a value no backend can use; the message names the option and what is allowed."""


@dataclass(frozen=True)
class GenerationOptions:
    """Decoding settings every backend honours. Greedy by default, so results are reproducible.

    `max_new_tokens`: None means each task's own budget (28 for Qwen-VL's RefCOCO prompt, else 512),
    resolved once per request in `Backend.generate`. `min_new_tokens` pins output length (benchmarks).
    `batch_size`: images per forward pass on a local model (halved on out-of-memory), requests in
    flight on a server. `temperature`, `top_p` and `top_k` apply only with `do_sample=True`;
    `seed` makes sampling repeatable (each batch of a local model starts from it; a server gets it
    in the request).

    `thinking`: "auto" (as the checkpoint does by default: Qwen3.5 and Thinking checkpoints reason
    first, the others do not), "on" or "off"; it reaches the chat template as `enable_thinking`.
    `max_thinking_tokens` bounds the reasoning (default DEFAULT_THINKING_TOKENS): when it is spent the
    reasoning is closed (`</think>`) and the model answers within its own `max_new_tokens`.

    Scheduling on a local model (see `vlground.models.scheduling`; greedy answers are the same with
    any of them): `token_budget` caps the prompt tokens (visual + text, padding included) of one
    prefill batch, so big images go fewer at a time and small ones more, `batch_size` staying the
    cap on rows; `refill` gives a row whose answer ended the next request at once instead of idling
    until the batch's longest answer ends; `prefetch` prepares the next requests' inputs (decode,
    resize, tensors) in a background thread while the model runs; `static_cache` decodes with a
    preallocated KV cache, captured as a CUDA graph on a GPU (transformers runtime; the native
    Qwen-VL always has one)."""

    max_new_tokens: int | None = None
    min_new_tokens: int = 0
    batch_size: int = 8
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    thinking: str = "auto"
    max_thinking_tokens: int | None = None
    token_budget: int | None = None
    refill: bool = False
    prefetch: bool = False
    static_cache: bool = False

    def __post_init__(self) -> None:
        _at_least(self, "batch_size", 1)
        if self.thinking not in THINKING_SETTINGS:
            raise OptionsError(f"thinking must be one of {', '.join(THINKING_SETTINGS)}, got {self.thinking!r}")
        if self.max_thinking_tokens is not None:
            _at_least(self, "max_thinking_tokens", 1)
        if self.token_budget is not None:
            _at_least(self, "token_budget", 1)
        if self.refill and self.static_cache:
            raise OptionsError("refill and static_cache do not combine: refill grows its own cache as rows join; "
                               "use one")
        _at_least(self, "min_new_tokens", 0)
        if self.max_new_tokens is not None:
            _at_least(self, "max_new_tokens", 1)
        if not self.temperature > 0:
            raise OptionsError(f"temperature must be > 0, got {self.temperature!r}; for greedy decoding set do_sample=False")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise OptionsError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k is not None:
            _at_least(self, "top_k", 1)

    @property
    def scheduling(self) -> list[str]:
        """The scheduling options set here (they apply to a model running in this process)."""
        names = ("token_budget", "refill", "prefetch", "static_cache")
        return [n for n in names if getattr(self, n) not in (None, False)]

    def budget(self, task_default: int) -> int:
        """New tokens allowed for one request whose prompt budgets `task_default`."""
        return self.max_new_tokens or task_default

    @property
    def thinking_budget(self) -> int:
        """Tokens of reasoning allowed before `</think>` is forced, for a request that thinks."""
        return self.max_thinking_tokens or DEFAULT_THINKING_TOKENS


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model. `device`: "auto" (CUDA when available), "cpu", "cuda:1", ...; `dtype`:
    "auto" (bf16 on a GPU, fp32 on CPU), "bf16", "fp16", "fp32". `min_pixels`/`max_pixels` bound
    smart_resize (Qwen2-VL and later; for a server they must be the server's own settings).
    `attn_implementation`: a transformers attention name (default: flash-attention 2 when installed
    on CUDA, else sdpa). `runtime`: force one of RUNTIMES (default: "server" for an http(s) URL, else
    the family's first). `served_model`, `api_key` (default $OPENAI_API_KEY; never printed),
    `timeout` (seconds per request, whole answer included) and `image_format` ("png" or "jpeg")
    apply to a server. `adapter`: a PEFT/LoRA adapter folder applied on top of the checkpoint,
    merged into the weights with `merge_adapter=True`."""

    device: str = "auto"
    dtype: str = "auto"
    min_pixels: int | None = None
    max_pixels: int | None = None
    attn_implementation: str | None = None
    runtime: str | None = None
    served_model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float | None = None
    image_format: str = "png"
    adapter: str | Path | None = None
    merge_adapter: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise OptionsError(f"unknown dtype {self.dtype!r}; use auto, bf16, fp16 or fp32")
        for name in ("min_pixels", "max_pixels"):
            if getattr(self, name) is not None:
                _at_least(self, name, 1)
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise OptionsError(f"need min_pixels <= max_pixels, got {self.min_pixels} > {self.max_pixels}")
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise OptionsError(f"unknown runtime {self.runtime!r}; runtimes: {', '.join(RUNTIMES)}")
        if self.timeout is not None and not self.timeout > 0:
            raise OptionsError(f"timeout must be > 0 seconds, got {self.timeout!r}")
        if self.merge_adapter and self.adapter is None:
            raise OptionsError("merge_adapter=True needs an adapter (a PEFT adapter folder)")

    @property
    def local_only(self) -> dict[str, Any]:
        """The options set here that only a model running in this process can use."""
        defaults = LoadOptions()
        names = ("device", "dtype", "attn_implementation", "adapter", "merge_adapter")
        return {n: getattr(self, n) for n in names if getattr(self, n) != getattr(defaults, n)}

    @property
    def server_only(self) -> dict[str, Any]:
        """The options set here that only a server can use."""
        defaults = LoadOptions()
        names = ("served_model", "api_key", "timeout", "image_format")
        return {n: "..." if n == "api_key" else getattr(self, n)
                for n in names if getattr(self, n) != getattr(defaults, n)}


def with_overrides(cls: type[T], options: T | None, overrides: dict[str, Any]) -> T:
    """`options` (or the defaults) with the keyword `overrides` on top; an unknown keyword is an
    OptionsError that lists the valid ones, so a typo never passes silently."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise OptionsError(f"unknown option(s) {', '.join(unknown)} for {cls.__name__}; valid: {', '.join(sorted(names))}")
    if options is not None and not isinstance(options, cls):
        raise OptionsError(f"options must be a {cls.__name__}, got {type(options).__name__}")
    base = options if options is not None else cls()
    return dataclasses.replace(base, **overrides) if overrides else base


def _at_least(options: object, name: str, low: int) -> None:
    value = getattr(options, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise OptionsError(f"{name} must be an integer >= {low}, got {value!r}")
