"""`vlground ocr` over real folders: every bad file a folder holds, resume after SIGKILL, workers,
text export and exit status."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from ocr_app import ocr_app, read_records
from vlground.core.records import Record, record_key
from vlground.io.sink import JsonlSink
from vlground.ocr.synthetic import Document, Style, render

FONT = str(Path(__file__).parent / "fonts" / "DejaVuSansCondensed-Bold.ttf")
EXIF_ORIENTATION = 0x0112



def _sign(text: str, size: int = 40) -> Image.Image:
    return render(Document("sign", [[[(text, "center")]]]), Style(font=FONT, size=size))



@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory) -> Path:
    """A folder as people have them: good images in odd encodings, broken files, notes, a subfolder."""
    folder = tmp_path_factory.mktemp("scans")
    _sign("Fresh Coffee").save(folder / "plain.png")
    _sign("Corner Cafe").convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # stored sideways; displayed upright
    _sign("Main Street").transpose(Image.Transpose.ROTATE_90).save(folder / "rotated.jpg", exif=exif, quality=95)
    Image.new("RGB", (1, 1), "white").save(folder / "tiny.png")
    Image.new("L", (3000, 6), 255).save(folder / "strip.png")  # extreme aspect: the bare engine raises
    (folder / "empty.png").write_bytes(b"")
    data = (folder / "plain.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "notes.jpg").write_text("this is not a picture")
    (folder / "readme.txt").write_text("ground truth lives elsewhere")
    (folder / "sub").mkdir()
    _sign("Exit").save(folder / "sub" / "inner.png")
    return folder


def test_every_file_gets_one_record_and_the_batch_goes_on(messy_folder, tmp_path):
    out = tmp_path / "results.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(messy_folder), "--out", str(out), "--txt-dir", str(tmp_path / "txt")])
    assert result.exit_code == 1, result.output  # some inputs failed
    records = {Path(r["path"]).name: r for r in read_records(out)}
    assert set(records) == {"plain.png", "cmyk.jpg", "rotated.jpg", "tiny.png", "strip.png", "empty.png",
                            "truncated.png", "notes.jpg"}
    assert set(records["plain.png"]) == {"path", "abspath", "engine", "width", "height", "text", "lines", "error", "rotation"}
    assert records["plain.png"]["text"] == "Fresh Coffee"
    assert records["cmyk.jpg"]["text"] == "Corner Cafe"
    assert records["rotated.jpg"]["text"] == "Main Street"
    assert records["rotated.jpg"]["width"] > records["rotated.jpg"]["height"]  # as displayed
    line = records["plain.png"]["lines"][0]
    assert line["text"] == "Fresh Coffee" and len(line["box"]) == 4 and 0.5 < line["score"] <= 1
    x1, y1, x2, y2 = line["box"]
    assert 0 <= x1 < x2 <= records["plain.png"]["width"] and 0 <= y1 < y2 <= records["plain.png"]["height"]
    assert "empty file" in records["empty.png"]["error"]
    assert "truncated" in records["truncated.png"]["error"]
    assert "not an image" in records["notes.jpg"]["error"]
    assert all(r["error"] is None for n, r in records.items() if n in ("plain.png", "cmyk.jpg", "rotated.jpg", "tiny.png", "strip.png"))
    assert records["strip.png"]["text"] == "" and (records["strip.png"]["width"], records["strip.png"]["height"]) == (3000, 6)
    assert (tmp_path / "txt" / "plain.png.txt").read_text() == "Fresh Coffee\n"
    assert not (tmp_path / "txt" / "empty.png.txt").exists()
    summary = result.stderr
    assert "done 8, failed 3" in summary and "1 files in folders without an image suffix" in summary
    assert "1 subfolders not entered" in summary

    # The same output again: refused without --resume; with it, nothing is redone or duplicated.
    again = CliRunner().invoke(ocr_app(), ["ocr", str(messy_folder), "--out", str(out)])
    assert again.exit_code == 2 and "--resume" in again.stderr
    resumed = CliRunner().invoke(ocr_app(), ["ocr", str(messy_folder), "-r", "--out", str(out), "--resume"])
    assert resumed.exit_code == 1  # the earlier failures still stand
    assert "done 1, failed 0" in resumed.stderr and "skipped 8" in resumed.stderr
    assert sorted(Path(r["path"]).name for r in read_records(out)).count("plain.png") == 1
    assert read_records(out)[-1]["text"] == "Exit"


def test_files_folders_and_globs_without_duplicates(messy_folder, tmp_path):
    out = tmp_path / "r.jsonl"
    args = ["ocr", str(messy_folder / "plain.png"), str(messy_folder / "*.png"), str(messy_folder / "*.webp"),
            str(messy_folder / "missing.png"), "--out", str(out)]
    result = CliRunner().invoke(ocr_app(), args)
    assert result.exit_code == 1
    records = {r["path"]: r for r in read_records(out)}
    assert len(records) == len(read_records(out)) == 7  # 5 pngs, the unmatched glob, the missing file
    assert records[str(messy_folder / "*.webp")]["error"] == "no file matches this pattern"
    assert records[str(messy_folder / "missing.png")]["error"] == "no such file"


def test_all_good_exits_zero_and_workers_agree(tmp_path):
    for index, word in enumerate(["Bakery", "Library", "Pharmacy"]):
        _sign(word).save(tmp_path / f"{index}.png")
    texts = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.jsonl"
        bar = ["--progress"] if workers == 1 else []  # forced on; off by default when stderr is no terminal
        result = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path), "--out", str(out), "--workers", str(workers), *bar])
        assert result.exit_code == 0, result.stderr
        assert ("img/s" in result.stderr) == (workers == 1)
        texts[workers] = {r["path"]: r["text"] for r in read_records(out)}
    assert texts[1] == texts[2] == {str(tmp_path / f"{i}.png"): w for i, w in enumerate(["Bakery", "Library", "Pharmacy"])}


@pytest.mark.parametrize(("engine", "module", "advice"), [("ppocr", "rapidocr", "pip install 'rapidocr"),
                                                        ("ppocr-v4", "rapidocr_onnxruntime", "rapidocr-onnxruntime")])
def test_missing_engine_package_says_what_to_install(tmp_path, monkeypatch, engine, module, advice):
    monkeypatch.setitem(sys.modules, module, None)  # as where it is not installed, or has no release
    _sign("Bakery").save(tmp_path / "a.png")
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path / "a.png"), "--out", str(out), "--engine", engine])
    assert result.exit_code == 2
    assert advice in result.stderr and "Traceback" not in result.stderr
    assert not out.exists() or out.read_text() == ""  # refused before any record


def test_a_line_cut_by_a_kill_is_dropped_on_resume(tmp_path):
    out = tmp_path / "r.jsonl"
    whole = Record(path="a.png", engine="ppocr", width=1, height=1, text="A").to_json()
    out.write_text(whole + "\n" + '{"path": "b.png", "eng')
    with JsonlSink(out, record_key, resume=True) as sink:
        assert set(sink.done) == {os.path.abspath("a.png")}
        sink.write(Record(path="b.png", engine="ppocr", text="B").to_dict())
    assert [r["text"] for r in read_records(out)] == ["A", "B"]


_CLI = "import sys, typer; from vlground.cli.ocr import register; app = typer.Typer(); register(app); app.callback()(lambda: None); app()"


def test_sigkill_midway_then_resume_reads_every_input_exactly_once(tmp_path):
    folder = _signs_folder(tmp_path, "Gate", 12)
    out = tmp_path / "r.jsonl"
    command = [sys.executable, "-c", _CLI, "ocr", str(folder), "--out", str(out), "--workers", "2"]
    process = _started(command, out, records=3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    first = out.read_text().count("\n")
    assert 3 <= first < 12, "the run was to be killed midway"
    subprocess.run(command + ["--resume"], check=True, capture_output=True)
    paths = [r["path"] for r in read_records(out)]
    assert sorted(paths) == sorted(str(folder / f"{i:02d}.png") for i in range(12))


def _signs_folder(tmp_path: Path, word: str, count: int) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(count):
        _sign(f"{word} {index}", size=24).save(folder / f"{index:02d}.png")
    return folder


def _started(command: list[str], out: Path, records: int) -> subprocess.Popen:
    """`command` running, once `out` holds `records` lines (or after 5 minutes: loading the engine in
    two workers on a busy 2-core machine has taken most of a minute)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < records):
        time.sleep(0.05)
    return process


def test_a_worker_crash_costs_only_the_image_that_caused_it(tmp_path):
    """A crash inside the engine kills its worker process: the pool is rebuilt, the images that were in
    flight are retried one by one, and only the culprit gets an error record."""
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from ocr_crash_reader import CrashingPages
    finally:
        sys.path.pop(0)
    from vlground.jobs.executors import Processes
    from vlground.io.documents import PageJob
    from vlground.ocr.ppocr import EngineSpec
    from vlground.io.sources import Source

    words = ["Bakery", "Library", "Pharmacy", "Museum", "Station"]
    files = []
    for index, word in enumerate(words):
        files.append(str(tmp_path / f"{index}.png"))
        _sign(word).save(files[-1])
        if index == 1:
            files.append(str(tmp_path / "crash.png"))
            _sign("Boom").save(files[-1])
    jobs = [PageJob(Source(f)) for f in files]
    records = {r["path"]: Record.from_dict(r) for _, r in Processes(2).run(CrashingPages(EngineSpec()), jobs)}
    assert sorted(records) == sorted(files)  # every input exactly once
    assert "crashed" in records[str(tmp_path / "crash.png")].error
    assert {records[f].text for f in files if not f.endswith("crash.png")} == set(words)


def test_a_second_run_on_the_same_out_is_refused_naming_the_first(tmp_path):
    from vlground.io.sink import OutputLock

    _sign("Bakery").save(tmp_path / "a.png")
    out = tmp_path / "r.jsonl"
    lock = OutputLock(out)  # as a run in progress holds it
    try:
        result = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path / "a.png"), "--out", str(out)])
        assert result.exit_code == 2 and f"pid {os.getpid()} on host" in result.stderr
        assert "another run" in result.stderr and "Traceback" not in result.stderr
    finally:
        lock.release()
    assert not out.exists() or out.read_text() == ""
    assert CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path / "a.png"), "--out", str(out)]).exit_code == 0


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (zombies count as gone)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            state, parent = stat.rsplit(")", 1)[1].split()[:2]
            if state != "Z":
                children.setdefault(int(parent), []).append(int(entry))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.add(pid)
        except OSError:
            pass
    return alive


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc (Linux)")
def test_workers_die_with_the_main_process_after_sigkill(tmp_path):
    folder = _signs_folder(tmp_path, "Dock", 8)
    out = tmp_path / "r.jsonl"
    process = _started([sys.executable, "-c", _CLI, "ocr", str(folder), "--out", str(out), "--workers", "2"], out, records=1)
    tree = _descendants(process.pid)
    assert len(tree) >= 3, "the fork server and two workers were to be running"
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 60  # gone in 0.4 s idle, 3.5 s beside 4 busy loops; an orphan never goes
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(tree), f"orphans left running: {sorted(_alive(tree))}"


def test_relative_inputs_resume_from_another_working_directory(tmp_path, monkeypatch):
    """Resume matches inputs by absolute path: the same files named differently, from elsewhere,
    are not read again."""
    images = tmp_path / "data" / "imgs"
    images.mkdir(parents=True)
    for word in ("Bakery", "Museum"):
        _sign(word).save(images / f"{word}.png")
    out = tmp_path / "r.jsonl"
    monkeypatch.chdir(tmp_path / "data")
    first = CliRunner().invoke(ocr_app(), ["ocr", "imgs", "--out", str(out)])
    assert first.exit_code == 0, first.stderr
    assert sorted(r["path"] for r in read_records(out)) == ["imgs/Bakery.png", "imgs/Museum.png"]
    monkeypatch.chdir(tmp_path)
    again = CliRunner().invoke(ocr_app(), ["ocr", "data/imgs", str(images / "Museum.png"), "--out", str(out), "--resume"])
    assert again.exit_code == 0, again.stderr
    assert "done 0" in again.stderr and "skipped 2" in again.stderr and len(read_records(out)) == 2


def test_a_name_that_is_not_utf8_gets_a_record_and_resumes(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _sign("Bakery").save(os.path.join(os.fsencode(folder), b"bad\xffname.png"))
    _sign("Museum").save(folder / "good.png")
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(folder), "--out", str(out), "--txt-dir", str(tmp_path / "txt")])
    assert result.exit_code == 0, result.stderr
    raw = out.read_bytes()
    raw.decode("utf-8")  # strict UTF-8 throughout
    records = {Path(r["path"]).name: r for r in read_records(out)}
    assert records["bad\\xffname.png"]["text"] == "Bakery" and records["good.png"]["text"] == "Museum"
    assert records["bad\\xffname.png"]["abspath"] == str(folder) + "/bad\\xffname.png"
    assert (os.fsencode(tmp_path / "txt") + b"/bad\xffname.png.txt") in [os.path.join(os.fsencode(tmp_path / "txt"), n)
                                                                          for n in os.listdir(os.fsencode(tmp_path / "txt"))]
    resumed = CliRunner().invoke(ocr_app(), ["ocr", str(folder), "--out", str(out), "--resume"])
    assert resumed.exit_code == 0 and "done 0" in resumed.stderr and "skipped 2" in resumed.stderr


def test_a_failing_text_export_is_an_error_record_and_resume_retries_it(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for word in ("Bakery", "Museum", "Station"):
        _sign(word).save(folder / f"{word}.png")
    txt = tmp_path / "txt"
    (txt / "Museum.png.txt").mkdir(parents=True)  # a folder where the .txt is to go
    out = tmp_path / "r.jsonl"
    args = ["ocr", str(folder), "--out", str(out), "--txt-dir", str(txt), "--workers", "1"]
    result = CliRunner().invoke(ocr_app(), args)
    assert result.exit_code == 1
    records = {Path(r["path"]).name: r for r in read_records(out)}
    assert len(records) == 3 and records["Station.png"]["error"] is None  # the batch went on
    assert "cannot write the txt export" in records["Museum.png"]["error"] and records["Museum.png"]["text"] == "Museum"
    assert result.stderr.count("failed: ") == 1 and "Museum.png: cannot write the txt export" in result.stderr
    assert (txt / "Station.png.txt").read_text() == "Station\n"

    reported = CliRunner().invoke(ocr_app(), args + ["--resume"])
    assert reported.exit_code == 1 and "1 of them failed; --retry-failed" in reported.stderr
    (txt / "Museum.png.txt").rmdir()
    retried = CliRunner().invoke(ocr_app(), args + ["--resume", "--retry-failed"])
    assert retried.exit_code == 0, retried.stderr
    assert "done 1" in retried.stderr and (txt / "Museum.png.txt").read_text() == "Museum\n"
    final = read_records(out)  # compacted: one record per input, in the original order
    assert [Path(r["path"]).name for r in final] == ["Bakery.png", "Museum.png", "Station.png"]
    assert all(r["error"] is None for r in final)


def test_flags_that_clash_or_do_nothing_are_refused(tmp_path):
    _sign("Bakery").save(tmp_path / "a.png")
    image, out = str(tmp_path / "a.png"), str(tmp_path / "r.jsonl")
    cases = {
        ("--resume", "--overwrite"): "exclude each other",
        ("--mode", "lines"): "--mode is for Qwen engines",
        ("--retry-failed",): "works with --resume",
    }
    for flags, message in cases.items():
        result = CliRunner().invoke(ocr_app(), ["ocr", image, "--out", out, *flags])
        assert result.exit_code == 2 and message in result.stderr, (flags, result.stderr)
    assert not Path(out).exists()
    refused = CliRunner().invoke(ocr_app(), ["ocr", image, "--out", "-", "--resume"])
    assert refused.exit_code == 2 and "standard output" in refused.stderr


def test_out_dash_writes_jsonl_to_stdout(tmp_path):
    _sign("Bakery").save(tmp_path / "a.png")
    result = subprocess.run([sys.executable, "-c", _CLI, "ocr", str(tmp_path / "a.png"), "--out", "-"],
                            capture_output=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    assert record["text"] == "Bakery" and b"done 1" in result.stderr
    assert not (tmp_path / "-").exists()


def test_a_folder_without_images_is_a_warning_and_exit_1(tmp_path):
    (tmp_path / "notes.txt").write_text("no pictures here")
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 1 and "warning: no image found" in result.stderr
    assert "1 files without an image suffix" in result.stderr and not out.exists()


def test_ray_actors_read_like_local_workers(ray_cluster, tmp_path):
    folder = _signs_folder(tmp_path, "Pier", 3)
    texts = {}
    for name, flags in (("local", ["--workers", "1"]), ("ray", ["--ray", ray_cluster, "--workers", "2"])):
        out = tmp_path / f"{name}.jsonl"
        result = CliRunner().invoke(ocr_app(), ["ocr", str(folder), "--out", str(out), *flags])
        assert result.exit_code == 0, result.stderr
        texts[name] = {r["path"]: (r["text"], r["lines"]) for r in read_records(out)}
    assert texts["ray"] == texts["local"] and len(texts["ray"]) == 3
    refused = CliRunner().invoke(ocr_app(), ["ocr", str(folder), "--out", str(tmp_path / "q.jsonl"), "--gpus-per-worker", "1"])
    assert refused.exit_code == 2 and "--gpus-per-worker applies with --ray" in refused.stderr
