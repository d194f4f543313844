"""Synthetic screens (vlground.testing.screens): the truth is where the pixels are. Every element is
drawn inside its box and nothing is drawn outside the boxes, so a click inside a box is on the
element; the same seed gives the same screen."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vlground.eval.screenspot import load_screenspot
from vlground.testing.screens import KINDS, make_screen, make_screenspot_dataset


@pytest.mark.parametrize("seed", range(12))
def test_every_element_is_drawn_inside_its_box_and_nothing_outside(seed):
    screen = make_screen(seed, count=5)
    pixels = np.asarray(screen.image).astype(int)
    background = pixels[0, 0]
    drawn = (pixels != background).any(axis=2)
    inside = np.zeros_like(drawn)
    width, height = screen.image.size
    for element in screen.elements:
        x1, y1, x2, y2 = element.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        box = drawn[y1:y2 + 1, x1:x2 + 1]  # Pillow's rectangles include their last row and column
        assert box.mean() > 0.1, (element, box.mean())  # the element is there, not a blank box
        assert inside[y1:y2 + 1, x1:x2 + 1].sum() == 0  # no two elements share a pixel
        inside[y1:y2 + 1, x1:x2 + 1] = True
    assert not (drawn & ~inside).any()


def test_the_same_seed_gives_the_same_screen_and_labels_are_unique_per_screen():
    a, b, c = make_screen(7), make_screen(7), make_screen(8)
    assert a.elements == b.elements and a.image.tobytes() == b.image.tobytes()
    assert a.elements != c.elements
    for seed in range(20):
        labels = [e.label for e in make_screen(seed, count=6).elements]
        assert len(labels) == len(set(labels)) and len(labels) >= 4
    kinds = {e.kind for seed in range(20) for e in make_screen(seed).elements}
    assert kinds == set(KINDS)


def test_a_window_too_small_holds_fewer_elements_rather_than_overlapping_ones():
    screen = make_screen(0, size=(120, 60), count=6)
    assert 0 < len(screen.elements) < 6
    assert all(e.box[2] <= 120 and e.box[3] <= 60 for e in screen.elements)


def test_the_dataset_is_screenspot_pro_ground_truth_that_eval_reads(tmp_path):
    path = make_screenspot_dataset(tmp_path, screens=3, elements=3, seed=1)
    records = json.loads(path.read_text())
    screens = [make_screen(1000 + i, count=3) for i in range(3)]
    assert len(records) == sum(len(s.elements) for s in screens)
    first = screens[0].elements[0]
    assert records[0] == {"id": "screen_00.png#0", "img_filename": "screen_00.png", "bbox": list(first.box),
                          "img_size": list(screens[0].image.size), "instruction": f"the {first.label} {first.kind}",
                          "ui_type": "icon" if first.kind == "icon" else "text", "platform": "synthetic",
                          "application": first.kind, "group": "synthetic"}
    targets = load_screenspot(path)
    assert [(t.image, t.instruction, t.box) for t in targets] == [(r["img_filename"], r["instruction"], tuple(r["bbox"])) for r in records]
    assert all(Image.open(tmp_path / t.image).size == t.image_size for t in targets)
