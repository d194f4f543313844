"""`vlground detect` over folders, globs, URLs and stdin: one label record per image, resumable; the
arguments and outputs checked before any work; nothing empty or failed passes in silence.

Boxes that must be exact come from a model served on 127.0.0.1 behind the real server backend (the
stand-in for vLLM of tests/test_server_backend.py, answering "the cat" with a box and anything else
with nothing); the batching of a real network is checked on a tiny random checkpoint."""
import base64
import functools
import http.server
import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vlground.cli.main import app
from vlground.jobs.detect import merge_answers
from vlground.core.results import Detection, Result

from test_server_backend import QWEN25, FakeServer, completion  # tests/ is on sys.path

CAT_ANSWER = '[{"bbox_2d": [161, 119, 322, 238], "label": "cat"}]'
CAT_BOX = [160.0, 120.0, 320.0, 240.0]  # CAT_ANSWER on a 640x480 image
FAILING_WIDTH = 320  # the served model fails on images of this width
runner = CliRunner()


def _reply(body):
    """The box for prompts that mention "the cat", no box otherwise; HTTP 500 for an image FAILING_WIDTH wide."""
    parts = [part for m in body["messages"] for part in m["content"]]
    prompt = " ".join(part.get("text", "") for part in parts)
    image = next(p["image_url"]["url"] for p in parts if p.get("type") == "image_url")
    if Image.open(io.BytesIO(base64.b64decode(image.split(",", 1)[1]))).width == FAILING_WIDTH:
        return 500, {"message": "engine dead"}
    if "the odd cat" in prompt:
        return completion(CAT_ANSWER.replace('"cat"', '"\\ud800cat"'))  # a lone surrogate in the label
    return completion(CAT_ANSWER if "the cat" in prompt else "[]")


@pytest.fixture
def served():
    """A vLLM-like endpoint on 127.0.0.1 (tests/test_server_backend.py's), answering by `_reply`."""
    server = FakeServer(_reply, [{"id": QWEN25, "object": "model", "root": QWEN25}])
    server.model = ["--model", server.url, "--served-model", QWEN25]
    yield server
    server.stop()


def _asked(server):
    return [body for _, body in server.chats]


def _photo(path, size=(640, 480)):
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    _photo(folder / "cat1.png")
    _photo(folder / "cat2.jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_folder_gives_one_record_per_image_and_resumes(served, photos, tmp_path):
    out = tmp_path / "boxes.jsonl"
    res = runner.invoke(app, ["detect", str(photos), "the cat", "--out", str(out), *served.model])
    assert res.exit_code == 1, res.output  # broken.png failed, and says so
    records = {os.path.basename(r["path"]): r for r in _records(out)}
    assert set(records) == {"cat1.png", "cat2.jpg", "broken.png"}
    for name in ("cat1.png", "cat2.jpg"):
        [box] = records[name]["detections"]
        assert (box["label"], box["attributes"]) == ("cat", {"query": "the cat"})
        assert box["box"] == pytest.approx(CAT_BOX, abs=1)
        assert (records[name]["width"], records[name]["height"], records[name]["error"]) == (640, 480, None)
    assert "not an image" in records["broken.png"]["error"]
    assert "failed: " in res.stderr and "broken.png" in res.stderr
    assert "detect: done 3, failed 1," in res.stderr and "had no box" not in res.stderr
    asked = len(_asked(served))
    _photo(photos / "cat3.png")
    res = runner.invoke(app, ["detect", str(photos), "the cat", "--out", str(out), "--resume", *served.model])
    assert len(_asked(served)) == asked + 1  # only the new image was asked about
    assert len(_records(out)) == 4 and "3 already in the output (1 of them failed" in res.stderr
    (photos / "broken.png").unlink()
    _photo(photos / "broken.png")  # repaired: --retry-failed answers it again, in place of its error record
    res = runner.invoke(app, ["detect", str(photos), "the cat", "--out", str(out), "--resume", "--retry-failed", *served.model])
    assert res.exit_code == 0, res.output
    assert len(_asked(served)) == asked + 2 and [r["error"] for r in _records(out)] == [None] * 4
    res = runner.invoke(app, ["detect", str(photos), "the cat", "--out", str(out), *served.model])
    assert res.exit_code == 2 and "--resume" in res.stderr  # never appended to by accident


def test_a_multi_page_tiff_is_read_as_its_first_page_and_the_summary_says_so(served, tmp_path):
    """detect reads images: of a 3-page scan it reads page 1, and the pages it left are not passed
    over in silence (ocr reads every page)."""
    folder = tmp_path / "scans"
    folder.mkdir()
    pages = [Image.new("RGB", (640, 480), (40 * i, 90, 120)) for i in range(3)]
    pages[0].save(folder / "scan.tif", save_all=True, append_images=pages[1:])
    pages[0].save(folder / "single.tif")
    _photo(folder / "cat.png")
    out = tmp_path / "boxes.jsonl"
    res = runner.invoke(app, ["detect", str(folder), "the cat", "--out", str(out), *served.model])
    assert res.exit_code == 0, res.output
    assert sorted(os.path.basename(r["path"]) for r in _records(out)) == ["cat.png", "scan.tif", "single.tif"]
    assert len(_asked(served)) == 3  # one image each: page 1 of the scan
    assert "1 multi-page file of which the first page alone was read (vlground ocr reads every page)" in res.stderr
    res = runner.invoke(app, ["detect", str(folder), "the cat", "--out", str(out), "--resume", *served.model])
    assert "multi-page" not in res.stderr  # nothing read this time


def test_without_model_the_records_name_the_model_that_vlground_model_loads(served, photos, tmp_path, monkeypatch):
    monkeypatch.setenv("VLGROUND_MODEL", served.url)
    out = tmp_path / "boxes.jsonl"
    res = runner.invoke(app, ["detect", str(photos / "cat1.png"), "the cat", "--out", str(out), "--served-model", QWEN25])
    assert res.exit_code == 0, res.output
    assert len(_asked(served)) == 1  # answered by the model the variable names
    assert [r["model"] for r in _records(out)] == [served.url]


def test_hostile_folders_give_error_records_and_the_rest_is_read(served, photos, tmp_path):
    (photos / "broken.png").unlink()
    with open(os.path.join(os.fsencode(photos), b"bad\xffname.png"), "wb") as handle:
        handle.write((photos / "cat1.png").read_bytes())
    os.symlink(".", photos / "loop")
    out = tmp_path / "boxes.jsonl"
    res = runner.invoke(app, ["detect", str(photos), "the cat", "--recursive", "--out", str(out), *served.model])
    assert res.exit_code == 1, res.output  # the loop is an error record
    records = {os.path.basename(r["path"]): r for r in _records(out)}  # every line is valid UTF-8 JSON
    assert set(records) == {"bad\\xffname.png", "cat1.png", "cat2.jpg", "loop"}
    assert records["bad\\xffname.png"]["detections"] and "symlink loop" in records["loop"]["error"]


def test_an_image_the_model_fails_on_is_an_error_record_and_the_batch_goes_on(served, photos, tmp_path):
    (photos / "broken.png").unlink()
    _photo(photos / "b_small.png", size=(FAILING_WIDTH, 240))
    out = tmp_path / "boxes.jsonl"
    res = runner.invoke(app, ["detect", str(photos), "the cat", "--out", str(out), "--batch-size", "3", *served.model])
    assert res.exit_code == 1, res.output
    records = {os.path.basename(r["path"]): r for r in _records(out)}
    assert "HTTP 500" in records["b_small.png"]["error"] and "engine dead" in res.stderr
    assert records["cat1.png"]["detections"] and records["cat2.jpg"]["detections"]


def test_several_images_print_a_table_or_a_record_each(served, photos, monkeypatch):
    cat1, cat2 = str(photos / "cat1.png"), str(photos / "cat2.jpg")
    res = runner.invoke(app, ["detect", cat1, cat2, "the cat", "a dog", "--json", *served.model])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["path"] for r in lines] == [cat1, cat2]
    assert all([d["attributes"]["query"] for d in r["detections"]] == ["the cat"] for r in lines)
    [summary] = res.stderr.splitlines()  # a query with no box is a result: counted, not a line per image
    assert summary.startswith("detect: done 2, failed 0") and summary.endswith("2 of 2 images had no box for some query (0 for none)")
    monkeypatch.setenv("VLGROUND_VERBOSE", "1")  # as --verbose sets it
    res = runner.invoke(app, ["detect", cat1, cat2, "the cat", "a dog", "--json", *served.model])
    assert "no box found for 'a dog' in " + cat1 in res.stderr
    res = runner.invoke(app, ["detect", str(photos / "cat*"), "the cat", *served.model])
    assert res.stdout.splitlines()[0] == f"{cat1} 640x480: 1 found"
    res = runner.invoke(app, ["detect", str(photos / "cat*"), "the cat", "--out", "-", *served.model])
    assert [json.loads(line)["path"] for line in res.stdout.splitlines()] == [cat1, cat2] and not os.path.exists("-")
    res = runner.invoke(app, ["detect", cat1, "the cat", "--out", "x.jsonl", "--json", *served.model])
    assert res.exit_code == 2 and "--json prints the results" in res.stderr


def test_max_new_tokens_reaches_the_model(served, photos):
    res = runner.invoke(app, ["detect", str(photos / "cat1.png"), "the cat", "--max-new-tokens", "7", *served.model])
    assert res.exit_code == 0, res.output
    assert [b["max_tokens"] for b in _asked(served)] == [7]


def test_an_image_from_a_url(served, photos, tmp_path):
    fetched = []

    class Files(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            fetched.append(self.path)
            super().do_GET()

    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Files, directory=str(photos)))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{files.server_address[1]}"
    try:
        res = runner.invoke(app, ["detect", f"{base}/cat1.png", "the cat", "--json", *served.model])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["detections"][0]["box"] == pytest.approx(CAT_BOX, abs=1)
        assert fetched == ["/cat1.png"]  # checked before the model, and not downloaded a second time
        # the 404 is found before any model loads: a model that cannot load is never reached
        res = runner.invoke(app, ["detect", f"{base}/gone.png", "the cat", "--model", str(tmp_path / "no-model")])
        assert res.exit_code == 2 and f"{base}/gone.png" in res.stderr and "HTTP 404" in res.stderr
        assert "no-model" not in res.stderr
    finally:
        files.shutdown()


def test_an_image_on_stdin(served, photos):
    proc = subprocess.run([sys.executable, "-m", "vlground.cli.main", "detect", "-", "the cat", "--json", *served.model],
                          input=(photos / "cat1.png").read_bytes(), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["detections"][0]["box"] == pytest.approx(CAT_BOX, abs=1)


def test_annotations_are_checked_before_the_model_and_drawn_after(served, photos, tmp_path, monkeypatch):
    cat1 = str(photos / "cat1.png")
    nowhere = ["--model", str(tmp_path / "no-model")]  # any model work would be a weights error
    for target, says in [("out.xyz", ".xyz is not an image format"), ("missing/out.png", "does not exist")]:
        res = runner.invoke(app, ["detect", cat1, "the cat", "--annotate", str(tmp_path / target), *nowhere])
        assert res.exit_code == 2 and says in res.stderr and "no-model" not in res.stderr, res.output
    res = runner.invoke(app, ["detect", str(photos), "the cat", "--annotate", str(tmp_path / "drawn"), *nowhere])
    assert res.exit_code == 2 and "names a folder" in res.stderr
    res = runner.invoke(app, ["detect", str(photos), "the cat", "--annotate", str(photos), *nowhere])
    assert res.exit_code == 2 and "would overwrite" in res.stderr
    (tmp_path / "drawn").mkdir()
    res = runner.invoke(app, ["detect", str(photos), "the cat", "--annotate", str(tmp_path / "drawn"), *served.model])
    assert sorted(os.listdir(tmp_path / "drawn")) == ["cat1.png", "cat2.jpg"]
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "drawn" / "cat1.png")), np.asarray(Image.open(cat1)))
    res = runner.invoke(app, ["detect", cat1, "a dog", "--annotate", str(tmp_path / "none.png"), *served.model])
    assert res.exit_code == 0 and res.stdout.splitlines()[-1] == "no box for 'a dog'" and "nothing found" not in res.stderr
    monkeypatch.setenv("VLGROUND_VERBOSE", "1")
    res = runner.invoke(app, ["detect", cat1, "a dog", "--annotate", str(tmp_path / "none.png"), *served.model])
    assert res.exit_code == 0 and "nothing found; its drawn copy has no boxes" in res.stderr


def test_queries_are_never_mistaken_for_images_nor_images_for_queries(photos, tmp_path):
    cat1 = str(photos / "cat1.png")
    nowhere = ["--model", str(tmp_path / "no-model")]
    cases = [
        ([cat1, "b.jpg", "the cat"], "b.jpg: no such file"),
        ([cat1, "the cat", cat1], "comes after the query 'the cat' but looks like an image"),
        ([cat1, "the cat", "dog.png"], "looks like an image"),
        (["the cat"], "the cat: no such file, folder or URL"),
        ([cat1], "no query"),
    ]
    for args, says in cases:
        res = runner.invoke(app, ["detect", *args, *nowhere])
        assert res.exit_code == 2 and says in res.stderr and len(res.stderr.splitlines()) == 1, (args, res.output)
    res = runner.invoke(app, ["detect", cat1, "--query", "b.jpg", *nowhere])  # --query: the argument is an image
    assert res.exit_code == 2 and "no-model" in res.stderr  # it went as far as the model


def test_inputs_without_images_warn_and_exit_1(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    nowhere = ["--model", str(tmp_path / "no-model")]
    for source, says in [("empty", "no image found"), ("notes", "1 files without an image suffix"),
                         ("empty/*.jpg", "no file matches this pattern")]:
        res = runner.invoke(app, ["detect", str(tmp_path / source), "a cat", *nowhere])
        assert res.exit_code == 1 and "warning: " in res.stderr and says in res.stderr, (source, res.output)
        assert "no-model" not in res.stderr


def test_every_input_failing_is_exit_1_with_the_reasons(served, tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"broken")
    res = runner.invoke(app, ["detect", str(tmp_path), "the cat", *served.model])
    assert res.exit_code == 1 and res.stderr.count("not an image") == 2 and "failed 2" in res.stderr


def test_wrong_values_name_their_flag_before_any_work(photos, tmp_path):
    nowhere = ["--model", str(tmp_path / "no-model")]
    for flag, value in [("--batch-size", "0"), ("--max-new-tokens", "0"), ("--max-pixels", "0"), ("--batch-size", "x")]:
        res = runner.invoke(app, ["detect", str(photos / "cat1.png"), "a cat", flag, value, *nowhere])
        assert res.exit_code == 2 and flag in res.stderr and len(res.stderr.splitlines()) == 1, res.output


def _stderr_on_a_terminal(args):
    """Run `vlground detect ARGS` with stderr on a pseudo-terminal; what it wrote there."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    proc = subprocess.run([sys.executable, "-m", "vlground.cli.main", "detect", *args],
                          stdout=subprocess.DEVNULL, stderr=slave, timeout=300)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal is closed once everything is read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_a_progress_bar_on_a_terminal_only_and_not_with_quiet(served, photos):
    (photos / "broken.png").unlink()
    status, shown = _stderr_on_a_terminal([str(photos), "the cat", *served.model])
    assert status == 0 and "2/2" in shown and "img/s" in shown and "detect: done 2" in shown
    status, shown = _stderr_on_a_terminal([str(photos), "the cat", "--quiet", *served.model])
    assert status == 0 and "img/s" not in shown and "detect:" not in shown


def test_merge_answers_labels_with_the_query_and_keeps_one_box_per_expression():
    box = Detection(label=None, box=(1, 2, 3, 4))
    named = Detection(label="cat", box=(5, 6, 7, 8))
    answers = [Result(detections=[box, named], text="a", image_size=(10, 10)), Result(detections=[], text="", image_size=(10, 10))]
    grounded, missing = merge_answers(["the cat", "a dog"], answers, all_instances=False)
    assert [(d.label, d.attributes) for d in grounded.detections] == [("the cat", {"query": "the cat"})]
    assert missing == ["a dog"] and grounded.image_size == (10, 10)
    every, _ = merge_answers(["the cat", "a dog"], answers, all_instances=True)
    assert [d.label for d in every.detections] == ["the cat", "cat"]
    assert box.label is None  # the model's answer is left as it was


def test_a_tiny_model_answers_a_folder_in_batches(tiny_checkpoint, photos, tmp_path):
    out = tmp_path / "boxes.jsonl"
    (photos / "broken.png").unlink()
    res = runner.invoke(app, ["detect", str(photos), "the cat", "a tree", "--out", str(out), "--batch-size", "2",
                              "--max-new-tokens", "6", "--model", str(tiny_checkpoint("qwen2.5-vl")), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    records = _records(out)
    assert [os.path.basename(r["path"]) for r in records] == ["cat1.png", "cat2.jpg"]
    assert all(r["error"] is None and (r["width"], r["height"]) == (640, 480) for r in records)


def test_an_adapter_reaches_the_loader(tiny_checkpoint, photos, tmp_path):
    model = ["--model", str(tiny_checkpoint("qwen2.5-vl")), "--device", "cpu"]
    res = runner.invoke(app, ["detect", str(photos / "cat1.png"), "a cat", "--adapter", str(photos), *model])
    assert res.exit_code == 2 and "is not a PEFT adapter folder" in res.stderr
    res = runner.invoke(app, ["detect", str(photos / "cat1.png"), "a cat", "--merge-adapter", *model])
    assert res.exit_code == 2 and "needs an adapter" in res.stderr


def test_a_label_utf8_cannot_encode_is_printed_escaped(served, photos):
    for form in ([], ["--json"]):
        res = runner.invoke(app, ["detect", str(photos / "cat1.png"), "the odd cat", *form, *served.model])
        assert res.exit_code == 0, res.output
        assert "\\ud800cat" in res.stdout
