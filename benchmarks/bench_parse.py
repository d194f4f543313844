"""Parse throughput of vlground against supervision's `Detections.from_vlm`, on the same Qwen2.5-VL
answers in one run, by answer length: 1 box (a referring expression), 3, 10, 20, 40, 63, 100, 200 and
500 boxes (detection lists, up to the endless lists models write), in two layouts of the ```json
fence: "lines", one object per line as Qwen2.5-VL writes it, and "indented", `json.dumps(...,
indent=2)` as models fine-tuned on pretty-printed JSON write it. Both turn each answer into boxes on the
original image; the boxes and labels are checked equal first. vlground also orders corners, clips,
drops exact repeats and checks every value; its Detection objects are made on demand, so its
answers/s are also given with them made (`.detections` read) for comparison.

    python benchmarks/bench_parse.py     # about BOXES=20000 boxes per length, best of REPEAT=5
    LAYOUTS=indented python benchmarks/bench_parse.py
Prints one JSON line: answers/s of each and vlground's speed relative to supervision per layout and
length.
Each answer is timed REPEAT times by each, interleaved, and the best time per answer counts
(robust to the load of a shared machine)."""
from __future__ import annotations

import json
import os
import random
import time

import numpy as np
import supervision as sv

from vlground.core.geometry import model_input_size
from vlground.grammar import parse

BOXES = int(os.environ.get("BOXES", "20000"))
REPEAT = int(os.environ.get("REPEAT", "5"))
LENGTHS = (1, 3, 10, 20, 40, 63, 100, 200, 500)
LAYOUTS = os.environ.get("LAYOUTS", "lines,indented").split(",")
LABELS = ["car", "person", "top right brown cake", "traffic light", "dog", "the red car on the left"]


def answers(rng: random.Random, boxes: int, layout: str) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
    """(answer, original size, model input size) triples of `boxes` objects each, as a
    ```json fenced list in `layout`."""
    out = []
    for _ in range(min(2000, max(40, BOXES // boxes))):
        size = (rng.randint(400, 2000), rng.randint(400, 2000))
        w, h = model_input_size("qwen2.5-vl", size)
        objects = []
        for _ in range(boxes):
            x1, y1 = rng.randint(0, w - 20), rng.randint(0, h - 20)
            objects.append({"bbox_2d": [x1, y1, rng.randint(x1 + 1, w), rng.randint(y1 + 1, h)], "label": rng.choice(LABELS)})
        if layout == "indented":
            body = json.dumps(objects, indent=2)
        else:
            body = "[\n" + ",\n".join("\t" + json.dumps(o) for o in objects) + "\n]"
        out.append((f"```json\n{body}\n```", size, (w, h)))
    return out


def best_times(fns: dict, data: list, repeat: int) -> dict[str, float]:
    """Seconds each of `fns` takes over `data`: per answer the best of `repeat` runs, the runs of
    all functions interleaved answer by answer, so a burst of load on a shared machine falls on
    one run of one answer rather than on one side of the comparison."""
    total = {name: 0.0 for name in fns}
    for answer in data:
        best = {name: float("inf") for name in fns}
        for _ in range(repeat):
            for name, fn in fns.items():
                t = time.perf_counter()
                fn(answer)
                best[name] = min(best[name], time.perf_counter() - t)
        for name in fns:
            total[name] += best[name]
    return total


def main() -> None:
    rng = random.Random(0)
    res: dict = {"boxes_per_length": BOXES, "repeat": REPEAT}
    for layout, boxes in ((layout, boxes) for layout in LAYOUTS for boxes in LENGTHS):
        data = answers(rng, boxes, layout)

        def ours(answer):
            text, size, seen = answer
            return parse(text, "qwen2.5-vl", size, seen)

        def ours_objects(answer):
            return ours(answer).detections

        def theirs(answer):
            text, size, seen = answer
            return sv.Detections.from_vlm(sv.VLM.QWEN_2_5_VL, text, input_wh=seen, resolution_wh=size)

        for answer in data:  # same answers, same boxes and labels
            a, b = ours(answer), theirs(answer)
            np.testing.assert_allclose(a.xyxy, b.xyxy, rtol=1e-5, atol=1e-3)
            assert [d.label for d in a.detections] == list(b.data["class_name"])
        best = best_times({"vlground": ours, "supervision": theirs, "vlground_objects": ours_objects}, data, REPEAT)
        n = len(data)
        res[f"{layout}_{boxes}_boxes"] = {
            "answers": n,
            "vlground_answers_per_s": round(n / best["vlground"]),
            "supervision_answers_per_s": round(n / best["supervision"]),
            "speedup": round(best["supervision"] / best["vlground"], 2),
            "vlground_with_detection_objects_answers_per_s": round(n / best["vlground_objects"]),
        }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
