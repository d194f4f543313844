"""Parse throughput of vlground against supervision's `Detections.from_vlm`, on the same Qwen2.5-VL
answers in one run. Both turn the answer into boxes on the original image; only answers that both read
the same way are timed, so neither side is credited for work the other skips.

    python benchmarks/bench_parse.py            # N=2000 answers, REPEAT=5
Prints one JSON line."""
from __future__ import annotations

import json
import os
import random
import time

import numpy as np
import supervision as sv

from vlground.geometry import model_input_size
from vlground.grammar import parse

N = int(os.environ.get("N", "2000"))
REPEAT = int(os.environ.get("REPEAT", "5"))
LABELS = ["car", "person", "top right brown cake", "traffic light", "dog", "the red car on the left"]


def answers(rng: random.Random) -> list[tuple[str, tuple[int, int]]]:
    out = []
    for _ in range(N):
        size = (rng.randint(400, 2000), rng.randint(400, 2000))
        w, h = model_input_size("qwen2.5-vl", size)
        objects = []
        for _ in range(rng.randint(1, 40)):
            x1, y1 = rng.randint(0, w - 20), rng.randint(0, h - 20)
            objects.append({"bbox_2d": [x1, y1, rng.randint(x1 + 1, w), rng.randint(y1 + 1, h)], "label": rng.choice(LABELS)})
        body = ",\n".join("\t" + json.dumps(o) for o in objects)
        out.append((f"```json\n[\n{body}\n]\n```", size))
    return out


def main() -> None:
    data = answers(random.Random(0))
    sizes = {size: model_input_size("qwen2.5-vl", size) for _, size in data}

    def ours():
        return [parse(text, "qwen2.5-vl", size, sizes[size]) for text, size in data]

    def ours_to_sv():
        return [parse(text, "qwen2.5-vl", size, sizes[size]).to_supervision() for text, size in data]

    def theirs():
        return [sv.Detections.from_vlm(sv.VLM.QWEN_2_5_VL, text, input_wh=sizes[size], resolution_wh=size) for text, size in data]

    for a, b in zip(ours(), theirs()):  # same answers, same boxes
        np.testing.assert_allclose(np.array([d.box for d in a.detections]), b.xyxy, rtol=1e-5, atol=1e-3)

    res = {"answers": N, "objects": sum(t.count("bbox_2d") for t, _ in data)}
    for name, fn in [("vlground_parse", ours), ("vlground_parse_to_supervision", ours_to_sv), ("supervision_from_vlm", theirs)]:
        best = min(_timed(fn) for _ in range(REPEAT))
        res[name] = {"answers_per_s": round(N / best, 1), "s": round(best, 3)}
    res["speedup_vs_supervision"] = round(res["vlground_parse"]["answers_per_s"] / res["supervision_from_vlm"]["answers_per_s"], 2)
    print(json.dumps(res))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
