"""The runtime for the "qwen-vl-native" families (Qwen-VL base and Chat): batched, left-padded greedy
or sampled generation over the native model, the image encoded once at prefill."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from vlground.core.families import Family
from vlground.core.options import GenerationOptions, LoadOptions, OptionsError, with_overrides
from vlground.models.base import Backend, Generation, Request, resolve_device_dtype
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

    @torch.inference_mode()
    def _generate_batch(self, requests: Sequence[Request], budgets: Sequence[int],
                        options: GenerationOptions) -> list[Generation]:
        prompts = [self.encode_prompt(r) for r in requests]
        stops = [self.tokenizer.stop_ids(r.prompt.chat) for r in requests]
        new_ids = self._decode(prompts, [r.image for r in requests], max(budgets), stops, options)
        answers = []
        for ids, budget, stop in zip(new_ids, budgets, stops):
            ids = ids[:budget]
            ended = next((i for i, t in enumerate(ids) if t in stop), len(ids))
            answers.append(Generation(text=self.tokenizer.decode(ids[:ended]), input_size=None))
        return answers

    def _decode(self, prompts, images, max_new: int, stops, options: GenerationOptions) -> list[list[int]]:
        """New token ids of every row, up to `max_new` each (a row stops early at its stop token once
        `options.min_new_tokens` are written; before that its stop tokens are suppressed)."""
        device, model = self.device, self.model
        longest = max(len(p.ids) for p in prompts)
        pad = self.tokenizer.eod_id
        ids = torch.tensor([[pad] * (longest - len(p.ids)) + p.ids for p in prompts], device=device)
        valid = torch.tensor([[False] * (longest - len(p.ids)) + [True] * len(p.ids) for p in prompts], device=device)
        starts = torch.tensor([longest - len(p.ids) + p.image_start for p in prompts], device=device)
        pixels = preprocess(images, model.config.vision.image_size).to(device)
        cache = KVCache(model.config, [len(p.ids) for p in prompts], longest + max_new, device, model.lm_head.weight.dtype)
        hidden = model(model.embed(ids, pixels, starts), valid, cache, torch.arange(longest, device=device))
        logits = model.logits(hidden[:, -1]).float()
        suppress = torch.zeros(len(prompts), model.config.vocab_size, dtype=torch.bool, device=device)
        for row, stop in enumerate(stops):
            suppress[row, list(stop)] = True
        done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
        step = DecodeStep(model, cache, first_slot=longest) if max_new > 1 else None
        out = []
        for index in range(max_new):
            if index < options.min_new_tokens:
                logits = logits.masked_fill(suppress, float("-inf"))
            token = self._pick(logits, options)
            out.append(token)
            done |= suppress.gather(1, token[:, None])[:, 0]
            if index == max_new - 1 or bool(done.all()):
                break
            logits = step(token, longest + index)
        return torch.stack(out, dim=1).tolist() if out else [[] for _ in prompts]

    @staticmethod
    def _pick(logits: torch.Tensor, options: GenerationOptions) -> torch.Tensor:
        if not options.do_sample:
            return logits.argmax(dim=-1)
        logits = logits / options.temperature
        if options.top_k is not None:
            kth = torch.topk(logits, min(options.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if options.top_p is not None:  # keep the smallest set of tokens whose probability reaches top_p
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= options.top_p
            probs = probs.scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
        return torch.multinomial(probs, 1)[:, 0]


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
            with torch.cuda.graph(self.graph):
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
