"""The runtime for the "qwen-vl-native" families (Qwen-VL base and Chat): batched, left-padded greedy
or sampled generation over the native model, the image encoded once at prefill; with refill, rows
whose answers ended take the next request in the same preallocated cache (`NativeRows`)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from vlground.core.families import Family
from vlground.core.options import GenerationOptions, LoadOptions, OptionsError, with_overrides
from vlground.models.base import Backend, Generation, Request, resolve_device_dtype, to_device
from vlground.models.scheduling import DecodeStats, RowLimits, pick_tokens
from vlground.models.qwen_vl.checkpoint import load_model
from vlground.models.qwen_vl.model import KVCache, QwenVL
from vlground.models.qwen_vl.tokenizer import EncodedPrompt, QwenVLTokenizer
from vlground.models.qwen_vl.vision import preprocess


class QwenVLBackend(Backend):
    """Answers with the native model. A chat prompt gets the release's ChatML (system prompt, the image
    as `Picture 1:`); a raw prompt is a prefix completion with `<img></img>` where the image goes.
    Answers keep <ref>/<box>/<quad> tags, in the model's 0..1000 frame of the original image."""

    def __init__(self, model: QwenVL, tokenizer: QwenVLTokenizer, family: Family):
        self.model = model
        self.tokenizer = tokenizer
        self.family = family

    runtime = "qwen-vl-native"

    @classmethod
    def load(cls, path: Path, family: Family, options: LoadOptions | None = None, **keywords) -> QwenVLBackend:
        """The checkpoint folder `path` (see `vlground.models.weights.resolve_checkpoint`) with
        `options` (or its fields as keywords): `device` ("auto", "cpu", "cuda", ...) and `dtype`
        ("auto", "bf16", "fp16", "fp32"). The image is always squashed to 448x448, so min/max pixels
        are refused, as are options of other runtimes."""
        options = with_overrides(LoadOptions, options, keywords)
        unused = [n for n in ("min_pixels", "max_pixels", "attn_implementation", "adapter") if getattr(options, n) is not None]
        if unused:
            raise OptionsError(f"{family.name} squashes every image to a fixed size with its own attention; "
                               f"{', '.join(unused)} do not apply")
        device, torch_dtype = resolve_device_dtype(options.device, options.dtype)
        tokenizer = QwenVLTokenizer.from_checkpoint(path)
        return cls(load_model(Path(path), device, torch_dtype), tokenizer, family)

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    def encode_prompt(self, request: Request) -> EncodedPrompt:
        prompt = request.prompt
        return self.tokenizer.chat_prompt(prompt.text) if prompt.chat else self.tokenizer.raw_prompt(prompt.text)

    def _costs(self, requests: Sequence[Request], options: GenerationOptions) -> list[int]:
        return [len(self.encode_prompt(r).ids) for r in requests]  # the 256 image tokens included

    def _prepare(self, requests: Sequence[Request], options: GenerationOptions | None = None) -> torch.Tensor:
        """The images squashed, normalized and on the model's device (pinned, copied without blocking)."""
        return to_device(preprocess([r.image for r in requests], self.model.config.vision.image_size), self.device)

    def _row_engine(self, requests: Sequence[Request], budgets: Sequence[int], options: GenerationOptions):
        return NativeRows(self, requests, budgets, options)

    @torch.inference_mode()
    def _generate_batch(self, requests: Sequence[Request], budgets: Sequence[int],
                        options: GenerationOptions, prepared: torch.Tensor | None = None) -> list[Generation]:
        prompts = [self.encode_prompt(r) for r in requests]
        stops = [self.tokenizer.stop_ids(r.prompt.chat) for r in requests]
        pixels = prepared if prepared is not None else self._prepare(requests)
        new_ids = self._decode(prompts, pixels, max(budgets), stops, options)
        answers = []
        for ids, budget, stop in zip(new_ids, budgets, stops):
            ids = ids[:budget]
            ended = next((i for i, t in enumerate(ids) if t in stop), len(ids))
            answers.append(Generation(text=self.tokenizer.decode(ids[:ended]), input_size=None))
        return answers

    def _decode(self, prompts, pixels, max_new: int, stops, options: GenerationOptions) -> list[list[int]]:
        """New token ids of every row, up to `max_new` each (a row stops early at its stop token once
        `options.min_new_tokens` are written; before that its stop tokens are suppressed)."""
        device, model = self.device, self.model
        longest = max(len(p.ids) for p in prompts)
        cache = KVCache(model.config, [len(p.ids) for p in prompts], longest + max_new, device, model.lm_head.weight.dtype)
        logits = self._prefill(prompts, pixels, cache)
        suppress = torch.zeros(len(prompts), model.config.vocab_size, dtype=torch.bool, device=device)
        for row, stop in enumerate(stops):
            suppress[row, list(stop)] = True
        done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
        step = DecodeStep(model, cache, first_slot=longest) if max_new > 1 else None
        out = []
        for index in range(max_new):
            if index < options.min_new_tokens:
                logits = logits.masked_fill(suppress, float("-inf"))
            token = pick_tokens(logits, options)
            out.append(token)
            done |= suppress.gather(1, token[:, None])[:, 0]
            if index == max_new - 1 or bool(done.all()):
                break
            logits = step(token, longest + index)
        return torch.stack(out, dim=1).tolist() if out else [[] for _ in prompts]

    def _prefill(self, prompts: Sequence[EncodedPrompt], pixels: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Run the left-padded prompts (written at cache slots 0..longest-1); float logits of the last token."""
        device, model = self.device, self.model
        longest = max(len(p.ids) for p in prompts)
        pad = self.tokenizer.eod_id
        ids = torch.tensor([[pad] * (longest - len(p.ids)) + p.ids for p in prompts], device=device)
        valid = torch.tensor([[False] * (longest - len(p.ids)) + [True] * len(p.ids) for p in prompts], device=device)
        starts = torch.tensor([longest - len(p.ids) + p.image_start for p in prompts], device=device)
        hidden = model(model.embed(ids, pixels, starts), valid, cache, torch.arange(longest, device=device))
        return model.logits(hidden[:, -1]).float()


class NativeRows:
    """Refill rows over one preallocated cache of `batch_size` rows (a `scheduling.RowEngine`).

    Every decode step writes all rows at one shared cache column, so the CUDA graph of `DecodeStep`
    is captured once. A joining request is prefilled apart and its keys and values copied into an
    idle row, ending just before that column; positions count a row's valid slots only, so the row
    answers as it would alone. When the column reaches the cache's end, each row's valid slots are
    moved to the right end (compaction, in place, so the graph stays valid)."""

    def __init__(self, backend: QwenVLBackend, requests: Sequence[Request], budgets: Sequence[int],
                 options: GenerationOptions):
        model = backend.model
        self.backend, self.requests = backend, requests
        self.prompts = [backend.encode_prompt(r) for r in requests]
        stops = [frozenset(backend.tokenizer.stop_ids(r.prompt.chat)) for r in requests]
        self.limits = RowLimits(budgets, stops, [sorted(s) for s in stops], [min(options.min_new_tokens, b) for b in budgets])
        self.stats = DecodeStats()
        self.longest = max(len(p.ids) for p in self.prompts)
        capacity = min(options.batch_size, len(requests))
        self.cache = KVCache(model.config, [self.longest] * capacity, self.longest + max(budgets) + 1, backend.device,
                             model.lm_head.weight.dtype)
        self.rows: list[int | None] = [None] * capacity
        self.column = self.longest  # the cache column the next decode step writes
        self.decode = DecodeStep(model, self.cache, first_slot=self.column)
        self.decode.valid.fill_(False)  # idle rows write nothing valid

    def prepare(self, index: int) -> torch.Tensor:
        return self.backend._prepare([self.requests[index]])

    @torch.inference_mode()
    def join(self, indices: Sequence[int], prepared: Sequence[torch.Tensor]) -> torch.Tensor:
        prompts = [self.prompts[i] for i in indices]
        longest = max(len(p.ids) for p in prompts)
        model, cache = self.backend.model, self.cache
        alone = KVCache(model.config, [len(p.ids) for p in prompts], longest, cache.valid.device, model.lm_head.weight.dtype)
        logits = self.backend._prefill(prompts, torch.cat(list(prepared)), alone)
        idle = [row for row, index in enumerate(self.rows) if index is None][: len(indices)]
        rows = torch.tensor(idle, device=cache.valid.device)
        span = slice(self.column - longest, self.column)
        for layer in range(len(cache.keys)):
            cache.keys[layer][rows, :, span] = alone.keys[layer][:, :, :longest]
            cache.values[layer][rows, :, span] = alone.values[layer][:, :, :longest]
        cache.valid[rows] = False
        cache.valid[rows, span] = alone.valid[:, :longest]
        cache.inv_freq[rows] = alone.inv_freq
        self.decode.valid[rows] = True
        for row, index in zip(idle, indices):
            self.rows[row] = index
        self._count_prefill(prompts, longest)
        return logits

    def _count_prefill(self, prompts: Sequence[EncodedPrompt], longest: int) -> None:
        real = sum(len(p.ids) for p in prompts)
        self.stats.add(prefill_tokens=longest * len(prompts), padding_tokens=longest * len(prompts) - real)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.column >= self.cache.width:
            self._compact()
        logits = self.decode(tokens.to(self.cache.valid.device), self.column)
        self.column += 1
        return logits

    def drop(self, indices: Sequence[int]) -> None:
        ended = set(indices)
        for row, index in enumerate(self.rows):
            if index in ended:
                self.rows[row] = None
                self.decode.valid[row] = False
                self.cache.valid[row] = False

    def answer(self, index: int, ids: list[int]) -> Generation:
        return Generation(text=self.backend.tokenizer.decode(ids), input_size=None)

    def _compact(self) -> None:
        """Move each row's valid slots, in order, to end just before the new write column."""
        cache = self.cache
        valid = cache.valid
        counts = valid.sum(dim=1)
        column = max(self.longest, int(counts.max()))
        first_valid = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)  # valid columns first, in order
        rank = torch.arange(cache.width, device=valid.device)[None, :] - (column - counts[:, None])
        keep = (rank >= 0) & (rank < counts[:, None])
        source = first_valid.gather(1, rank.clamp(0, cache.width - 1))
        for tensors in (cache.keys, cache.values):
            for tensor in tensors:
                tensor.copy_(tensor.gather(2, source[:, None, :, None].expand_as(tensor)))
        valid.copy_(keep)
        self.column = column


class DecodeStep:
    """One decode step with fixed shapes: a token per row, written at cache slot `slot`, gives the next
    logits [batch, vocab] in float32. On CUDA the step is captured once as a CUDA graph and replayed:
    a step launches about a thousand small kernels, and launching them one by one made decoding
    several times slower than the GPU work itself."""

    def __init__(self, model: QwenVL, cache: KVCache, first_slot: int):
        self.model, self.cache = model, cache
        device = cache.valid.device
        self.tokens = torch.zeros(cache.valid.shape[0], 1, dtype=torch.long, device=device)
        self.valid = torch.ones(cache.valid.shape[0], 1, dtype=torch.bool, device=device)
        self.slot = torch.full((1,), first_slot, dtype=torch.long, device=device)
        self.graph = None
        if device.type == "cuda":
            # The warm-up writes only slot `first_slot`, which the first real step overwrites.
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                self._run()
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            # thread_local: with prefetch the next batch is pinned and copied in another thread while
            # this one is captured, and a pinned allocation in any thread breaks a capture in the
            # default (global) mode (torch's own compiled graphs capture this way too)
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self.logits = self._run()

    def _run(self) -> torch.Tensor:
        hidden = self.model(self.model.embed_tokens(self.tokens), self.valid, self.cache, self.slot)
        return self.model.logits(hidden[:, -1]).float()

    def __call__(self, tokens: torch.Tensor, slot: int) -> torch.Tensor:
        """Logits after feeding `tokens` [batch] at `slot`; valid until the next call."""
        self.tokens.copy_(tokens[:, None])
        self.slot.fill_(slot)
        if self.graph is None:
            return self._run()
        self.graph.replay()
        return self.logits
