"""COCO and YOLO datasets written from label records: pycocotools and supervision read back the
boxes vlground parsed, in pixels of the images."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from vlground.core.records import Record, read_records
from vlground.datasets import (
    category_index,
    read_coco,
    read_yolo,
    write_coco,
    write_yolo,
    yolo_names,
)
from vlground.grammar import parse

CATEGORIES = ["car", "person"]
# Qwen3-VL answers (0-1000 frame) for a 400x200 and a 300x300 image: known boxes in pixels.
ANSWERS = {
    "street.jpg": ((400, 200), '[{"bbox_2d": [100, 100, 500, 600], "label": "car"}, '
                               '{"bbox_2d": [600, 0, 900, 1000], "label": "Persons"}, '
                               '{"bbox_2d": [0, 0, 10, 10], "label": "tree"}, {"point_2d": [500, 500], "label": "car"}]'),
    "empty.png": ((300, 300), "There is no car or person here."),
}


@pytest.fixture
def labelled(tmp_path):
    """Records of two real images (one with boxes, one without) and one unreadable file."""
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    records = []
    for name, (size, answer) in ANSWERS.items():
        path = images / ("sub" if name == "empty.png" else "") / name
        Image.new("RGB", size, "gray").save(path)
        records.append(Record.from_result(str(path), parse(answer, "qwen3-vl", size), model="qwen3-vl"))
    records.append(Record.failed(str(images / "broken.jpg"), "cannot identify image file", model="qwen3-vl"))
    return images, records


def test_parsed_boxes_are_the_known_pixels(labelled):
    _, records = labelled
    boxes = [d.box for d in records[0].detections if d.box]
    assert boxes[0] == pytest.approx((40.0, 20.0, 200.0, 120.0))
    assert boxes[1] == pytest.approx((240.0, 0.0, 360.0, 200.0))


def test_category_matching_ignores_case_and_plural():
    assert category_index("Persons", CATEGORIES) == 1
    assert category_index("  CAR ", CATEGORIES) == 0
    assert category_index("bus", CATEGORIES) is None
    assert category_index(None, ["dog"]) == 0 and category_index(None, CATEGORIES) is None


def test_coco_loads_in_pycocotools_with_the_boxes(labelled, tmp_path):
    from pycocotools.coco import COCO

    images, records = labelled
    stats = write_coco(records, tmp_path / "out" / "instances.json", CATEGORIES)
    assert (stats.images, stats.empty, stats.failed, stats.boxes, stats.points) == (2, 1, 1, 2, 1)
    assert stats.other_labels == {"tree": 1} and "'tree' x1" in stats.describe()
    coco = COCO(str(tmp_path / "out" / "instances.json"))
    assert [coco.imgs[i]["file_name"] for i in sorted(coco.imgs)] == ["street.jpg", "sub/empty.png"]
    assert (coco.imgs[1]["width"], coco.imgs[1]["height"]) == (400, 200)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["bbox"] for a in anns] == [pytest.approx([40, 20, 160, 100]), pytest.approx([240, 0, 120, 200])]
    assert [coco.cats[a["category_id"]]["name"] for a in anns] == ["car", "person"]
    assert [a["area"] for a in anns] == [pytest.approx(16000), pytest.approx(24000)]
    assert all(a["iscrowd"] == 0 for a in anns)
    assert coco.getAnnIds(imgIds=[2]) == []  # the image without boxes is kept


def test_coco_reads_back_in_supervision_and_vlground(labelled, tmp_path):
    pytest.importorskip("supervision", reason="reading a dataset back with supervision (the supervision extra)")
    import supervision as sv

    images, records = labelled
    write_coco(records, tmp_path / "instances.json", CATEGORIES)
    dataset = sv.DetectionDataset.from_coco(str(images), str(tmp_path / "instances.json"))
    assert dataset.classes == CATEGORIES
    by_name = {path.rsplit("/", 1)[-1]: det for path, _, det in dataset}
    np.testing.assert_allclose(by_name["street.jpg"].xyxy, [[40, 20, 200, 120], [240, 0, 360, 200]], atol=1e-4)
    assert by_name["street.jpg"].class_id.tolist() == [0, 1]
    assert len(by_name["empty.png"]) == 0
    names, back = read_coco(tmp_path / "instances.json", root=images)
    assert names == CATEGORIES
    assert [d.box for d in back[0].detections] == [pytest.approx(b) for b in ((40, 20, 200, 120), (240, 0, 360, 200))]
    assert back[0].path == str(images / "street.jpg")


def test_yolo_reads_back_in_supervision_and_vlground(labelled, tmp_path):
    pytest.importorskip("supervision", reason="reading a dataset back with supervision (the supervision extra)")
    import supervision as sv

    _, records = labelled
    out = tmp_path / "yolo"
    stats = write_yolo(records, out, CATEGORIES)
    assert stats.boxes == 2
    lines = (out / "labels" / "street.txt").read_text().splitlines()
    assert lines == ["0 0.300000 0.350000 0.400000 0.500000", "1 0.750000 0.500000 0.300000 1.000000"]
    assert (out / "labels" / "empty.txt").read_text() == ""
    dataset = sv.DetectionDataset.from_yolo(str(out / "images"), str(out / "labels"), str(out / "data.yaml"))
    assert dataset.classes == CATEGORIES
    by_name = {path.rsplit("/", 1)[-1]: det for path, _, det in dataset}
    np.testing.assert_allclose(by_name["street.jpg"].xyxy, [[40, 20, 200, 120], [240, 0, 360, 200]], atol=0.01)
    assert len(by_name["empty.png"]) == 0
    names, back = read_yolo(out)
    assert names == CATEGORIES
    street = next(r for r in back if r.path.endswith("street.jpg"))
    assert [d.box for d in street.detections] == [pytest.approx(b, abs=0.01) for b in ((40, 20, 200, 120), (240, 0, 360, 200))]


def test_yolo_rewrite_replaces_the_old_labels(labelled, tmp_path):
    _, records = labelled
    write_yolo(records, tmp_path / "yolo", CATEGORIES)
    write_yolo(records[1:], tmp_path / "yolo", CATEGORIES)
    assert sorted(p.name for p in (tmp_path / "yolo" / "labels").iterdir()) == ["empty.txt"]
    assert not [p for p in (tmp_path / "yolo").iterdir() if p.name.startswith(".")]


def test_yolo_names_never_share_a_label_file():
    names = yolo_names(["/d/a/x.jpg", "/d/b/x.jpg", "/d/b/x.png", "/d/b/y.jpg"])
    assert names == ["a__x_jpg.jpg", "b__x_jpg.jpg", "b__x_png.png", "y.jpg"]


def test_label_records_round_trip_and_skip_a_cut_line(labelled, tmp_path):
    _, records = labelled
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(r.to_json() + "\n" for r in records) + '{"path": "cut', encoding="utf-8")
    back = read_records(path)
    assert [r.to_dict() for r in back] == [r.to_dict() for r in records]
    assert json.loads(records[0].to_json())["detections"][0] == {"label": "car", "box": [40.0, 20.0, 200.0, 120.0]}


def test_coco_category_ids_start_at_1_in_the_order_given():
    from vlground.core.results import Detection
    from vlground.datasets import coco_dataset

    record = Record("a.png", model="m", width=100, height=50, detections=[Detection("person", box=(1, 2, 3, 4)), Detection("car", box=(5, 6, 7, 8))])
    coco, _ = coco_dataset([record], ["car", "person"])
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "car"), (2, "person")]
    assert [a["category_id"] for a in coco["annotations"]] == [2, 1]  # 0 is no category in COCO tools


def test_a_yolo_dataset_that_fails_midway_leaves_no_staging_folder(tmp_path, monkeypatch):
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    record = Record(str(tmp_path / "a.png"), model="m", width=20, height=10)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "symlink", broken)
    with pytest.raises(OSError):
        write_yolo([record], tmp_path / "yolo", ["car"])
    assert [p.name for p in (tmp_path / "yolo").iterdir()] == []
