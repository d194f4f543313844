"""The transformers runtime for Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5 and Qwen4-Exp.

One processor call per batch (left padding, images of any sizes), one `generate`, one copy of the new
tokens to the host. Each answer carries the input size the processor really produced for its image
(from `image_grid_thw`), which is the frame Qwen2.5-VL writes its pixel coordinates in."""
from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from vlground.core.families import Family
from vlground.core.geometry import smart_resize
from vlground.core.options import GenerationOptions, LoadOptions, with_overrides
from vlground.models.base import STOP_TOKENS, Backend, Generation, Request, resolve_device_dtype, to_device
from vlground.models.thinking import CLOSER, ThinkingBudget, template_thinking, thinks
from vlground.models.weights import InvalidCheckpointError, WeightsNotFoundError

log = logging.getLogger("vlground")


def default_attn_implementation(device: str) -> str:
    """flash_attention_2 on CUDA when the flash_attn package is installed, else sdpa: both avoid the
    eager attention path, and flash-attention also runs the Qwen2.5-VL vision windows in one call."""
    import importlib.util

    if device.startswith("cuda") and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


# transformers hands a vision block's cu_seqlens (every window in one packed sequence) only to attention
# implementations whose name contains "flash"; any other runs one attention call per window.
PACKED_VISION_ATTENTION = "vlground_flash_style_packed_sdpa"


def packed_sdpa(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0, cu_seq_lens_q=None,
                max_length_q=None, **kwargs):
    """Attention inside each chunk of a packed sequence (chunk bounds `cu_seq_lens_q`), for vision towers.

    The Qwen2.5-VL tower attends within windows of at most 64 patches, thousands per batch; one call
    per window leaves the GPU waiting on Python. Here short chunks go into ONE scaled_dot_product_attention,
    zero-padded to the longest with a key mask; few long chunks (whole images) keep one mask-free call
    each. query/key/value: (1, heads, tokens, head_dim); returns (1, tokens, heads, head_dim)."""
    import torch
    import torch.nn.functional as F

    bounds = cu_seq_lens_q.long()
    lengths = bounds[1:] - bounds[:-1]
    chunks, tokens = lengths.shape[0], query.shape[2]
    if tokens >= 512 * chunks:
        parts = [torch.split(t, lengths.tolist(), dim=2) for t in (query, key, value)]
        out = torch.cat([F.scaled_dot_product_attention(q, k, v, scale=scaling) for q, k, v in zip(*parts)], dim=2)
        return out.transpose(1, 2), None
    longest = int(max_length_q) if max_length_q is not None else int(lengths.max())
    longest = -(-longest // 16) * 16  # aligned, so the memory-efficient kernel takes the mask
    chunk_of = torch.repeat_interleave(torch.arange(chunks, device=bounds.device), lengths, output_size=tokens)
    flat = chunk_of * longest + torch.arange(tokens, device=bounds.device) - bounds[:-1][chunk_of]
    heads, head_dim = query.shape[1], query.shape[3]

    def padded(x):
        out = x.new_zeros(chunks * longest, heads, head_dim)
        out[flat] = x[0].transpose(0, 1)
        return out.view(chunks, longest, heads, head_dim).transpose(1, 2)

    valid = torch.zeros(chunks * longest, dtype=torch.bool, device=bounds.device)
    valid[flat] = True
    out = F.scaled_dot_product_attention(
        padded(query), padded(key), padded(value), attn_mask=valid.view(chunks, 1, 1, longest), scale=scaling
    )
    return out.transpose(1, 2).reshape(chunks * longest, heads, head_dim)[flat].unsqueeze(0), None


def use_packed_vision_attention(model, enabled: bool = True) -> bool:
    """Route a windowed (Qwen2.5-VL) vision tower running on sdpa through `packed_sdpa`, or back to sdpa.
    Returns whether the packed path is now on; other towers and flash-attention are left alone."""
    from transformers import AttentionInterface

    vision = model.config.vision_config
    if getattr(vision, "window_size", None) is None or vision._attn_implementation not in ("sdpa", PACKED_VISION_ATTENTION):
        return False
    AttentionInterface.register(PACKED_VISION_ATTENTION, packed_sdpa)
    vision._attn_implementation = PACKED_VISION_ATTENTION if enabled else "sdpa"
    return enabled


def set_pixel_limits(processor, min_pixels: int | None = None, max_pixels: int | None = None) -> None:
    """Bound the area (in pixels) smart_resize gives each image; None keeps the checkpoint's value."""
    size = dict(processor.image_processor.size)
    if min_pixels is not None:
        size["shortest_edge"] = int(min_pixels)
    if max_pixels is not None:
        size["longest_edge"] = int(max_pixels)
    if not 0 < size["shortest_edge"] <= size["longest_edge"]:
        raise ValueError(
            f"need 0 < min_pixels <= max_pixels, got min_pixels={size['shortest_edge']}, max_pixels={size['longest_edge']}"
        )
    processor.image_processor.size = size


def _check_checkpoint(path: Path, family: Family) -> None:
    """Fail early, with advice, on a folder that is not a complete checkpoint of `family`."""
    config = path / "config.json"
    if not config.is_file():
        raise WeightsNotFoundError(f"{path} has no config.json: it is not a model folder; pass the checkpoint's folder")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise WeightsNotFoundError(
            f"{path} has no weights (*.safetensors); the download is incomplete: download the checkpoint again"
        )
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type not in family.model_types:
        raise ValueError(
            f"{path} holds a {model_type!r} model, not {family.name} ({', '.join(family.model_types)}); "
            "pick the family that matches the checkpoint"
        )
    check_transformers(family, model_type)


def check_transformers(family: Family, model_type: str) -> None:
    """A clear line when the installed transformers predates `family`'s model classes."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type in CONFIG_MAPPING:
        return
    wanted = f"transformers>={family.transformers}" if family.transformers else "a newer transformers"
    raise InvalidCheckpointError(
        f"{family.name} (model_type {model_type!r}) needs {wanted}; this is transformers {transformers.__version__}: "
        f"pip install -U '{wanted if family.transformers else 'transformers'}'"
    )


def apply_adapter(model, options: LoadOptions, family: Family, processor):
    """The model with `options.adapter` (a PEFT adapter folder, see `vlground.models.adapters`) on top, merged
    into the weights when `options.merge_adapter`; the model itself without one. The adapter is
    checked against the family and the pixel bounds the processor really uses."""
    if options.adapter is None:
        return model
    from vlground.models.adapters import load_adapter

    size = processor.image_processor.size
    return load_adapter(model, options.adapter, family, merge=options.merge_adapter,
                        min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"])


@contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _check_chat_template(path: Path, processor) -> None:
    """Render the chat template once at load: a template the jinja sandbox refuses, or one that
    fails, is a load error naming the file, not a failure on the first image."""
    from jinja2 import TemplateError

    message = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image."}]}]
    try:
        processor.apply_chat_template(message, add_generation_prompt=True, tokenize=False)
    except (TemplateError, ValueError, TypeError, KeyError) as error:
        reason = " ".join(str(error).split())[:200]
        raise InvalidCheckpointError(
            f"{path}: the chat template (chat_template.jinja or tokenizer_config.json) cannot be rendered "
            f"({type(error).__name__}: {reason}); restore the original checkpoint's template"
        ) from error


def _load_processor(path: Path):
    """The folder's own processor. Its image settings (patch and merge size, min/max pixels) are the
    checkpoint's word: a folder without them is refused, never filled in from the family registry."""
    from transformers import AutoProcessor

    settings = path / "processor_config.json"
    has_image_settings = (path / "preprocessor_config.json").is_file() or (
        settings.is_file() and "image_processor" in json.loads(settings.read_text()))
    if not has_image_settings:
        raise InvalidCheckpointError(
            f"{path} has no preprocessor_config.json (the image processor's patch size and min/max pixels); "
            "copy it from the original checkpoint: vlground does not guess the processor a model was trained with"
        )
    return AutoProcessor.from_pretrained(path, trust_remote_code=False)


def _check_loaded(path: Path, processor, model, info: dict) -> None:
    """Weights of the shapes config.json describes, and a tokenizer that spells the image token as
    the single id the model replaces with image features."""
    mismatched = sorted(info.get("mismatched_keys") or ())
    if mismatched:
        key, stored, expected = mismatched[0]
        raise InvalidCheckpointError(
            f"{path}: {len(mismatched)} weights do not have the shapes config.json describes (e.g. {key}: "
            f"{tuple(stored)} in the weights, {tuple(expected)} from the config); use the config.json that came with these weights"
        )
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        log.warning("%s: %d weights are missing from the checkpoint and were initialized at random (e.g. %s); "
                    "answers will be wrong unless that is intended", path, len(missing), missing[0])
    vision = model.config.vision_config
    ours = (processor.image_processor.patch_size, processor.image_processor.merge_size)
    if ours != (vision.patch_size, vision.spatial_merge_size):
        raise InvalidCheckpointError(
            f"{path}: the image processor cuts {ours[0]}-pixel patches merged {ours[1]}x{ours[1]}, the model's vision "
            f"tower expects {vision.patch_size} merged {vision.spatial_merge_size}x{vision.spatial_merge_size}; use the "
            "preprocessor_config.json that came with these weights"
        )
    token = getattr(processor, "image_token", "<|image_pad|>")
    ids = processor.tokenizer(token, add_special_tokens=False)["input_ids"]
    if ids != [model.config.image_token_id]:
        absent = "" if (path / "tokenizer.json").is_file() else " (the folder has no tokenizer.json)"
        raise InvalidCheckpointError(
            f"{path}: the tokenizer does not spell the image token {token} as id {model.config.image_token_id}"
            f"{absent}; copy tokenizer.json and tokenizer_config.json from the original checkpoint"
        )


class HFBackend(Backend):
    """A transformers model and its processor, answering batches of (image, prompt) requests.

    Build it with `HFBackend.load` from a checkpoint folder, or directly from a model already on its
    device (benchmarks build random-weight models of the real size this way). `packed_vision_attention`
    (default: on CUDA only, where one call per window is launch-bound; on CPU the per-window fused
    kernel is faster) switches a Qwen2.5-VL vision tower on sdpa to `packed_sdpa`."""

    def __init__(self, model, processor, family: Family, packed_vision_attention: bool | None = None):
        import torch

        if packed_vision_attention is None:
            packed_vision_attention = model.device.type == "cuda"
        use_packed_vision_attention(model, packed_vision_attention)
        self.model = model
        self.processor = processor
        self.family = family
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation appends on the right, so padding goes left
        self.device = model.device
        self.patch_size = processor.image_processor.patch_size
        self.thinking_mode = template_thinking(processor)  # the checkpoint's own template says whether it thinks
        self._closer = self.tokenizer.encode(CLOSER, add_special_tokens=False)
        eos = model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        stop = {*self.tokenizer.convert_tokens_to_ids(list(STOP_TOKENS)), *eos, self.tokenizer.pad_token_id}
        self._stop_set = frozenset(i for i in stop if i is not None)
        self._stop_ids = torch.tensor(sorted(self._stop_set))
        self._eos_ids = frozenset(eos)  # what `generate` holds off for min_new_tokens
        self._pad_id = self.tokenizer.pad_token_id

    runtime = "transformers"

    @classmethod
    def load(cls, path: Path, family: Family, options: LoadOptions | None = None, **keywords) -> HFBackend:
        """Load the checkpoint in folder `path` (see `resolve_checkpoint`) with `options` (or the same
        fields as keywords). device/dtype "auto": CUDA in bf16 when available, else CPU in fp32.
        min/max_pixels override the checkpoint's smart_resize bounds. Remote code is never run."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        options = with_overrides(LoadOptions, options, keywords)
        path = Path(path)
        _check_checkpoint(path, family)
        device, torch_dtype = resolve_device_dtype(options.device, options.dtype)
        processor = _load_processor(path)
        set_pixel_limits(processor, options.min_pixels, options.max_pixels)
        _check_chat_template(path, processor)
        with _quiet_transformers():  # its loading report becomes our one-line error or warning below
            model, info = AutoModelForImageTextToText.from_pretrained(
                path,
                dtype=torch_dtype,
                attn_implementation=options.attn_implementation or default_attn_implementation(device),
                trust_remote_code=False,
                ignore_mismatched_sizes=True,
                output_loading_info=True,
            )
        _check_loaded(path, processor, model, info)
        model = apply_adapter(model, options, family, processor)
        return cls(model.to(device).eval(), processor, family)

    def _generation_config(self, max_new_tokens: int, options: GenerationOptions):
        """The checkpoint's generation settings (repetition penalty, end tokens) with our decoding
        choice on top; greedy clears the sampling knobs so transformers does not warn about them."""
        config = copy.deepcopy(self.model.generation_config)
        if options.do_sample:
            sampling = dict(temperature=options.temperature, top_p=options.top_p, top_k=options.top_k)
            sampling = {k: v for k, v in sampling.items() if v is not None}
        else:
            sampling = dict(temperature=None, top_p=None, top_k=None)
        config.update(
            do_sample=options.do_sample,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min(options.min_new_tokens, max_new_tokens),
            pad_token_id=self._pad_id,
            **sampling,
        )
        if options.static_cache:
            # a preallocated cache; on CUDA, generate compiles the decode step (CUDA graphs)
            config.cache_implementation = "static"
        return config

    def _costs(self, requests: Sequence[Request], options: GenerationOptions) -> list[int]:
        """Prompt tokens of each request: the chat text's tokens with the image placeholder expanded to
        the visual tokens the image processor's own grid gives the image."""
        thinking = thinks(self.thinking_mode, options.thinking, f"this {self.family.name} checkpoint")
        image_processor = self.processor.image_processor
        merge = image_processor.merge_size ** 2
        costs = []
        for request in requests:
            text_tokens = len(self.tokenizer(self._chat_text(request, thinking), add_special_tokens=False)["input_ids"])
            patches = image_processor.get_number_of_image_patches(request.image.height, request.image.width)
            costs.append(text_tokens - 1 + patches // merge)
        return costs

    def _prepare(self, requests: Sequence[Request], options: GenerationOptions):
        thinking = thinks(self.thinking_mode, options.thinking, f"this {self.family.name} checkpoint")
        return self._encode(requests, thinking, prefetching=True)

    def _row_engine(self, requests: Sequence[Request], budgets: Sequence[int], options: GenerationOptions):
        from vlground.models.hf_refill import HFRows, refill_refusal

        config = self._generation_config(max(budgets), options)
        reason = refill_refusal(self.model, config)
        if thinks(self.thinking_mode, options.thinking, f"this {self.family.name} checkpoint"):
            reason = "refill does not bound reasoning yet"
        if reason:
            self._notice(f"refill is off for this model ({reason}); answering in plain batches")
            return None
        return HFRows(self, requests, budgets, options, config)

    def input_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """What this processor makes of an image of `image_size`: its own patch, merge and pixel bounds."""
        processor = self.processor.image_processor
        h, w = smart_resize(image_size[1], image_size[0], factor=processor.patch_size * processor.merge_size,
                            min_pixels=processor.size["shortest_edge"], max_pixels=processor.size["longest_edge"])
        return w, h

    def _chat_text(self, request: Request, thinking: bool = False) -> str:
        """The chat template's text for one request; `thinking` reaches the template as enable_thinking
        (where the template has the switch)."""
        if not request.prompt.chat:
            raise ValueError(f"{self.family.name} is a chat model; its prompts must have chat=True")
        system = [{"role": "system", "content": [{"type": "text", "text": request.prompt.system}]}] if request.prompt.system else []
        template = self.processor.chat_template
        # a template without the switch would get it as a processor argument, which transformers
        # warns about on every request
        switch = {} if isinstance(template, str) and "enable_thinking" not in template else {"enable_thinking": thinking}
        return self.processor.apply_chat_template(
            [*system, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": request.prompt.text}]}],
            add_generation_prompt=True,
            tokenize=False,
            **switch,
        )

    def _encode(self, requests: Sequence[Request], thinking: bool = False, prefetching: bool = False):
        """The processor's output for the batch (on the model's device) and each image's input size.
        `thinking`: see `_chat_text`. `prefetching` (a background thread): images are processed on
        the host and copied through pinned memory, so the model's device is left to the batch
        running; else on the device."""
        texts = [self._chat_text(r, thinking) for r in requests]
        # device=: the torchvision image processor resizes and normalizes on the model's device.
        inputs = self.processor(text=texts, images=[r.image for r in requests], padding=True, return_tensors="pt",
                                device=None if prefetching else self.device)
        sizes = [(w * self.patch_size, h * self.patch_size) for _, h, w in inputs["image_grid_thw"].tolist()]
        if prefetching:
            return inputs.__class__({k: to_device(v, self.device) for k, v in inputs.items()}), sizes
        return inputs.to(self.device), sizes

    def _generate_batch(self, requests: Sequence[Request], budgets: Sequence[int],
                        options: GenerationOptions, prepared=None) -> list[Generation]:
        import torch

        limits = list(budgets)
        thinking = thinks(self.thinking_mode, options.thinking, f"this {self.family.name} checkpoint")
        try:
            new_tokens, sizes, limits = self._run(requests, options, limits, thinking, prepared)
        except torch.OutOfMemoryError as error:
            message = str(error)
        else:
            texts = self._decode(new_tokens, limits)
            return [Generation(text=t, input_size=s, thinking=thinking) for t, s in zip(texts, sizes)]
        # Raised afresh once the handler is left: the original traceback keeps the failed attempt's
        # tensors alive, and the caller retries smaller batches right after this.
        raise torch.OutOfMemoryError(message)

    def _run(self, requests: Sequence[Request], options: GenerationOptions, limits: list[int], thinking: bool,
             prepared=None):
        """The new tokens of each row (on the host), each image's input size, and each row's token
        limit. A row that reasons gets the thinking budget on top of its answer's `limits`.
        `prepared`: the `_encode` output made ahead."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        inputs, sizes = prepared if prepared is not None else self._encode(requests, thinking)
        config = self._generation_config(max(limits), options)
        steering = {}
        if thinking:
            budget = ThinkingBudget(self._closer, self.thinking_budget(options), limits, inputs["input_ids"].shape[1])
            config.max_new_tokens = budget.max_new_tokens
            steering = dict(logits_processor=LogitsProcessorList([budget.processor]),
                            stopping_criteria=StoppingCriteriaList([budget.stopper]))
        with torch.inference_mode():
            output = self.model.generate(**inputs, generation_config=config, **steering)
        if thinking:  # each answer's limit counts from its closer; a row still reasoning keeps all it wrote
            limits = [int(c) + n if c >= 0 else config.max_new_tokens for c, n in zip(budget.closed_at.tolist(), limits)]
        return output[:, inputs["input_ids"].shape[1] :].cpu(), sizes, limits

    def _decode(self, new_tokens, limits: list[int]) -> list[str]:
        """Text of each row up to its first stop token and at most its own token limit (a batch runs to
        the largest limit; cutting each row keeps batched answers equal to one-at-a-time ones)."""
        import torch

        stops = torch.isin(new_tokens, self._stop_ids)
        ends = torch.where(stops.any(dim=1), stops.int().argmax(dim=1), new_tokens.shape[1]).tolist()
        rows = new_tokens.tolist()
        kept = [row[: min(end, limit)] for row, end, limit in zip(rows, ends, limits)]
        return self.tokenizer.batch_decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
