"""Synthetic screens (vlground.testing.screens): the truth is where the pixels are. Every element is
drawn inside its box and nothing is drawn outside the boxes, so a click inside a box is on the
element; the same seed gives the same screen."""
from __future__ import annotations

import json

import numpy as np
import pytest

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


def test_the_dataset_is_screenspot_ground_truth_with_xywh_boxes(tmp_path):
    path = make_screenspot_dataset(tmp_path, screens=3, elements=3, seed=1)
    records = json.loads(path.read_text())
    assert len(records) == sum(len(make_screen(1000 + i, count=3).elements) for i in range(3))
    first = make_screen(1000, count=3).elements[0]
    x1, y1, x2, y2 = first.box
    assert records[0] == {"img_filename": "screen_00.png", "bbox": [x1, y1, x2 - x1, y2 - y1],
                          "instruction": f"the {first.label} {first.kind}",
                          "data_type": "icon" if first.kind == "icon" else "text", "data_source": "synthetic"}
    assert all((tmp_path / r["img_filename"]).is_file() for r in records)
