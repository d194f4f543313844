"""`vlground convert`: every family and target round-trips through `vlground.parse` to the source's
boxes within the frame's rounding; every source format is read; bad input is counted, never dropped
silently; the CLI fails in one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlground.core.families import FAMILIES, get_family
from vlground.core.geometry import Frame
from vlground.grammar import parse
from vlground.prompts import build_prompt
from vlground.training.convert import TARGETS, ConvertError, convert, read_metadata, read_records, record_turns

# (width, height) of each image and its objects in pixels; aspect ratios vary so Qwen2.5-VL's input
# differs from the image in both axes and from one image to the next
IMAGES = {
    "wide.png": ((1000, 333), [("red car", (100.5, 40.2, 420.7, 300.9)), ("tree", (600, 10, 990, 330)), ("red car", (5, 5, 50, 60))]),
    "tall.png": ((211, 697), [("lamp", (20, 100, 200, 680.4))]),
    "small.png": ((97, 61), [("tree", (3.3, 4.4, 90.1, 58.8))]),
}


def _write_images(root: Path) -> None:
    rng = np.random.default_rng(0)
    for name, ((w, h), _) in IMAGES.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name)


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    """A COCO instances file with the images beside it."""
    root = tmp_path_factory.mktemp("coco")
    _write_images(root)
    names = sorted({label for _, objects in IMAGES.values() for label, _ in objects})
    images, annotations = [], []
    for image_id, (name, ((w, h), objects)) in enumerate(IMAGES.items(), 1):
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for label, (x1, y1, x2, y2) in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": names.index(label) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1]})
    coco = {"images": images, "annotations": annotations, "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    (root / "instances.json").write_text(json.dumps(coco))
    return root / "instances.json"


def _expected(task: str) -> list[tuple[str, list[tuple[str, tuple]]]]:
    """(image, [(label, box)]) of each record convert should write, in order."""
    out = []
    for name, (_, objects) in IMAGES.items():
        if task == "detect":
            labels = list(dict.fromkeys(label for label, _ in objects))
            out.append((name, [(label, box) for want in labels for label, box in objects if label == want]))
        else:
            for want in dict.fromkeys(label for label, _ in objects):
                out.append((name, [(label, box) for label, box in objects if label == want]))
    return out


def _read_back(record: dict, family, task: str, fields_label: str, min_pixels=None, max_pixels=None):
    """The detections vlground.parse reads from a converted record, and the frame they were read in."""
    image, words, answer, _ = record_turns(record)
    size = Image.open(image).size
    if not family.chat:  # a base model's prompt wrote the start of the answer
        answer = build_prompt(task, family, phrase=fields_label).response_prefix + answer
    frame = Frame.for_family(family, size, min_pixels=min_pixels, max_pixels=max_pixels)
    result = parse(answer, family, size, min_pixels=min_pixels, max_pixels=max_pixels)
    return image, words, result, frame


def _assert_boxes(result, frame: Frame, expected: list[tuple[str, tuple]]) -> None:
    """Each box within one unit of the frame (the rounding of the integers the model writes)."""
    assert len(result.detections) == len(expected)
    unit = max(frame.sx, frame.sy) + 1e-9
    for detection, (label, box) in zip(result.detections, expected):
        assert detection.label == label
        assert np.allclose(detection.box, box, atol=unit), (detection.box, box, unit)


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_ground_records_of_every_family_and_target_parse_back_to_the_source_boxes(coco, tmp_path, family, target):
    fam = get_family(family)
    done = convert(coco, source_format="coco", target=target, family=family, task="ground", out=tmp_path / "train.jsonl")
    records = read_records(done.out)
    expected = _expected("ground")
    assert len(records) == len(expected) == done.summary.records
    for record, (name, objects) in zip(records, expected):
        image, words, result, frame = _read_back(record, fam, "ground", objects[0][0])
        assert Path(image) == coco.parent / name
        assert objects[0][0] in words and "<image>" not in words
        _assert_boxes(result, frame, objects)
    assert read_metadata(done.out)["family"] == family


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("family", sorted(f for f in FAMILIES if FAMILIES[f].chat))
def test_detect_records_of_every_chat_family_and_target_parse_back(coco, tmp_path, family, target):
    fam = get_family(family)
    done = convert(coco, source_format="coco", target=target, family=family, task="detect", out=tmp_path / "train.json")
    records = read_records(done.out)
    assert isinstance(json.loads(done.out.read_text()), list)  # .json: one array
    for record, (name, objects) in zip(records, _expected("detect"), strict=True):
        image, words, result, frame = _read_back(record, fam, "detect", "")
        assert all(label in words for label, _ in objects)
        _assert_boxes(result, frame, objects)


def test_qwen2_5_vl_answers_follow_the_processor_settings(coco, tmp_path):
    """Pixels of the resized input: other max_pixels, other numbers; read with the settings trained
    for they are right, read with the released ones they are wrong by the resize ratio."""
    low = {"min_pixels": 3136, "max_pixels": 64 * 28 * 28}
    default = convert(coco, source_format="coco", target="qwen", family="qwen2.5-vl", task="ground", out=tmp_path / "a.jsonl")
    small = convert(coco, source_format="coco", target="qwen", family="qwen2.5-vl", task="ground", out=tmp_path / "b.jsonl", **low)
    first_default, first_small = read_records(default.out)[0], read_records(small.out)[0]
    assert record_turns(first_default)[2] != record_turns(first_small)[2]
    assert read_metadata(small.out)["max_pixels"] == low["max_pixels"]
    fam = get_family("qwen2.5-vl")
    name, objects = _expected("ground")[0]
    _, _, result, frame = _read_back(first_small, fam, "ground", objects[0][0], **low)
    _assert_boxes(result, frame, objects)
    _, _, wrong, _ = _read_back(first_small, fam, "ground", objects[0][0])
    assert not np.allclose(wrong.detections[0].box, objects[0][1], atol=5)


def test_the_target_layouts(coco, tmp_path):
    records = {t: read_records(convert(coco, source_format="coco", target=t, family="qwen2.5-vl", task="ground",
                                       out=tmp_path / f"{t}.jsonl").out)[0] for t in TARGETS}
    image = str(coco.parent / "wide.png")
    prompt = "Locate red car in this image and output the bbox coordinates in JSON format."
    answer = records["qwen"]["conversations"][1]["value"]
    assert answer.startswith("```json\n[") and '"label": "red car"' in answer
    assert records["qwen"] == {"image": image, "conversations": [
        {"from": "human", "value": f"<image>\n{prompt}"}, {"from": "gpt", "value": answer}]}
    for target in ("swift", "llamafactory"):
        assert records[target] == {"messages": [{"role": "user", "content": f"<image>{prompt}"},
                                                {"role": "assistant", "content": answer}], "images": [image]}
    assert records["trl"] == {"messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]}], "images": [image]}


def test_refcoco_gives_one_record_per_expression(coco, tmp_path):
    lines = [{"image": "wide.png", "sent": "the car on the left", "bbox": [5, 5, 50, 60], "width": 1000, "height": 333},
             {"image": "wide.png", "sent": "the big tree", "bbox": [600, 10, 990, 330], "width": 1000, "height": 333},
             {"image": "tall.png", "sent": "a lamp", "bbox": "20 100 200 680", "width": 211, "height": 697}]  # a string box
    gt = coco.parent / "refcoco_val.jsonl"
    gt.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = convert(gt, source_format="refcoco", target="trl", family="qwen3-vl", task="ground", out=tmp_path / "r.jsonl")
    records = read_records(done.out)
    assert done.summary.records == 2 and len(done.summary.invalid_inputs) == 1
    assert "bbox" in done.summary.invalid_inputs[0]
    for record, line in zip(records, lines):
        _, words, result, frame = _read_back(record, get_family("qwen3-vl"), "ground", line["sent"])
        assert line["sent"] in words
        _assert_boxes(result, frame, [(line["sent"], tuple(line["bbox"]))])


def test_lmms_parquet_images_are_written_beside_the_output(tmp_path):
    pytest.importorskip("pyarrow", reason="parquet ground truth needs the arrow extra")
    from test_eval_refcoco_data import png_bytes, write_lmms_parquet

    rows = [{"question_id": "7", "image": png_bytes(64, 48), "answer": ["red car", "the car"], "bbox": [1.5, 2.0, 10.0, 20.0],
             "file_name": "../a.jpg"}]
    write_lmms_parquet(tmp_path / "data" / "val-00000-of-00001.parquet", rows)
    done = convert(tmp_path / "data", source_format="refcoco", target="swift", family="qwen2.5-vl", task="ground",
                   out=tmp_path / "out" / "train.jsonl")
    records = read_records(done.out)
    assert len(records) == 2
    for record, sent in zip(records, ["red car", "the car"]):
        image, words, result, frame = _read_back(record, get_family("qwen2.5-vl"), "ground", sent)
        assert Path(image) == tmp_path / "out" / "train_images" / "val" / "a.jpg"  # a name cannot leave the folder
        _assert_boxes(result, frame, [(sent, (1.5, 2.0, 11.5, 22.0))])


def test_yolo_folders_are_read_with_their_subfolders(tmp_path):
    folder = tmp_path / "yolo"
    (folder / "images" / "train").mkdir(parents=True)
    (folder / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (400, 100)).save(folder / "images" / "train" / "a.jpg")
    Image.new("RGB", (50, 80)).save(folder / "images" / "train" / "b.png")  # no label file: no objects
    (folder / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.5 0.2\n0 0.1 0.1 0.1 0.1\nnot a line\n7 0.5 0.5 0.1 0.1\n")
    (folder / "data.yaml").write_text("names: {0: cat, 1: dog}\n")
    done = convert(folder, source_format="yolo", target="swift", family="qwen2-vl", task="detect", out=tmp_path / "y.jsonl")
    [record] = read_records(done.out)
    _, words, result, frame = _read_back(record, get_family("qwen2-vl"), "detect", "")
    assert "dog, cat" in words
    _assert_boxes(result, frame, [("dog", (100, 40, 300, 60)), ("cat", (20, 5, 60, 15))])
    assert done.summary.empty_images == 1 and len(done.summary.invalid_inputs) == 2


def _label_records(root: Path) -> Path:
    records = [
        {"path": str(root / "small.png"), "model": "m", "width": 97, "height": 61, "text": "",
         "detections": [{"label": None, "quad": [[3, 4], [90, 4], [90, 20], [3, 20]], "text": "OPEN 24 H"},
                        {"label": "tree", "box": [10, 30, 50, 58]}]},
        {"path": str(root / "gone.png"), "model": "m", "width": 10, "height": 10, "detections": []},
        {"path": str(root / "broken.png"), "model": "m", "error": "cannot identify image file"},
    ]
    path = root / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen-vl-chat", "qwen2-vl"])
def test_label_records_convert_for_spotting_with_the_text_of_each_line(coco, tmp_path, family):
    done = convert(_label_records(coco.parent), source_format="vlground", target="qwen", family=family, task="spot",
                   out=tmp_path / "s.jsonl")
    [record] = read_records(done.out)
    _, _, result, frame = _read_back(record, get_family(family), "spot_text", "")
    [line] = result.detections
    assert (line.text or line.label) == "OPEN 24 H"
    assert np.allclose(np.ravel(line.quad if line.quad is not None else line.box),
                       np.ravel([[3, 4], [90, 4], [90, 20], [3, 20]] if line.quad is not None else [3, 4, 90, 20]),
                       atol=max(frame.sx, frame.sy) + 1e-9)
    summary = done.summary
    assert summary.without_text == 1  # the tree has no text
    assert sorted(s.split(":")[0] for s in summary.skipped_images) == [str(coco.parent / "broken.png"), str(coco.parent / "gone.png")]


def test_bad_boxes_and_missing_images_are_counted_and_listed(tmp_path):
    Image.new("RGB", (100, 50)).save(tmp_path / "a.png")
    Image.new("RGB", (60, 60)).save(tmp_path / "rotated_in_gt.png")
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 50},
                       {"id": 2, "file_name": "missing.png", "width": 10, "height": 10},
                       {"id": 3, "file_name": "rotated_in_gt.png", "width": 60, "height": 30},
                       {"id": 4, "file_name": "a.png", "width": 100, "height": 50}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [80, 10, 40, 60]},   # past the edge
                            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [120, 10, 5, 5]},   # wholly outside
                            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 5]},    # no width
                            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2]},
                            {"id": 5, "image_id": 3, "category_id": 1, "bbox": [1, 1, 2, 2]}],
            "categories": [{"id": 1, "name": "box"}]}
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    done = convert(tmp_path / "gt.json", source_format="coco", target="qwen", family="qwen3-vl", task="detect",
                   out=tmp_path / "o.jsonl")
    summary = done.summary
    assert (summary.items, summary.records, summary.boxes) == (4, 1, 1)
    assert (summary.clipped_boxes, summary.dropped_boxes, summary.empty_images) == (1, 2, 1)
    assert [s.split(":")[0] for s in summary.skipped_images] == [str(tmp_path / "missing.png"), str(tmp_path / "rotated_in_gt.png")]
    assert "60x30 but the image is 60x60" in summary.skipped_images[1]
    text = summary.describe()
    for words in ("1 records from 4 source items", "1 boxes past the image edge clipped", "2 empty or invalid boxes left out",
                  "1 images without objects", "2 images skipped", "missing.png"):
        assert words in text
    [record] = read_records(done.out)
    _, _, result, frame = _read_back(record, get_family("qwen3-vl"), "detect", "")
    _assert_boxes(result, frame, [("box", (80, 10, 100, 50))])
    assert read_metadata(done.out)["summary"]["clipped_boxes"] == 1


@pytest.mark.parametrize("kwargs,message", [
    ({"source_format": "refcoco", "task": "detect"}, "use --task ground"),
    ({"source_format": "coco", "task": "spot"}, "needs the text of each line"),
    ({"source_format": "coco", "family": "qwen-vl", "min_pixels": 3136}, "squashes every image"),
    ({"source_format": "coco", "family": "qwen-vl", "task": "detect"}, "use a chat family"),
    ({"source_format": "pascal"}, "unknown source format 'pascal'"),
    ({"source_format": "coco", "target": "axolotl"}, "unknown target 'axolotl'"),
    ({"source_format": "coco", "min_pixels": 10**7, "max_pixels": 10**6}, "min_pixels <= max_pixels"),
])
def test_conversions_that_cannot_run_say_why(coco, tmp_path, kwargs, message):
    options = {"target": "qwen", "family": "qwen2.5-vl", "task": "ground", **kwargs}
    with pytest.raises(ConvertError, match=message):
        convert(coco, out=tmp_path / "o.jsonl", **options)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlground.cli.main", "convert", *args], capture_output=True, text=True)


def test_the_command_writes_records_and_a_summary_and_fails_in_one_line(coco, tmp_path):
    out = tmp_path / "train.jsonl"
    done = _cli(str(coco), "--from", "coco", "--to", "llamafactory", "-f", "Qwen/Qwen2.5-VL-7B-Instruct", "--task", "detect",
                "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "3 records from 3 source items, 5 boxes" in done.stderr
    assert len(read_records(out)) == 3 and read_metadata(out)["family"] == "qwen2.5-vl"
    for args, words in [
        ((str(coco), "--from", "refcoco", "--to", "qwen", "-f", "qwen3-vl", "--task", "spot"), "use --task ground"),
        ((str(tmp_path / "none.json"), "--from", "coco", "--to", "qwen", "-f", "qwen3-vl"), "no such file"),
        ((str(coco), "--from", "coco", "--to", "qwen", "-f", "llava"), "unknown model family"),
    ]:
        failed = _cli(*args, "--out", str(tmp_path / "x.jsonl"))
        assert failed.returncode == 2
        assert len(failed.stderr.strip().splitlines()) == 1 and words in failed.stderr, failed.stderr


# ---- training data must not be silently wrong (issue 24) -------------------------------------------


def _coco_file(root: Path, annotations: list[dict], images=None, categories=None) -> Path:
    Image.new("RGB", (100, 50)).save(root / "a.png")
    coco = {"images": images or [{"id": 1, "file_name": "a.png", "width": 100, "height": 50}],
            "annotations": annotations, "categories": categories or [{"id": 1, "name": "box"}]}
    (root / "gt.json").write_text(json.dumps(coco))
    return root / "gt.json"


def _convert(source: Path, source_format: str, tmp_path: Path, family="qwen3-vl", task="detect", **kwargs):
    return convert(source, source_format=source_format, target="qwen", family=family, task=task,
                   out=tmp_path / "out.jsonl", **kwargs)


def test_coordinates_that_are_not_numbers_are_refused_naming_file_record_and_field(tmp_path):
    gt = _coco_file(tmp_path, [{"id": 7, "image_id": 1, "category_id": 1, "bbox": ["10", "20", "30", "40"]},
                               {"id": 8, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}])
    summary = _convert(gt, "coco", tmp_path).summary
    assert summary.boxes == 1 and len(summary.invalid_inputs) == 1, summary.describe()
    assert f"{gt}: annotation 7: 'bbox'" in summary.invalid_inputs[0], summary.invalid_inputs
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"path": str(tmp_path / "a.png"), "model": "m", "width": 100, "height": 50,
                                  "detections": [{"label": "box", "box": "1234"}, {"label": "box", "box": [1, 2, 30, 40]}]}) + "\n")
    summary = _convert(labels, "vlground", tmp_path).summary
    assert summary.boxes == 1 and len(summary.invalid_inputs) == 1, summary.describe()
    assert f"{labels}:1: detection 1: 'box'" in summary.invalid_inputs[0], summary.invalid_inputs
    assert "1 invalid source items left out" in summary.describe() and "'box'" in summary.describe()  # named, not only counted


def test_two_coco_images_with_one_id_are_refused(tmp_path):
    gt = _coco_file(tmp_path, [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
                    images=[{"id": 1, "file_name": "a.png", "width": 100, "height": 50},
                            {"id": 1, "file_name": "b.png", "width": 100, "height": 50}])
    with pytest.raises(ConvertError, match="image id 1 .*twice"):
        _convert(gt, "coco", tmp_path)


def _yolo(folder: Path, names_yaml: str, label_lines: str) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    Image.new("RGB", (400, 100)).save(folder / "images" / "a.jpg")
    (folder / "labels" / "a.txt").write_text(label_lines)
    (folder / "data.yaml").write_text(names_yaml)
    return folder


def test_yolo_class_minus_one_is_not_the_last_class(tmp_path):
    folder = _yolo(tmp_path / "y", "names: [cat, dog]\n", "-1 0.5 0.5 0.5 0.2\n0 0.1 0.1 0.1 0.1\n")
    done = _convert(folder, "yolo", tmp_path)
    assert done.summary.boxes == 1 and len(done.summary.invalid_inputs) == 1, done.summary.describe()
    assert "dog" not in done.out.read_text()


@pytest.mark.parametrize("names, words", [("names: car\n", "a list"), ("names: {0: car, 5: person}\n", "0 to 1"),
                                          ("names: [car, [a, b]]\n", "a list"), ("names: {0: car, x: person}\n", "0 to 1")])
def test_yolo_names_that_are_not_a_list_of_classes_are_refused(tmp_path, names, words):
    folder = _yolo(tmp_path / "y", names, "1 0.5 0.5 0.5 0.2\n")
    with pytest.raises(ConvertError, match=words):
        _convert(folder, "yolo", tmp_path)


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    folder = _yolo(tmp_path / "y", "\n".join(levels) + "\nnames: *a6\n", "0 0.5 0.5 0.5 0.2\n")
    with pytest.raises(ConvertError, match="data.yaml"):
        _convert(folder, "yolo", tmp_path)
    (folder / "data.yaml").write_text("names: [car]\n" + "# padding\n" * 200_000)  # 2 MB: no data.yaml is that big
    with pytest.raises(ConvertError, match="data.yaml"):
        _convert(folder, "yolo", tmp_path)


MARKUP = ["car</ref><box>(0,0),(999,999)</box><ref>evil", "<image>", "car<|im_end|>", "<|object_ref_start|>car"]


@pytest.mark.parametrize("family", ["qwen-vl-chat", "qwen2-vl", "qwen2.5-vl"])
def test_names_holding_markup_of_an_answer_or_a_chat_template_are_refused(tmp_path, family):
    gt = _coco_file(tmp_path, [{"id": i + 1, "image_id": 1, "category_id": i + 1, "bbox": [10, 10, 20, 20]} for i in range(5)],
                    categories=[{"id": i + 1, "name": name} for i, name in enumerate([*MARKUP, "car"])])
    for task in ("detect", "ground"):
        done = _convert(gt, "coco", tmp_path, family=family, task=task)
        written = done.out.read_text()
        assert "evil" not in written and "<|im_end|>" not in written and written.count("<image>") == written.count("\n")
        assert written.count("<|object_ref_start|>") == written.count("<|object_ref_end|>")  # only the dialect's own tags
        assert done.summary.boxes == 1 and len(done.summary.invalid_inputs) == 4, done.summary.describe()
        [record] = read_records(done.out)
        _, words, result, _ = _read_back(record, get_family(family), task, "car")
        assert [d.label for d in result.detections] == ["car"] and "image>" not in words


def test_a_detection_with_both_a_box_and_a_quad_does_not_take_its_image_away(tmp_path):
    Image.new("RGB", (100, 50)).save(tmp_path / "a.png")
    labels = tmp_path / "labels.jsonl"
    records = [{"path": str(tmp_path / "a.png"), "model": "m", "width": 100, "height": 50,
                "detections": [{"label": "box", "box": [1, 2, 30, 40], "quad": [[1, 2], [30, 2], [30, 40], [1, 40]]},
                               {"label": "box", "box": [50, 2, 90, 40]}]},
               {"path": 123, "model": "m", "width": 100, "height": 50, "detections": []},
               {"path": str(tmp_path / "a.png"), "model": "m", "width": 100, "height": "50", "detections": []}]
    labels.write_text("".join(json.dumps(r) + "\n" for r in records) + "[" * 200_000 + "\n")
    summary = _convert(labels, "vlground", tmp_path).summary
    assert (summary.records, summary.boxes) == (1, 1), summary.describe()
    problems = "\n".join(summary.invalid_inputs)
    for words in (f"{labels}:1: detection 1:", f"{labels}:2: 'path'", f"{labels}:3: 'height'", f"{labels}:4: not a JSON record"):
        assert words in problems, problems


def test_deep_json_is_one_error_not_a_recursion_error(tmp_path):
    (tmp_path / "gt.json").write_text("[" * 200_000)
    with pytest.raises(ConvertError, match="nested too deeply"):
        _convert(tmp_path / "gt.json", "coco", tmp_path)


def test_an_image_name_that_is_not_utf8_is_skipped_and_named(tmp_path):
    import os

    folder = _yolo(tmp_path / "y", "names: [cat]\n", "0 0.5 0.5 0.5 0.2\n")
    bad = os.fsdecode(b"b\xff.jpg")
    Image.new("RGB", (400, 100)).save(folder / "images" / bad)
    (folder / "labels" / os.fsdecode(b"b\xff.txt")).write_text("0 0.5 0.5 0.5 0.2\n")
    done = _convert(folder, "yolo", tmp_path)
    assert done.summary.records == 1 and "b\\xff.jpg" in done.summary.describe(), done.summary.describe()
    done.out.read_bytes().decode("utf-8")


def test_the_output_cannot_be_the_source(tmp_path):
    Image.new("RGB", (100, 50)).save(tmp_path / "a.png")
    labels = tmp_path / "lab.jsonl"
    text = json.dumps({"path": str(tmp_path / "a.png"), "model": "m", "width": 100, "height": 50,
                       "detections": [{"label": "box", "box": [1, 2, 30, 40]}]}) + "\n"
    labels.write_text(text)
    (tmp_path / "link.jsonl").symlink_to(labels)
    for out in (labels, tmp_path / "link.jsonl", tmp_path / "." / "lab.jsonl"):
        with pytest.raises(ConvertError, match="is the source"):
            convert(labels, source_format="vlground", target="qwen", family="qwen3-vl", task="detect", out=out)
        assert labels.read_text() == text


def test_parquet_rows_sharing_a_file_name_keep_their_own_pixels_and_names_stay_in_the_folder(tmp_path):
    pytest.importorskip("pyarrow", reason="parquet ground truth needs the arrow extra")
    import io

    from test_eval_refcoco_data import write_lmms_parquet

    def png(colour):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), colour).save(buffer, format="PNG")
        return buffer.getvalue()

    rows = [{"question_id": str(i), "image": png(colour), "answer": [f"thing {i}"], "bbox": [1.5, 2.0, 10.0, 20.0],
             "file_name": "same.jpg"} for i, colour in enumerate(["red", "blue"])]
    write_lmms_parquet(tmp_path / "data" / "..-00000-of-00001.parquet", rows)
    done = convert(tmp_path / "data", source_format="refcoco", target="swift", family="qwen2.5-vl", task="ground",
                   out=tmp_path / "out" / "train.jsonl")
    images = [Path(record_turns(r)[0]) for r in read_records(done.out)]
    assert len(set(images)) == 2, images
    for image, colour in zip(images, [(255, 0, 0), (0, 0, 255)]):
        assert image.resolve().is_relative_to((tmp_path / "out" / "train_images").resolve()), image
        assert Image.open(image).getpixel((0, 0)) == colour


@pytest.mark.parametrize("family", ["qwen3.5", "qwen4-exp"])
def test_qwen3_5_records_carry_the_empty_reasoning_block_and_the_0_1000_frame(coco, tmp_path, family):
    """A checkpoint that thinks by default is trained on what it writes with thinking off: the block its
    template writes then, and the answer on 0-1000 of the original image."""
    from vlground.core.families import EMPTY_REASONING

    done = convert(coco, source_format="coco", target="trl", family=family, task="ground", out=tmp_path / "t.jsonl")
    for record, (name, objects) in zip(read_records(done.out), _expected("ground")):
        answer = record_turns(record)[2]
        assert answer.startswith(EMPTY_REASONING) and answer.count("</think>") == 1
        width, height = Image.open(coco.parent / name).size
        box = json.loads(answer[answer.index("[") : answer.rindex("]") + 1])[0]["bbox_2d"]
        expected = objects[0][1]
        assert box == pytest.approx([expected[0] / width * 1000, expected[1] / height * 1000,
                                     expected[2] / width * 1000, expected[3] / height * 1000], abs=1)
    plain = convert(coco, source_format="coco", target="trl", family="qwen3-vl", task="ground", out=tmp_path / "p.jsonl")
    assert "<think>" not in record_turns(read_records(plain.out)[0])[2]  # Instruct checkpoints: no block
