"""Single process against Ray, in one run: `vlground ocr` (embedded engine) over N rendered images
with `--workers 1` against `--ray local --workers 2`, and `vlground label` with a tiny Qwen2.5-VL on
`--ray local` with 1 actor against 2.

Each configuration is the real command in a fresh process, timed whole (start-up, Ray's cluster
start and the actors' model loads included), repeated REPEATS times interleaved, so load from other
work on the machine falls on all of them alike. Ray's fixed cost is the wall time of a `--ray local`
run over FEW images minus the single-process run over the same images. Steady-state rates come from
the output file's growth between the first and the last record.

    python benchmarks/bench_scale.py            # N=100 LABEL_N=48 LABEL_TOKENS=64 REPEATS=1
Prints one JSON line; the machine's load average is in it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vlground.ocr.synthetic import font_files, render, varied_cases
from vlground.testing import make_tiny_model

N = int(os.environ.get("N", "100"))
LABEL_N = int(os.environ.get("LABEL_N", "48"))
LABEL_TOKENS = os.environ.get("LABEL_TOKENS", "64")
FEW = int(os.environ.get("FEW", "4"))
REPEATS = int(os.environ.get("REPEATS", "1"))
FONTS = [None] + font_files(Path(__file__).resolve().parent.parent / "tests" / "fonts")


def _timed(args: list[str], out: Path) -> dict:
    """Wall seconds of `vlground ARGS --out OUT`, and the steady rate from the output's growth."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "vlground.cli.main", *args, "--out", str(out), "--no-progress"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    growth = []  # (seconds, records written)
    while process.poll() is None:
        lines = out.read_text().count("\n") if out.is_file() else 0
        if not growth or lines != growth[-1][1]:
            growth.append((time.perf_counter() - started, lines))
        time.sleep(0.05)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"vlground {' '.join(args)} failed ({process.returncode}): {process.stderr.read()[-2000:]}")
    records = out.read_text().count("\n")
    first = next(t for t, n in growth if n > 0)
    steady = (records - 1) / (growth[-1][0] - first) if records > 1 and growth[-1][0] > first else None
    return {"wall_s": wall, "records": records, "first_record_s": first, "steady_per_s": steady}


def _images(folder: Path, count: int) -> None:
    folder.mkdir()
    for index, (document, style) in enumerate(varied_cases(count, seed=3, fonts=FONTS)):
        render(document, style).save(folder / f"{index:03d}.png")


def _runs(configs: dict[str, list[str]], tmp: Path) -> dict[str, list[dict]]:
    """Every configuration REPEATS times, interleaved."""
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for repeat in range(REPEATS):
        for name, args in configs.items():
            results[name].append(_timed(args, tmp / f"{name}-{repeat}.jsonl"))
    return results


def _best(runs: list[dict]) -> dict:
    best = min(runs, key=lambda r: r["wall_s"])
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in best.items()}


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        _images(tmp / "ocr", N)
        _images(tmp / "few", FEW)
        _images(tmp / "label", LABEL_N)
        tiny = str(make_tiny_model("qwen2.5-vl", tmp / "tiny"))
        label = ["label", str(tmp / "label"), "-c", "text", "--model", tiny, "--max-new-tokens", LABEL_TOKENS, "--batch-size", "2"]
        load_before = os.getloadavg()
        runs = _runs({
            "ocr_1_worker": ["ocr", str(tmp / "ocr"), "--workers", "1"],
            "ocr_ray_2_workers": ["ocr", str(tmp / "ocr"), "--ray", "local", "--workers", "2"],
            "few_1_worker": ["ocr", str(tmp / "few"), "--workers", "1"],
            "few_ray_2_workers": ["ocr", str(tmp / "few"), "--ray", "local", "--workers", "2"],
            "label_ray_1_actor": [*label, "--ray", "local", "--workers", "1"],
            "label_ray_2_actors": [*label, "--ray", "local", "--workers", "2"],
        }, tmp)
    best = {name: _best(r) for name, r in runs.items()}
    print(json.dumps({
        "images": {"ocr": N, "few": FEW, "label": LABEL_N}, "label_max_new_tokens": int(LABEL_TOKENS), "repeats": REPEATS, "cpu_count": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before], "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "runs": best,
        "ocr_speedup_wall": _ratio(best["ocr_1_worker"]["wall_s"], best["ocr_ray_2_workers"]["wall_s"]),
        "ocr_speedup_steady": _ratio(best["ocr_ray_2_workers"]["steady_per_s"], best["ocr_1_worker"]["steady_per_s"]),
        "ray_fixed_cost_s": round(best["few_ray_2_workers"]["wall_s"] - best["few_1_worker"]["wall_s"], 2),
        "label_speedup_wall": _ratio(best["label_ray_1_actor"]["wall_s"], best["label_ray_2_actors"]["wall_s"]),
        "label_speedup_steady": _ratio(best["label_ray_2_actors"]["steady_per_s"], best["label_ray_1_actor"]["steady_per_s"]),
    }))


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


if __name__ == "__main__":
    main()
