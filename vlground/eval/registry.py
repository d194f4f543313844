"""Every benchmark vlground scores, by name: adding one is a module with a `BENCHMARK` entry
(`vlground.eval.benchmark.Benchmark`) and one line here; `vlground eval NAME` and
`vlground eval protocols` follow from this table."""
from __future__ import annotations

from vlground.eval import docvqa, ocr, refcoco, screenspot, textvqa
from vlground.eval.benchmark import Benchmark

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        refcoco.BENCHMARK,
        textvqa.BENCHMARK,
        docvqa.BENCHMARK,
        ocr.BENCHMARK,
        screenspot.BENCHMARK,
    )
}
