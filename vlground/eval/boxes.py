"""Box agreement on whole arrays at once: IoU, centre hits and accuracy at IoU thresholds.

Boxes are (N, 4) arrays of (x1, y1, x2, y2), prediction i against ground truth i, in any one frame.
The arithmetic follows torchvision's `box_iou` step by step (areas as (x2 - x1) * (y2 - y1) without
+1, intersection sides clamped at 0, union = area1 + area2 - intersection) in the dtype of the
inputs, so float32 inputs give the float32 result Qwen-VL's script compares with 0.5, bit for bit."""
from __future__ import annotations

import numpy as np

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of each prediction with its ground truth, in the inputs' dtype. A zero or negative union
    (two empty boxes) and NaN coordinates give 0: such a prediction never counts as a hit."""
    pred = np.asarray(pred)
    gt = np.asarray(gt, dtype=pred.dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        area_pred = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
        area_gt = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
        left_top = np.maximum(pred[:, :2], gt[:, :2])
        right_bottom = np.minimum(pred[:, 2:], gt[:, 2:])
        sides = np.clip(right_bottom - left_top, 0, None)
        inter = sides[:, 0] * sides[:, 1]
        union = area_pred + area_gt - inter
        out = np.zeros_like(inter)
        np.divide(inter, union, out=out, where=union > 0)
    return out


def centre_hit(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """True where the centre of the predicted box lies inside the ground-truth box, edges included
    (lmms-eval's Center_ACC)."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    cx = (pred[:, 0] + pred[:, 2]) / 2
    cy = (pred[:, 1] + pred[:, 3]) / 2
    return (gt[:, 0] <= cx) & (cx <= gt[:, 2]) & (gt[:, 1] <= cy) & (cy <= gt[:, 3])


def accuracy_at(ious: np.ndarray, thresholds: tuple[float, ...] = THRESHOLDS) -> dict[float, float]:
    """Fraction of samples with IoU >= t for each threshold. The IoUs are widened to float64 first,
    as Python's `iou.item() >= 0.5` does in the reference scripts."""
    wide = np.asarray(ious, dtype=np.float64)
    if wide.size == 0:
        return {t: 0.0 for t in thresholds}
    return {t: float(np.mean(wide >= t)) for t in thresholds}
