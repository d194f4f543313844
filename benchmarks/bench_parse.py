"""Parse throughput of vlground against supervision's `Detections.from_vlm`, on the same Qwen2.5-VL
answers in one run, by answer length: 1 box (a referring expression), 3, 10 and 40 boxes (detection
lists). Both turn each answer into boxes on the original image; the boxes are checked equal first.

    python benchmarks/bench_parse.py            # N=1000 answers per length, best of REPEAT=5
Prints one JSON line: answers/s of each and vlground's speed relative to supervision per length."""
from __future__ import annotations

import json
import os
import random
import time

import numpy as np
import supervision as sv

from vlground.geometry import model_input_size
from vlground.grammar import parse

N = int(os.environ.get("N", "1000"))
REPEAT = int(os.environ.get("REPEAT", "5"))
LENGTHS = (1, 3, 10, 40)
LABELS = ["car", "person", "top right brown cake", "traffic light", "dog", "the red car on the left"]


def answers(rng: random.Random, boxes: int) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
    """(answer, original size, model input size) triples of `boxes` objects each."""
    out = []
    for _ in range(N):
        size = (rng.randint(400, 2000), rng.randint(400, 2000))
        w, h = model_input_size("qwen2.5-vl", size)
        objects = []
        for _ in range(boxes):
            x1, y1 = rng.randint(0, w - 20), rng.randint(0, h - 20)
            objects.append({"bbox_2d": [x1, y1, rng.randint(x1 + 1, w), rng.randint(y1 + 1, h)], "label": rng.choice(LABELS)})
        body = ",\n".join("\t" + json.dumps(o) for o in objects)
        out.append((f"```json\n[\n{body}\n]\n```", size, (w, h)))
    return out


def main() -> None:
    rng = random.Random(0)
    res: dict = {"answers_per_length": N}
    for boxes in LENGTHS:
        data = answers(rng, boxes)

        def ours():
            return [parse(text, "qwen2.5-vl", size, seen) for text, size, seen in data]

        def theirs():
            return [sv.Detections.from_vlm(sv.VLM.QWEN_2_5_VL, text, input_wh=seen, resolution_wh=size) for text, size, seen in data]

        for a, b in zip(ours(), theirs()):  # same answers, same boxes
            np.testing.assert_allclose(np.array([d.box for d in a.detections]), b.xyxy, rtol=1e-5, atol=1e-3)
        best = {"vlground": float("inf"), "supervision": float("inf")}
        for _ in range(REPEAT):  # interleaved, so both see the same machine load
            for name, fn in (("vlground", ours), ("supervision", theirs)):
                t = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t)
        res[f"{boxes}_boxes"] = {
            "vlground_answers_per_s": round(N / best["vlground"]),
            "supervision_answers_per_s": round(N / best["supervision"]),
            "speedup": round(best["supervision"] / best["vlground"], 2),
        }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
