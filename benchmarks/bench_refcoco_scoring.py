"""How fast `score_refcoco(..., protocol="qwen-vl")` scores RefCOCO predictions, against a per-sample
loop that does what Qwen-VL's eval_mm/evaluate_grounding.py does for each answer (regex, float
parsing, a float32 torch tensor per box, /999, scaling, torchvision's IoU, `iou.item() >= 0.5`).

Both run in one process on the same synthetic answers, and must agree on every hit.

    python benchmarks/bench_refcoco_scoring.py            # 100,000 answers
    python benchmarks/bench_refcoco_scoring.py --n 20000
"""
from __future__ import annotations

import argparse
import random
import re
import time

REFERENCE_PATTERN = re.compile(r"\((.*?)\),\((.*?)\)")


def reference_ious(answers: list[str], gt_boxes: list[list[float]], sizes: list[tuple[int, int]]) -> list[float]:
    """The reference's per-sample logic, one answer at a time: IoU as the float it compares with 0.5
    (NaN where its 0/0 gives NaN). `sizes` are (width, height)."""
    import torch
    from torchvision.ops import box_area

    out = []
    for answer, gt, (width, height) in zip(answers, gt_boxes, sizes):
        found = REFERENCE_PATTERN.findall(answer)
        try:
            first, second = found[0]
            if "," not in first or "," not in second:
                corners = (0.0, 0.0, 0.0, 0.0)
            else:
                x1, y1 = [float(v) for v in first.split(",")]
                x2, y2 = [float(v) for v in second.split(",")]
                corners = (x1, y1, x2, y2)
        except (IndexError, ValueError):
            corners = (0.0, 0.0, 0.0, 0.0)
        target = torch.tensor(gt, dtype=torch.float32).view(-1, 4)
        pred = torch.tensor(corners, dtype=torch.float32).view(-1, 4) / 999
        pred[:, 0::2] *= width
        pred[:, 1::2] *= height
        inter_lt = torch.max(pred[:, None, :2], target[:, :2])
        inter_rb = torch.min(pred[:, None, 2:], target[:, 2:])
        inter_wh = (inter_rb - inter_lt).clamp(min=0)
        inter = inter_wh[:, :, 0] * inter_wh[:, :, 1]
        union = box_area(pred)[:, None] + box_area(target) - inter
        out.append((inter / union).item())
    return out


def synthetic(n: int, seed: int = 0):
    """n ground-truth boxes on COCO-sized images and answers like Qwen-VL's: mostly near the truth,
    some far off, some unreadable."""
    from vlground.eval.refcoco_data import RefSample

    rng = random.Random(seed)
    samples, answers = [], []
    for i in range(n):
        width, height = rng.randint(320, 640), rng.randint(240, 640)
        x1, y1 = rng.uniform(0, width * 0.7), rng.uniform(0, height * 0.7)
        x2, y2 = rng.uniform(x1 + 5, width), rng.uniform(y1 + 5, height)
        samples.append(RefSample(id=None, sent=f"thing {i}", box=(x1, y1, x2, y2), width=width, height=height, split="val"))
        kind = rng.random()
        if kind < 0.05:
            answers.append("I cannot see it")
        else:
            jitter = 0.05 if kind < 0.85 else 0.6
            corners = [
                round(min(998, max(0, (v + rng.gauss(0, jitter) * (x2 - x1)) / size * 999)))
                for v, size in ((x1, width), (y1, height), (x2, width), (y2, height))
            ]
            answers.append(f"thing {i}({corners[0]},{corners[1]}),({corners[2]},{corners[3]})")
    return samples, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()

    from vlground.eval.refcoco import score_refcoco

    warm_samples, warm_answers = synthetic(100, seed=1)  # imports (torch, pyarrow) stay out of the timings
    reference_ious(warm_answers, [list(s.box) for s in warm_samples], [(s.width, s.height) for s in warm_samples])
    score_refcoco(warm_samples, [{"text": a} for a in warm_answers], "qwen-vl")

    samples, answers = synthetic(args.n)
    gt_boxes = [list(s.box) for s in samples]
    sizes = [(s.width, s.height) for s in samples]
    records = [{"text": a} for a in answers]

    start = time.perf_counter()
    reference = reference_ious(answers, gt_boxes, sizes)
    reference_s = time.perf_counter() - start

    start = time.perf_counter()
    scores = score_refcoco(samples, records, "qwen-vl")
    vectorized_s = time.perf_counter() - start

    reference_hits = [v >= 0.5 for v in reference]
    disagreements = sum(a != bool(b) for a, b in zip(reference_hits, scores.hits))
    print(f"{args.n} answers, accuracy {sum(reference_hits) / args.n:.4f} (reference) "
          f"{scores.summary()['accuracy']:.4f} (vlground), {disagreements} samples disagree")
    print(f"reference per-sample loop: {reference_s:.2f} s = {args.n / reference_s:,.0f} samples/s")
    print(f"vlground score_refcoco:    {vectorized_s:.2f} s = {args.n / vectorized_s:,.0f} samples/s")
    print(f"speed-up: {reference_s / vectorized_s:.1f}x")
    if disagreements:
        raise SystemExit("the vectorized scores differ from the reference loop")


if __name__ == "__main__":
    main()
