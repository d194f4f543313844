"""RefCOCO ground truth in its three published formats, built small in each test."""
from __future__ import annotations

import io
import json
import pickle

import pytest
from PIL import Image

from vlground.eval.errors import GroundTruthError
from vlground.eval.refcoco_data import load_refcoco


def write_refer(folder, refs, dataset="refcoco", split_by="unc"):
    data = folder / dataset
    data.mkdir(parents=True)
    (data / f"refs({split_by}).p").write_bytes(pickle.dumps(refs, protocol=2))
    instances = {
        "images": [{"id": 7, "file_name": "COCO_train2014_000000000007.jpg", "width": 640, "height": 480}],
        "annotations": [{"id": 70, "image_id": 7, "bbox": [10.5, 20.0, 100.0, 50.25], "category_id": 1},
                        {"id": 71, "image_id": 7, "bbox": [0, 0, 5, 5], "category_id": 1}],
        "categories": [{"id": 1, "name": "person"}],
    }
    (data / "instances.json").write_text(json.dumps(instances))
    return data


REFS = [
    {"ref_id": 1, "ann_id": 70, "image_id": 7, "split": "testA", "file_name": "COCO_train2014_000000000007_70.jpg",
     "sentences": [{"sent_id": 11, "sent": "man on left", "raw": "Man on left"}, {"sent_id": 12, "sent": "left guy", "raw": "left guy"}]},
    {"ref_id": 2, "ann_id": 71, "image_id": 7, "split": "train", "file_name": "x", "sentences": [{"sent_id": 13, "sent": "tiny", "raw": "tiny"}]},
    {"ref_id": 3, "ann_id": 71, "image_id": 7, "split": "val", "file_name": "x", "sentences": [{"sent_id": 14, "sent": "corner", "raw": "corner"}]},
]


def test_qwen_vl_jsonl_keeps_xyxy_boxes_and_takes_the_split_from_the_file_name(tmp_path):
    path = tmp_path / "refcoco_testA.jsonl"
    path.write_text(
        '{"image": "coco/a.jpg", "sent": "man", "bbox": [1, 2, 30, 40], "width": 640, "height": 480}\n\n'
        '{"image": "coco/b.jpg", "sent": "dog", "bbox": [5, 6, 7, 8], "width": 320, "height": 200, "split": "val"}\n'
    )
    samples = load_refcoco(path)
    assert [(s.sent, s.box, s.width, s.height, s.split, s.id) for s in samples] == [
        ("man", (1.0, 2.0, 30.0, 40.0), 640, 480, "refcoco_testA", None),
        ("dog", (5.0, 6.0, 7.0, 8.0), 320, 200, "val", None),
    ]
    assert [s.sent for s in load_refcoco(path, split="val")] == ["dog"]


def test_jsonl_line_without_a_box_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "gt.jsonl"
    path.write_text('{"image": "a.jpg", "sent": "man", "bbox": [1, 2, 3, 4], "width": 6, "height": 6}\n{"image": "b.jpg", "sent": "x"}\n')
    with pytest.raises(GroundTruthError, match=r"gt.jsonl:2: .*bbox"):
        load_refcoco(path)


def test_refer_pickle_converts_coco_xywh_and_skips_train_by_default(tmp_path):
    data = write_refer(tmp_path, REFS)
    samples = load_refcoco(tmp_path, dataset="refcoco")
    assert [(s.id, s.sent, s.split) for s in samples] == [("11", "man on left", "testA"), ("12", "left guy", "testA"), ("14", "corner", "val")]
    assert samples[0].box == (10.5, 20.0, 110.5, 70.25)
    assert (samples[0].width, samples[0].height, samples[0].image) == (640, 480, "COCO_train2014_000000000007.jpg")
    assert [s.id for s in load_refcoco(data / "refs(unc).p", split="train")] == ["13"]


def test_refer_pickle_that_holds_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    write_refer(tmp_path, [Payload()])
    with pytest.raises(GroundTruthError, match="plain data"):
        load_refcoco(tmp_path, dataset="refcoco")


def test_refer_folder_without_dataset_or_files_says_what_is_missing(tmp_path):
    with pytest.raises(GroundTruthError, match="no such file"):
        load_refcoco(tmp_path, dataset="refcocog")


def png_bytes(width, height):
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, format="PNG")
    return buffer.getvalue()


def write_lmms_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "question_id": pa.array([r["question_id"] for r in rows], pa.string()),
            "image": pa.array([{"bytes": r["image"], "path": None} for r in rows], image_type),
            "question": pa.array(["Please carefully observe the area circled in the image"] * len(rows), pa.string()),
            "answer": pa.array([r["answer"] for r in rows], pa.list_(pa.string())),
            "segmentation": pa.array([[0.0, 0.0, 1.0, 1.0]] * len(rows), pa.list_(pa.float32())),
            "bbox": pa.array([r["bbox"] for r in rows], pa.list_(pa.float32())),
            "iscrowd": pa.array([0] * len(rows), pa.int8()),
            "file_name": pa.array([r["file_name"] for r in rows], pa.string()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_lmms_parquet_explodes_sentences_and_reads_image_sizes(tmp_path):
    pytest.importorskip("pyarrow", reason="parquet ground truth needs the arrow extra")
    rows = [
        {"question_id": "100", "image": png_bytes(64, 48), "answer": ["red car", "car on left"], "bbox": [1.5, 2.0, 10.0, 20.0], "file_name": "a.jpg"},
        {"question_id": "101", "image": png_bytes(32, 16), "answer": ["sky"], "bbox": [0, 0, 32, 8], "file_name": "b.jpg"},
    ]
    write_lmms_parquet(tmp_path / "data" / "val-00000-of-00001.parquet", rows)
    write_lmms_parquet(tmp_path / "data" / "testB-00000-of-00001.parquet", rows[1:])
    samples = load_refcoco(tmp_path / "data", split="val")
    assert [(s.id, s.sent, s.box, s.width, s.height, s.split) for s in samples] == [
        ("100#0", "red car", (1.5, 2.0, 11.5, 22.0), 64, 48, "val"),
        ("100#1", "car on left", (1.5, 2.0, 11.5, 22.0), 64, 48, "val"),
        ("101#0", "sky", (0.0, 0.0, 32.0, 8.0), 32, 16, "val"),
    ]
    assert all(s.image_bytes is None for s in samples)
    everything = load_refcoco(tmp_path / "data", keep_images=True)
    assert sorted({s.split for s in everything}) == ["testB", "val"]
    assert everything[0].image_bytes is not None


def test_parquet_with_other_columns_is_an_error(tmp_path):
    pytest.importorskip("pyarrow", reason="parquet ground truth needs the arrow extra")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), tmp_path / "val-00000-of-00001.parquet")
    with pytest.raises(GroundTruthError, match="question_id, image, answer, bbox"):
        load_refcoco(tmp_path / "val-00000-of-00001.parquet")
