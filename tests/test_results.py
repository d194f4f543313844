import numpy as np
import pytest

from vlground.core.results import Detection, Result
from vlground.grammar import parse


def test_detection_needs_exactly_one_geometry():
    with pytest.raises(ValueError):
        Detection(label="x")
    with pytest.raises(ValueError):
        Detection(label="x", box=(0, 0, 1, 1), point=(0, 0))


def test_to_supervision_keeps_labels_texts_and_kinds():
    pytest.importorskip("supervision", reason="to_supervision() needs the supervision extra")
    r = parse(
        '[{"bbox_2d": [10, 20, 30, 40], "label": "cat"}, {"point_2d": [5, 6], "label": "dog"}, {"bbox_2d": [1, 2, 3, 4], "text_content": "EXIT"}]',
        "qwen3-vl",
        (1000, 1000),
    )
    sv = r.to_supervision()
    assert len(sv) == 3
    np.testing.assert_allclose(sv.xyxy[0], [10, 20, 30, 40])
    np.testing.assert_allclose(sv.xyxy[1], [5, 6, 5, 6])
    assert list(sv.data["class_name"]) == ["cat", "dog", "text"]
    assert list(sv.data["text"]) == ["", "", "EXIT"]
    assert list(sv.data["kind"]) == ["box", "point", "box"]
    assert sv.class_id[0] != sv.class_id[1]


def test_empty_result_to_supervision():
    pytest.importorskip("supervision", reason="to_supervision() needs the supervision extra")
    assert len(Result(detections=[], text="", image_size=(10, 10)).to_supervision()) == 0


def test_to_coco_uses_xywh_and_refuses_unknown_labels():
    r = Result(detections=[Detection(label="car", box=(10, 20, 40, 60))], text="", image_size=(100, 100))
    assert r.to_coco(7, {"car": 3}) == [{"image_id": 7, "category_id": 3, "bbox": [10, 20, 30, 40], "score": 1.0}]
    with pytest.raises(KeyError, match="car"):
        r.to_coco(7, {"bus": 1})


def test_to_coco_without_ids_gives_each_class_its_own_category():
    r = Result(
        detections=[
            Detection(label="car", box=(0, 0, 1, 1)),
            Detection(label="bus", box=(0, 0, 2, 2)),
            Detection(label=None, box=(0, 0, 3, 3), text="EXIT"),
            Detection(label="car", box=(0, 0, 4, 4)),
        ],
        text="",
        image_size=(10, 10),
    )
    assert r.coco_categories() == [{"id": 1, "name": "bus"}, {"id": 2, "name": "car"}, {"id": 3, "name": "text"}]
    assert [e["category_id"] for e in r.to_coco(1)] == [2, 1, 3, 2]


def test_dict_round_trip():
    d = Detection(label="sign", quad=((0, 0), (1, 0), (1, 1), (0, 1)), text="STOP", attributes={"a": 1})
    assert Detection.from_dict(d.to_dict()) == d
