"""How requests reach a local model: batches by count or by a token budget, inputs prepared ahead in
a background thread, and refill (continuous batching).

Refill: a fixed-shape batch answers only as fast as its longest answer, so with answer lengths of 8 to
160 tokens about half the rows compute padding after their own end. `generate_refill` keeps a set
of rows in flight; a row whose answer ended gives its place to the next request at once, whose prompt
is prefilled and joined to the running batch. The backend supplies a `RowEngine` (how to prefill,
join, step and drop rows of its model); everything else (which request goes next, the token budget,
stopping, greedy or sampled picks, counting) is here, once for every runtime.

transformers has its own continuous batching (`generate_batch`, `ContinuousBatchingManager`, paged
attention) but takes token ids only: no pixel values or image grids, and 1-D positions counted from 0,
where the Qwen2-VL generations need their 3-D M-RoPE positions and each row's rope offset. So it cannot
serve these models; the row engines here join rows in transformers' own cache instead."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from vlground.core.options import GenerationOptions


def plan_batches(costs: Sequence[int], batch_size: int, token_budget: int | None = None) -> list[list[int]]:
    """Indices grouped into batches, cheapest first (stable, so equal costs keep their order): at most
    `batch_size` rows, and with a `token_budget`, at most that many prompt tokens once padded to the
    batch's longest (rows x longest cost). A request dearer than the budget goes alone. `costs` are
    prompt tokens per request (image area works too, without a budget).

    Of the plans with the fewest batches (each batch is a prefill and a decode loop), the one with the
    least padding: the batch boundaries in cost order are chosen by dynamic programming, where filling
    each batch to its limit in turn would leave the leftovers, with the widest spread, to the end."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = sorted(range(len(costs)), key=lambda i: costs[i])
    ranked = [costs[i] for i in order]
    # best[j]: (batches, padded tokens) of the best plan of the first j in cost order; its last batch starts at start[j]
    best: list[tuple[float, float]] = [(0, 0)] + [(float("inf"), float("inf"))] * len(order)
    start = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        longest = ranked[end - 1]  # in cost order, a batch's last is its longest
        for first in range(end - 1, -1, -1):
            rows = end - first
            if rows > 1 and (rows > batch_size or (token_budget is not None and rows * longest > token_budget)):
                break  # a batch reaching further back only grows
            plan = (best[first][0] + 1, best[first][1] + rows * longest)
            if plan < best[end]:
                best[end], start[end] = plan, first
    batches: list[list[int]] = []
    end = len(order)
    while end:
        batches.append(order[start[end]:end])
        end = start[end]
    return batches[::-1]


def padding_share(batches: Iterable[Sequence[int]], costs: Sequence[int]) -> float:
    """Share of the prefill tokens of `batches` that are padding (each row padded to its batch's longest)."""
    padded = real = 0
    for batch in batches:
        longest = max(costs[i] for i in batch)
        padded += longest * len(batch)
        real += sum(costs[i] for i in batch)
    return (padded - real) / padded if padded else 0.0


def prefetched(prepare: Callable[[Any], Any], items: Iterable[Any], enabled: bool = True) -> Iterator[Any]:
    """`prepare(item)` for each item, in order; when `enabled`, the next item is prepared in a
    background thread while the caller works on the current one (image decoding, resizing and
    tensor copies release the GIL, so they overlap the model's forward passes)."""
    if not enabled:
        yield from (prepare(item) for item in items)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vlground-prefetch") as pool:
        pending = None
        try:
            for item in items:
                future = pool.submit(prepare, item)
                if pending is not None:
                    yield pending.result()
                pending = future
            if pending is not None:
                yield pending.result()
        finally:
            if pending is not None:
                pending.cancel()


@dataclass
class DecodeStats:
    """What a run computed: `steps` batched decode forwards, `row_steps` row-tokens they computed
    (rows in flight, idle or ended ones included), `useful_tokens` new tokens kept in answers, and
    the prefill tokens of all prefills (`prefill_tokens`, padding included) of which `padding_tokens`
    were padding. Utilisation = useful_tokens / row_steps."""

    steps: int = 0
    row_steps: int = 0
    useful_tokens: int = 0
    prefill_tokens: int = 0
    padding_tokens: int = 0

    @property
    def utilisation(self) -> float:
        return self.useful_tokens / self.row_steps if self.row_steps else 0.0

    @property
    def padding_share(self) -> float:
        return self.padding_tokens / self.prefill_tokens if self.prefill_tokens else 0.0

    def add(self, **counts: int) -> None:
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value)


def pick_tokens(logits, options: GenerationOptions):
    """Next token per row from float `logits` [rows, vocab]: argmax, or a sample under the options'
    temperature, top_k and top_p."""
    import torch

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


@dataclass(frozen=True)
class RowLimits:
    """How each request's answer ends: at most `budgets[i]` tokens; at any of `stops[i]` (not kept);
    `suppress[i]` (token ids) is forbidden while fewer than `min_new[i]` tokens are written."""

    budgets: Sequence[int]
    stops: Sequence[frozenset[int]]
    suppress: Sequence[Sequence[int]]
    min_new: Sequence[int]


class RowEngine(Protocol):
    """A model's rows in flight, as a runtime keeps them. `rows` lists the request index of each row
    of the batch the next `step` runs (None: an idle row of a fixed-shape batch); `limits` says how
    each request's answer ends; `stats` counts what was computed."""

    rows: list[int | None]
    limits: RowLimits
    stats: DecodeStats

    def prepare(self, index: int) -> Any:
        """Inputs of request `index` ready for `join` (may run in a background thread)."""

    def join(self, indices: Sequence[int], prepared: Sequence[Any]) -> Any:
        """Prefill these requests and add them as rows; float logits [len(indices), vocab] of their
        first new token, in the order of `indices`."""

    def step(self, tokens) -> Any:
        """Feed one token per row of `rows` (long tensor, any value for idle rows); float logits
        [len(rows), vocab] of the next one. Logit processors of the checkpoint are applied here."""

    def drop(self, indices: Sequence[int]) -> None:
        """Remove the rows of these requests (their answers ended)."""

    def answer(self, index: int, ids: list[int]) -> Any:
        """The Generation of request `index` whose answer is token ids `ids`."""


def generate_refill(engine: RowEngine, order: Sequence[int], costs: Sequence[int], limits: RowLimits,
                    options: GenerationOptions, stats: DecodeStats | None = None,
                    done: Callable[[int, list[int]], None] | None = None) -> dict[int, list[int]]:
    """New token ids of every request in `order` (answers end at their stop token, which is not
    kept), running at most `options.batch_size` rows, and with `options.token_budget` at most that
    many prompt tokens (`costs`) in flight (a dearer request runs alone). `done(index, ids)` is called
    as each answer ends. Greedy answers equal those of plain batches."""
    import torch

    stats = stats if stats is not None else DecodeStats()
    queue = deque(order)
    inputs = prefetched(engine.prepare, list(order), options.prefetch)
    answers: dict[int, list[int]] = {}
    written: dict[int, list[int]] = {}

    def admit() -> list[int]:
        live = [i for i in engine.rows if i is not None]
        room, spent = options.batch_size - len(live), sum(costs[i] for i in live)
        chosen: list[int] = []
        while queue and len(chosen) < room:
            cost = costs[queue[0]]
            if options.token_budget is not None and (live or chosen) and spent + cost > options.token_budget:
                break
            chosen.append(queue.popleft())
            spent += cost
        return chosen

    def take(indices: Sequence[int | None], logits) -> None:
        """Pick each row's next token and end the rows whose answers ended."""
        for row, index in enumerate(indices):
            if index is not None and len(written[index]) < limits.min_new[index]:
                logits[row, list(limits.suppress[index])] = float("-inf")
        tokens = pick_tokens(logits, options)
        ended = []
        for index, token in zip(indices, tokens.tolist()):
            if index is None:
                continue
            if token in limits.stops[index]:
                ended.append(index)
                continue
            written[index].append(token)
            stats.add(useful_tokens=1)
            if len(written[index]) >= limits.budgets[index]:
                ended.append(index)
        for index in ended:
            answers[index] = written.pop(index)
            if done:
                done(index, answers[index])
        if ended:
            engine.drop(ended)

    try:
        with torch.inference_mode():
            while queue or written:
                joining = admit()
                if joining:
                    for index in joining:
                        written[index] = []
                    prepared = [next(inputs) for _ in joining]
                    stats.add(row_steps=len(joining))  # the prefill writes each row's first token
                    take(joining, engine.join(joining, prepared))
                rows = list(engine.rows)
                if not any(i is not None for i in rows):
                    continue
                tokens = torch.tensor([written[i][-1] if i is not None else 0 for i in rows], dtype=torch.long)
                stats.add(steps=1, row_steps=len(rows))
                take(rows, engine.step(tokens))
    finally:
        inputs.close()  # stops the prefetch thread when a step fails
    return answers
