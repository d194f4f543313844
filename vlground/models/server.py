"""The server runtime: a model served behind an OpenAI-compatible `/v1/chat/completions` endpoint
(vLLM, SGLang, transformers serve, ...), for when the model does not fit, or should not run, on this machine.

Each request is one user turn: the image as a PNG data URL, then the prompt text. The server resizes
the image itself, so the input size Qwen2.5-VL writes its pixel coordinates in is computed here with
smart_resize from the min/max pixels the server's processor uses: they must match the server's
settings (vLLM: `--mm-processor-kwargs`), or Qwen2.5-VL boxes land in the wrong place.

vLLM's request extensions (`skip_special_tokens: false`, `min_tokens`, `top_k`) are sent until a
server refuses them by name (transformers serve answers HTTP 422); the request is then sent again
without them, and so are later ones. What is lost without them: grounding tokens the server strips
(Qwen2-VL's <|box_start|>... tags: boxes are still read from the bare coordinates, their labels are
not), and min_new_tokens and top_k are not applied. The transport's limits (deadline, body size,
retries, no redirects) are in `vlground.models.http_client`.

Thinking: whether the served checkpoint reasons first is told from its name (`checkpoint_thinking`:
Qwen3.5 by default, *-Thinking always); `GenerationOptions.thinking` goes to the server's chat
template as `chat_template_kwargs: {"enable_thinking": ...}` (vLLM, SGLang and transformers serve
take it), and a reasoning request may write `max_thinking_tokens` more tokens. A server cannot be
made to close the reasoning at that budget: reasoning that runs past it is reported as cut short.
Reasoning a server returns apart (`reasoning_content`, with a reasoning parser on) lands in
`Result.reasoning`; without one the text holds it, and the parser splits it off."""
from __future__ import annotations

import base64
import dataclasses
import io
import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from vlground.core.families import Family, UnknownFamilyError, checkpoint_thinking, family_from_name
from vlground.core.geometry import model_input_size
from vlground.models.base import STOP_TOKENS, Backend, Generation, Request
from vlground.models.http_client import HTTPPolicy, HTTPStatusError, ServerError, request_json
from vlground.core.options import GenerationOptions, LoadOptions, with_overrides
from vlground.models.thinking import template_kwargs, thinks

__all__ = ["DEFAULT_TIMEOUT", "HTTPPolicy", "ServerBackend", "ServerError", "is_server_url"]

log = logging.getLogger("vlground")

DEFAULT_TIMEOUT = HTTPPolicy().timeout
# how images travel: PNG is lossless (the server sees our pixels exactly), JPEG 5-10x smaller for photos
IMAGE_FORMATS = {"png": ("PNG", {"compress_level": 1}), "jpeg": ("JPEG", {"quality": 95})}


def is_server_url(name: object) -> bool:
    """True for a model name that is an OpenAI-compatible API base URL (http:// or https://)."""
    return str(name).startswith(("http://", "https://"))


class ServerBackend(Backend):
    """A chat model served at `base_url` (the API base, e.g. "http://host:8000/v1") under the name
    `served_model`. Build it with `ServerBackend.connect`, which finds the family and model name.

    `min_pixels`/`max_pixels`: the server processor's smart_resize bounds (default: the released
    checkpoint's, which is what vLLM uses unless told otherwise). `api_key` is sent as a bearer
    token (default: $OPENAI_API_KEY). `timeout`: seconds for each request, whole answer included;
    `policy` the other transport limits (answer size, retries; see HTTPPolicy). `image_format`:
    "png" or "jpeg" (see IMAGE_FORMATS), for links where upload size matters."""

    runtime = "server"

    def __init__(self, base_url: str, family: Family, served_model: str, *, api_key: str | None = None,
                 timeout: float | None = None, min_pixels: int | None = None, max_pixels: int | None = None,
                 image_format: str = "png", policy: HTTPPolicy | None = None):
        if "server" not in family.runtimes:  # the registry's word: Qwen-VL base is not a chat model
            raise ValueError(
                f"{family.name} is a base model that completes a raw prompt; an OpenAI-compatible server "
                "answers chat turns only. Serve a chat model (e.g. Qwen/Qwen-VL-Chat) or load this one locally"
            )
        if family.patch_size is None and (min_pixels is not None or max_pixels is not None):
            raise ValueError(f"{family.name} squashes every image to a fixed size; min/max pixels do not apply")
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"unknown image_format {image_format!r}; use {' or '.join(IMAGE_FORMATS)}")
        self.base_url = base_url.rstrip("/")
        self.family = family
        self.served_model = served_model
        self.headers = _auth(api_key)
        self.policy = _policy(policy, timeout)
        self.takes_extensions = True  # until the server refuses them
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.image_format = image_format
        self.thinking_mode = checkpoint_thinking(family, served_model)

    @classmethod
    def load(cls, source: str, family: Family | None, options: LoadOptions | None = None, **keywords) -> ServerBackend:
        """The backend for the server at API base `source` with `options` (or its fields as keywords):
        served_model, api_key, timeout, image_format, min/max_pixels. `family`: None to tell it from
        the served model's name."""
        options = with_overrides(LoadOptions, options, keywords)
        settings = dict(min_pixels=options.min_pixels, max_pixels=options.max_pixels, image_format=options.image_format)
        served = options.served_model or (family.hub_ids[0] if family is not None else None)
        return cls.connect(source, served, api_key=options.api_key, timeout=options.timeout, **settings)

    @classmethod
    def connect(cls, base_url: str, served_model: str | None = None, *, api_key: str | None = None,
                timeout: float | None = None, policy: HTTPPolicy | None = None, **settings) -> ServerBackend:
        """The backend for the server at `base_url`. The family comes from `served_model` (a hub id);
        without one, or when it is an alias, from the server's /models list: its first model, and the
        checkpoint (`root`) vLLM reports it was loaded from. `settings` (min/max_pixels, image_format)
        and the other arguments: see the class."""
        family = _family_or_none(served_model)
        if family is None:
            listing = request_json(base_url.rstrip("/") + "/models", _auth(api_key), _policy(policy, timeout)).get("data")
            listing = [m for m in listing if isinstance(m, dict)] if isinstance(listing, list) else []
            if served_model is None:
                if not listing or not isinstance(listing[0].get("id"), str):
                    raise ServerError(f"{base_url} lists no model at /models; pass the served model's name (--served-model)")
                served_model = listing[0]["id"]
            entry = next((m for m in listing if m.get("id") == served_model), {})
            family = _family_or_none(served_model) or _family_or_none(entry.get("root"))
        if family is None:
            raise UnknownFamilyError(
                f"cannot tell the family of the served model {served_model!r}; serve it under its hub id "
                "(e.g. Qwen/Qwen2.5-VL-7B-Instruct) or pass that id as served_model (--served-model)"
            )
        return cls(base_url, family, served_model, api_key=api_key, timeout=timeout, policy=policy, **settings)

    def _generate_batch(self, requests: Sequence[Request], budgets: Sequence[int],
                        options: GenerationOptions) -> list[Generation]:
        """The batch's requests all in flight at once (the shared `generate` keeps at most
        `options.batch_size` per batch); a request that fails gets its error, the others their answers."""
        with ThreadPoolExecutor(max_workers=max(1, len(requests))) as pool:
            futures = [pool.submit(self._complete, r, b, options) for r, b in zip(requests, budgets)]
            return [_answer_or_error(f) for f in futures]

    def _complete(self, request: Request, budget: int, options: GenerationOptions) -> Generation:
        if not request.prompt.chat:
            raise ValueError("a chat server needs chat prompts; this prompt is a raw completion (chat=False)")
        thinking = thinks(self.thinking_mode, options.thinking, self.served_model)
        payload = self._payload(request, budget + self.thinking_budget(options) if thinking else budget, options)
        switch = template_kwargs(self.thinking_mode, options.thinking, thinking)
        if switch:
            payload["chat_template_kwargs"] = switch
        extensions = _extensions(options)
        url = self.base_url + "/chat/completions"
        with_extensions = self.takes_extensions  # read once: other threads may learn the server refuses them
        try:
            answer = request_json(url, self.headers, self.policy, {**payload, **extensions} if with_extensions else payload)
        except HTTPStatusError as error:
            if not (with_extensions and error.status in (400, 422) and any(n in error.body for n in extensions)):
                raise
            self._refused_extensions(list(extensions))
            answer = request_json(url, self.headers, self.policy, payload)
        text, reasoning = chat_answer(answer, url)
        input_size = served_input_size(self.family, request.image.size, self.min_pixels, self.max_pixels)
        return Generation(text=text, input_size=input_size, thinking=thinking, reasoning=reasoning)

    def input_size(self, image_size: tuple[int, int]) -> tuple[int, int] | None:
        return served_input_size(self.family, image_size, self.min_pixels, self.max_pixels)

    def _refused_extensions(self, names: list[str]) -> None:
        if self.takes_extensions:
            log.warning("%s refuses vLLM's request extensions (%s); sending standard fields only: grounding tokens "
                        "it strips are lost (boxes are still read, Qwen2-VL labels are not), and min_new_tokens "
                        "and top_k are not applied", self.base_url, ", ".join(names))
        self.takes_extensions = False

    def _payload(self, request: Request, budget: int, options: GenerationOptions) -> dict:
        """The standard OpenAI chat request (fields every compatible server takes)."""
        payload = {
            "model": self.served_model,
            "messages": chat_messages(request.image, request.prompt.text, self.image_format, request.prompt.system),
            "max_tokens": budget,
            "temperature": options.temperature if options.do_sample else 0.0,
        }
        if options.do_sample and options.top_p is not None:
            payload["top_p"] = options.top_p
        if options.seed is not None:
            payload["seed"] = options.seed
        return payload


def chat_messages(image, prompt_text: str, image_format: str = "png", system: str | None = None) -> list[dict]:
    """The user turn of a request (here and in `vlground.jobs.llm_steps`): the image as a data URL in
    `image_format` (IMAGE_FORMATS), then the prompt text; after a system turn where `system` is set."""
    buffer = io.BytesIO()
    pil_format, save_options = IMAGE_FORMATS[image_format]
    image.save(buffer, format=pil_format, **save_options)
    url = f"data:image/{image_format};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    user = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": prompt_text}]}
    return [{"role": "system", "content": [{"type": "text", "text": system}]}, user] if system else [user]


def served_input_size(family: Family, image_size: tuple[int, int], min_pixels: int | None,
                      max_pixels: int | None) -> tuple[int, int] | None:
    """What a server's processor, run with these min/max pixels, makes of an image (width, height):
    the frame Qwen2.5-VL answers in; None for Qwen-VL-Chat (squashed to 448x448, boxes on [0, 1000))."""
    if family.patch_size is None:
        return None
    return model_input_size(family, image_size, min_pixels, max_pixels)


def chat_answer(answer: object, url: str) -> tuple[str, str | None]:
    """(the answer's text up to the end of the turn, the reasoning the server returned apart or None)
    of a /chat/completions response; ServerError when it holds no message."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    message = choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    text = message.get("content") if isinstance(message, dict) else None
    reasoning = message.get("reasoning_content") if isinstance(message, dict) else None
    if text is None and isinstance(reasoning, str):
        text = ""  # all reasoning: the budget ran out before the answer
    if not isinstance(text, str):
        raise ServerError(f"{url} answered without a choice's message: {str(answer)[:300]}")
    return _until_stop(text), reasoning if isinstance(reasoning, str) else None

def _auth(api_key: str | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def _policy(policy: HTTPPolicy | None, timeout: float | None) -> HTTPPolicy:
    policy = policy or HTTPPolicy()
    return dataclasses.replace(policy, timeout=timeout) if timeout is not None else policy


def _extensions(options: GenerationOptions) -> dict:
    """vLLM/SGLang fields beyond the OpenAI API: keep grounding tokens (Qwen2-VL's <|box_start|> ...)
    in the text, pin a minimum length (benchmarks), top-k sampling."""
    extensions: dict = {"skip_special_tokens": False}
    if options.min_new_tokens:
        extensions["min_tokens"] = options.min_new_tokens
    if options.do_sample and options.top_k is not None:
        extensions["top_k"] = options.top_k
    return extensions


def _answer_or_error(future: Future) -> Generation:
    try:
        return future.result()
    except (ServerError, ValueError) as error:
        return Generation(text="", error=error)


def _family_or_none(name: object) -> Family | None:
    """The family a name says, from the name alone: a server's words are never read as a local path."""
    try:
        return family_from_name(name) if isinstance(name, str) and name else None
    except UnknownFamilyError:
        return None


def _until_stop(text: str) -> str:
    """The answer up to the first end-of-turn token: with special tokens kept, some servers also
    return the end token and what the model wrote past it."""
    for stop in STOP_TOKENS:
        text = text.split(stop, 1)[0]
    return text
