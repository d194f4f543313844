"""A synthetic referring-expression dataset: one coloured shape per image on noise, at varied sizes and
aspect ratios (so Qwen2.5-VL's resized input differs from the image in both axes), written as RefCOCO
ground truth in Qwen-VL's jsonl layout. Small enough to fine-tune a tiny model on it in CI, exact
enough that a wrong frame anywhere in convert, train, infer or parse shows as a miss."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 70, 220), "yellow": (240, 210, 40)}
SHAPES = ("square", "circle", "triangle", "bar")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], colour) -> None:
    x1, y1, x2, y2 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(x1, y2), (x2, y2), ((x1 + x2) / 2, y1)], fill=colour)
    else:
        draw.rectangle(box, fill=colour)


def make_shapes_dataset(folder: str | Path, count: int = 16, seed: int = 0) -> Path:
    """Write `count` images and `refcoco_shapes.jsonl` (one expression per image, "the red circle",
    each colour-shape pair used once per 16) into `folder`; return the jsonl's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    lines = []
    for index in range(count):
        colour, shape = pairs[index % len(pairs)]
        width, height = int(rng.integers(160, 420)), int(rng.integers(120, 380))
        image = Image.fromarray(rng.integers(90, 150, (height, width, 3), dtype=np.uint8))
        w = int(rng.integers(width // 5, width // 2))
        h = w // 3 if shape == "bar" else int(rng.integers(height // 5, height // 2))
        x1, y1 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        draw_shape(ImageDraw.Draw(image), shape, (x1, y1, x1 + w, y1 + h), COLOURS[colour])
        name = f"shape_{index:02d}.png"
        image.save(folder / name)
        lines.append({"image": name, "sent": f"the {colour} {shape}", "bbox": [x1, y1, x1 + w, y1 + h],
                      "width": width, "height": height, "id": index})
    path = folder / "refcoco_shapes.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path
