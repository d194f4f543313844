"""What refill and token-budget batches save, measured on the CPU where no GPU is needed: how much of
the work a run computes is kept, and how much of its prefill is padding.

A tiny random Qwen2.5-VL (the real processor: patch 14, merge 2, up to 1280 visual tokens per image)
answers the standard workload's images (480-1000 x 640-1300 px, seed 0) with answer lengths drawn
from 8 to 160 tokens (seed --seed), each pinned to its request (its own token budget, end tokens
held off). Four runs, one process, same requests:

  plain          count batches of --batch-size (similar prompt lengths together), no refill
  token_budget   batches of at most --token-budget padded prompt tokens (--batch-size the cap)
  refill         --batch-size rows in flight, a row whose answer ended takes the next request
  refill_budget  refill, at most --token-budget prompt tokens in flight

Reported: decode steps (batched forwards after the prefills), row-steps (tokens computed, one per row
per forward, prefill's first token included), useful tokens (kept in answers), utilisation
(useful / row-steps), the padding share of prefill tokens (from the attention masks the model got)
and wall seconds; for batch plans also the batches and the largest batch's padded prompt tokens
(peak memory). Answers of all runs are checked equal.

The padding of count batches has three baselines: `count_batches` is the plain run's (vlground has
always batched in order of prompt length; the figure the issue means); `count_batches_input_order`
batches in input order, as a loop over a folder does; `count_batches_same_memory` batches as many as
the token budget allows for the dearest request, the count that keeps the same peak memory. The
last two are computed from the processor's prompt-token counts (which give the plain run's measured
padding exactly: checked).

    python benchmarks/bench_scheduling.py            # table
    python benchmarks/bench_scheduling.py --json     # {"plain": {...}, "refill": {...}, "count_batches": ..., ...}"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_runtime import SIZES, build_backend, workload  # noqa: E402

from vlground.models.base import Request  # noqa: E402
from vlground.models.scheduling import padding_share, plan_batches  # noqa: E402
from vlground.core.options import GenerationOptions  # noqa: E402
from vlground.prompts import build_prompt  # noqa: E402


class Counter:
    """Counts what a run computed, by wrapping the model's generate (plain batches: rows x new tokens),
    the backend's encoder (the attention masks of plain batches' prefills) and the refill engines the
    backend builds (their own counts)."""

    def __init__(self, backend):
        self.backend = backend
        self.reset()
        generate, encode, engine = backend.model.generate, backend._encode, backend._row_engine

        def counted_generate(input_ids, **kwargs):
            output = generate(input_ids=input_ids, **kwargs)
            new = output.shape[1] - input_ids.shape[1]
            self.steps += new - 1
            self.row_steps += new * input_ids.shape[0]
            return output

        def counted_encode(*args, **kwargs):
            inputs, sizes = encode(*args, **kwargs)
            self.batches += 1
            self.peak_tokens = max(self.peak_tokens, inputs["attention_mask"].numel())
            self.prefill_tokens += inputs["attention_mask"].numel()
            self.padding_tokens += int((inputs["attention_mask"] == 0).sum())
            return inputs, sizes

        def counted_engine(*args, **kwargs):
            self.engines.append(engine(*args, **kwargs))
            return self.engines[-1]

        backend.model.generate, backend._encode, backend._row_engine = counted_generate, counted_encode, counted_engine

    def reset(self) -> None:
        self.steps = self.row_steps = self.prefill_tokens = self.padding_tokens = self.batches = self.peak_tokens = 0
        self.engines = []

    def figures(self, useful: int, seconds: float) -> dict:
        steps, row_steps = self.steps, self.row_steps
        prefill, padding = self.prefill_tokens, self.padding_tokens
        batches = dict(batches=self.batches, peak_prefill_tokens=self.peak_tokens, padding_tokens=padding)
        if self.engines:  # refill encodes requests one by one; its prefills join them in groups
            prefill = sum(e.stats.prefill_tokens for e in self.engines)
            padding = sum(e.stats.padding_tokens for e in self.engines)
            batches = {}
        for engine in self.engines:
            steps += engine.stats.steps
            row_steps += engine.stats.row_steps
        return dict(decode_steps=steps, row_steps=row_steps, useful_tokens=useful,
                    utilisation=round(useful / row_steps, 3), padding_share=round(padding / prefill, 3),
                    prefill_tokens=prefill, **batches, wall_s=round(seconds, 2))


def planned(costs: list[int], batches: list[list[int]]) -> dict:
    """Padding of `batches` from the processor's prompt-token counts (each row padded to its batch's
    longest, as the processor pads)."""
    padded = [len(b) * max(costs[i] for i in b) for b in batches]
    return dict(padding_share=round(padding_share(batches, costs), 3), batches=len(batches),
                peak_prefill_tokens=max(padded), padding_tokens=sum(padded) - sum(costs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32, help="requests (default 32)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--token-budget", type=int, default=4096)
    parser.add_argument("--shortest", type=int, default=8)
    parser.add_argument("--longest", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared CPU two threads waiting on each other ran 5x slower)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    backend = build_backend(SIZES["tiny"], "cpu", torch.float32, "sdpa")
    lengths = np.random.default_rng(args.seed).integers(args.shortest, args.longest + 1, args.n).tolist()
    requests = [Request(image, build_prompt("read_text", backend.family, max_new_tokens=n))
                for image, n in zip(workload(args.n), lengths)]
    counter = Counter(backend)
    pinned = dict(min_new_tokens=args.longest, batch_size=args.batch_size)
    runs = {"plain": {}, "token_budget": dict(token_budget=args.token_budget), "refill": dict(refill=True),
            "refill_budget": dict(refill=True, token_budget=args.token_budget)}
    backend.generate(requests[:2], GenerationOptions(**pinned))  # warm-up
    result, answers = {}, {}
    for name, settings in runs.items():
        counter.reset()
        start = time.perf_counter()
        answers[name] = backend.generate(requests, GenerationOptions(**pinned, **settings))
        result[name] = counter.figures(sum(lengths), time.perf_counter() - start)
    if any(answers[name] != answers["plain"] for name in runs):
        raise SystemExit("answers differ between runs: " + ", ".join(n for n in runs if answers[n] != answers["plain"]))
    # Baselines of the padding: vlground's count batches (in order of prompt length, as it has always
    # batched; measured by the plain run), count batches in input order (a loop over a folder), and
    # count batches as large as the token budget allows for the dearest request (the batch size that
    # keeps count batches under the same memory).
    costs = backend._costs(requests, GenerationOptions())
    result["count_batches"] = {k: result["plain"][k] for k in ("padding_share", "batches", "peak_prefill_tokens")}
    if planned(costs, plan_batches(costs, args.batch_size))["padding_tokens"] != result["plain"]["padding_tokens"]:
        raise SystemExit("the prompt-token counts do not give the padding the model got")
    same_memory = max(1, min(args.batch_size, args.token_budget // max(costs)))
    result["count_batches_input_order"] = planned(
        costs, [list(range(i, min(i + args.batch_size, args.n))) for i in range(0, args.n, args.batch_size)])
    result["count_batches_same_memory"] = dict(planned(costs, plan_batches(costs, same_memory)), batch_size=same_memory)
    result["workload"] = dict(n=args.n, lengths=f"{args.shortest}-{args.longest}", seed=args.seed,
                              batch_size=args.batch_size, token_budget=args.token_budget,
                              visual_tokens=sum(a.input_size[0] * a.input_size[1] for a in answers["plain"]) // 28**2)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'run':<14}{'decode steps':>13}{'row-steps':>11}{'useful':>8}{'utilisation':>12}{'padding':>9}{'wall s':>8}")
    for name in runs:
        r = result[name]
        print(f"{name:<14}{r['decode_steps']:>13}{r['row_steps']:>11}{r['useful_tokens']:>8}{r['utilisation']:>12.3f}"
              f"{r['padding_share']:>9.3f}{r['wall_s']:>8.2f}")
    print("\nprefill padding by batch plan (batches, largest batch's padded prompt tokens):")
    plans = {"count, input order": result["count_batches_input_order"], "count, by prompt length": result["count_batches"],
             f"count of {result['count_batches_same_memory']['batch_size']} (budget's memory)": result["count_batches_same_memory"],
             "token budget": result["token_budget"]}
    for name, r in plans.items():
        print(f"  {name:<32}{r['padding_share']:>7.3f}{r['batches']:>5}{r['peak_prefill_tokens']:>7}")


if __name__ == "__main__":
    main()
