"""Images per second of `vlground ocr` with a built-in engine (ENGINE=ppocr|ppocr-v4): 1 worker against 2, in one run.

The same rendered images (signs, labels, receipts, two-column pages, 18-44 px, five fonts) go through
`run_ocr` with `--workers 1` (one process, one core), `--workers 2`, and, for reference, one process
left to use every core through onnxruntime's own threads. Whole batches are timed, process start-up
included:

    python benchmarks/bench_ocr_workers.py          # N=48 images; WORKERS=2
Prints one JSON line. Other load on the cores lowers the speed-up; the line says what the load was."""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from vlground.io.images import load_image
from vlground.ocr.ppocr import built_in_engine
from vlground.jobs.loop import RunOptions
from vlground.jobs.ocr import OcrOptions, run_ocr
from vlground.ocr.synthetic import font_files, render, varied_cases

N = int(os.environ.get("N", "48"))
WORKERS = int(os.environ.get("WORKERS", "2"))
ENGINE = os.environ.get("ENGINE", "ppocr")
FONTS = [None] + font_files(Path(__file__).resolve().parent.parent / "tests" / "fonts")


def _one_process_all_threads(folder: Path) -> float:
    """The reference: one engine in this process, onnxruntime free to use every core."""
    started = time.perf_counter()
    engine = built_in_engine(ENGINE, threads=None)
    for path in sorted(folder.iterdir()):
        engine.read_one(load_image(path))
    return N / (time.perf_counter() - started)


def _workers(folder: Path, out: Path, workers: int) -> float:
    summary = run_ocr([str(folder)], out, OcrOptions(engine=ENGINE, run=RunOptions(workers=workers, progress=False)))
    assert summary.done == N and summary.failed == 0
    return summary.images_per_second


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for index, (document, style) in enumerate(varied_cases(N, seed=3, fonts=FONTS)):
            render(document, style).save(folder / f"{index:03d}.png")
        load_before = os.getloadavg()[0]
        rates = {
            "workers_1": _workers(folder, Path(tmp) / "w1.jsonl", 1),
            f"workers_{WORKERS}": _workers(folder, Path(tmp) / "wn.jsonl", WORKERS),
            "one_process_all_threads": _one_process_all_threads(folder),
        }
    print(json.dumps({
        "images": N, "cpu_count": os.cpu_count(), "load_average_1min_before": round(load_before, 2),
        "images_per_s": {name: round(rate, 3) for name, rate in rates.items()},
        "speedup": round(rates[f"workers_{WORKERS}"] / rates["workers_1"], 3),
        "speedup_vs_one_process_all_threads": round(rates[f"workers_{WORKERS}"] / rates["one_process_all_threads"], 3),
    }))


if __name__ == "__main__":
    main()
