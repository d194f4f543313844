"""Refill rows for the transformers runtime (a `scheduling.RowEngine` over transformers' own cache).

transformers' continuous batching cannot carry images (see `vlground.models.scheduling`), so rows are
joined here by hand, in the model's DynamicCache: a joining request is prefilled on its own (the
model computes its M-RoPE positions and rope offset from the processor's `image_grid_thw`), then its
keys and values are left-padded to the running batch's length (or the batch to its) and stacked
under it; the attention mask marks each row's padding. Every decode step passes each row's own
position (the same on the three M-RoPE axes for a new text token), so a row answers as it does
alone. Ended rows leave the batch, and columns that are padding in every row are cut off."""
from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from vlground.models.scheduling import DecodeStats, RowLimits

# Generation-config fields whose logits processors the refill loop does not apply; a checkpoint that
# sets one answers through plain batches instead (where `generate` applies everything).
_UNSUPPORTED = ("no_repeat_ngram_size", "bad_words_ids", "sequence_bias", "suppress_tokens", "begin_suppress_tokens",
                "encoder_repetition_penalty", "exponential_decay_length_penalty", "forced_eos_token_id")


def refill_refusal(model, config) -> str | None:
    """Why refill cannot run `model` under generation config `config` (None: it can): a generation
    setting the refill loop does not apply, a cache that is not keys and values alone (the linear
    attention layers of hybrid models), or a model without per-row rope offsets."""
    unsupported = [name for name in _UNSUPPORTED if getattr(config, name, None) not in (None, 0, 1.0, [], ())]
    if unsupported:
        return f"the checkpoint's generation config sets {', '.join(unsupported)}"
    layer_types = getattr(model.config.get_text_config(), "layer_types", None) or ["full_attention"]
    others = sorted(set(layer_types) - {"full_attention"})
    if others:
        return f"its layers include {', '.join(others)}, whose cache refill cannot join"
    if not hasattr(getattr(model, "model", None), "rope_deltas"):
        return "it keeps no rope offsets per row"
    return None


class HFRows:
    """The rows in flight of an `HFBackend` (see the module docstring); `sizes[i]` is request i's input
    size once prepared."""

    def __init__(self, backend, requests: Sequence, budgets: Sequence[int], options, config):
        self.backend, self.requests, self.options = backend, requests, options
        self.model = backend.model
        self.stats = DecodeStats()
        suppress = sorted(backend._eos_ids)
        self.limits = RowLimits(budgets, [backend._stop_set] * len(requests), [suppress] * len(requests),
                                [min(options.min_new_tokens, b) for b in budgets])
        self.penalty = config.repetition_penalty if config.repetition_penalty not in (None, 1.0) else None
        self.sizes: dict[int, tuple[int, int]] = {}
        self.rows: list[int | None] = []
        self.cache = None
        self.mask = self.positions = self.history = None
        self.device = backend.device
        self._cache_keyword = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    def prepare(self, index: int):
        inputs, sizes = self.backend._encode([self.requests[index]], prefetching=self.options.prefetch)
        self.sizes[index] = sizes[0]
        return inputs

    def join(self, indices: Sequence[int], prepared: Sequence) -> torch.Tensor:
        inputs = collate(prepared, self.backend._pad_id)
        # transformers keeps the last prefill's rope offsets on the model; cleared, every release
        # computes them afresh for these prompts instead of reusing the previous join's
        self.model.model.rope_deltas = None
        output = self.model(**inputs, use_cache=True, logits_to_keep=1)
        cache = output.get("cache", None)
        cache = cache if cache is not None else output["past_key_values"]
        mask = inputs["attention_mask"]
        # the next position of each row: its last prompt position + 1 (the model's own rope offset)
        deltas = self.model.model.rope_deltas.reshape(-1).to(mask.device)
        positions = mask.sum(dim=1) + deltas
        history = torch.where(mask == 0, inputs["input_ids"][:, -1:], inputs["input_ids"])  # padding repeats a prompt token
        self.stats.add(prefill_tokens=mask.numel(), padding_tokens=int((mask == 0).sum()))
        self._stack(cache, mask, positions, history)
        self.rows.extend(indices)
        return self._processed(output.logits[:, -1].float(), history)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(self.device)[:, None]
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        if self.history is not None:
            self.history = torch.cat([self.history, tokens], dim=1)
        positions = self.positions.view(1, -1, 1).expand(3, -1, 1)
        output = self.model(input_ids=tokens, attention_mask=self.mask, position_ids=positions, use_cache=True,
                            **{self._cache_keyword: self.cache})
        self.positions = self.positions + 1
        return self._processed(output.logits[:, -1].float(), self.history)

    def drop(self, indices: Sequence[int]) -> None:
        ended = set(indices)
        keep = [row for row, index in enumerate(self.rows) if index not in ended]
        self.rows = [self.rows[row] for row in keep]
        if not keep:
            self.cache = self.mask = self.positions = self.history = None
            return
        rows = torch.tensor(keep, device=self.device)
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys.index_select(0, rows), layer.values.index_select(0, rows)
        self.mask, self.positions = self.mask.index_select(0, rows), self.positions.index_select(0, rows)
        if self.history is not None:
            self.history = self.history.index_select(0, rows)
        self._trim()

    def answer(self, index: int, ids: list[int]):
        from vlground.models.base import Generation

        text = self.backend.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return Generation(text=text, input_size=self.sizes.pop(index))

    def _processed(self, logits: torch.Tensor, history: torch.Tensor | None) -> torch.Tensor:
        """The checkpoint's repetition penalty over each row's prompt and answer so far, `history`
        (its padding repeats a token of the row, so it changes nothing)."""
        if self.penalty is None:
            return logits
        from transformers import RepetitionPenaltyLogitsProcessor

        return RepetitionPenaltyLogitsProcessor(self.penalty)(history, logits)

    def _stack(self, cache, mask: torch.Tensor, positions: torch.Tensor, history: torch.Tensor) -> None:
        """Add the rows of a prefilled `cache` under the running ones, both left-padded to one length."""
        if self.cache is None:
            self.cache, self.mask, self.positions = cache, mask, positions
            self.history = history if self.penalty is not None else None
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for old, new in zip(self.cache.layers, cache.layers):
            old.keys = torch.cat([_left_pad(old.keys, width, 2), _left_pad(new.keys, width, 2)])
            old.values = torch.cat([_left_pad(old.values, width, 2), _left_pad(new.values, width, 2)])
        self.mask = torch.cat([_left_pad(self.mask, width, 1), _left_pad(mask, width, 1)])
        self.positions = torch.cat([self.positions, positions])
        if self.history is not None:
            self.history = torch.cat([_left_pad(self.history, width, 1, self.history[:, -1:]),
                                      _left_pad(history, width, 1, history[:, -1:])])

    def _trim(self) -> None:
        """Cut the leading columns that are padding in every row."""
        first = int(self.mask.any(dim=0).int().argmax())
        if first == 0:
            return
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
        self.mask = self.mask[:, first:]
        if self.history is not None:
            self.history = self.history[:, first:]


def _left_pad(tensor: torch.Tensor, width: int, dim: int, fill: torch.Tensor | None = None) -> torch.Tensor:
    """`tensor` left-padded along `dim` to `width` with zeros (or `fill`, broadcast)."""
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    padding = tensor.new_zeros(shape) if fill is None else fill.expand(*shape)
    return torch.cat([padding, tensor], dim=dim)


def collate(encoded: Sequence, pad_id: int):
    """Processor outputs of single requests as one left-padded batch: token-aligned tensors ([1, length],
    as input_ids) padded (input_ids with `pad_id`, the rest with 0), the others (pixel values, image
    grids) concatenated in order, as the processor itself batches."""
    from transformers import BatchFeature

    if len(encoded) == 1:
        return encoded[0]
    width = max(e["input_ids"].shape[1] for e in encoded)
    batch = {}
    for key in encoded[0]:
        parts = [e[key] for e in encoded]
        if all(p.shape == e["input_ids"].shape for p, e in zip(parts, encoded)):
            fills = [torch.full_like(p[:, :1], pad_id if key == "input_ids" else 0) for p in parts]
            parts = [_left_pad(p, width, 1, fill) for p, fill in zip(parts, fills)]
        batch[key] = torch.cat(parts)
    return BatchFeature(batch)
