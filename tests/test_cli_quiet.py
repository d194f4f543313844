"""Quiet by default: off a terminal, stderr carries the failures and the summary, not a line per
image nothing was found in (the summary counts them), nor the libraries' bars, advice, warnings or
start-up lines; --verbose lets those through."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from vlground.ocr.synthetic import Document, Style, render

FONT = str(Path(__file__).parent / "fonts" / "DejaVuSansCondensed-Bold.ttf")
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def vlground(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRANSFORMERS_", "HF_HUB_DISABLE", "PYTHONWARNINGS", "VLGROUND_VERBOSE", "RAY_BACKEND"))}
    return subprocess.run([sys.executable, "-m", "vlground.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_a_model_run_off_a_terminal_leaves_only_our_lines_on_stderr(tmp_path, tiny_checkpoint):
    images = [str(SAMPLES / "shop_sign.png"), str(SAMPLES / "receipt.jpg")]
    run = [*images, "the sign", "--model", str(tiny_checkpoint("qwen2.5-vl")), "--device", "cpu", "--max-new-tokens", "4"]
    quiet = vlground("detect", *run, cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    [summary] = quiet.stderr.splitlines()  # four tokens of noise: no box in either image, and no line each
    assert summary.startswith("detect: done 2, failed 0") and summary.endswith("; 2 of 2 images had no box"), summary
    verbose = vlground("detect", *run, "--verbose", cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    assert "Loading weights" in verbose.stderr  # what the default keeps off stderr is really there
    assert verbose.stderr.count("no box found for 'the sign' in ") == 2


def test_python_warnings_are_kept_off_stderr_in_worker_processes_too_unless_verbose():
    code = ("import subprocess, sys, warnings\n"
            "from vlground.cli import verbosity\n"
            "verbosity.quiet_libraries()\n"
            "warnings.warn('parent', FutureWarning)\n"
            "subprocess.run([sys.executable, '-c', \"import warnings; warnings.warn('child', FutureWarning)\"])\n"
            "verbosity._let_through(None, None, True)\n"
            "warnings.warn('verbose parent', FutureWarning)\n"
            "subprocess.run([sys.executable, '-c', \"import warnings; warnings.warn('verbose child', FutureWarning)\"])\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    warned = [line for line in out.stderr.splitlines() if "FutureWarning" in line]
    assert len(warned) == 2 and "verbose parent" in warned[0] and "verbose child" in warned[1], out.stderr


def test_ray_start_up_lines_stay_off_stderr(tmp_path):
    out = vlground("ocr", str(SAMPLES / "shop_sign.png"), "--out", "text.jsonl", "--ray", "local", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # Ray's notes on the run ('(raylet) ...' and their indented lines: a worker that died, heartbeats
    # lagging on a busy machine) come to stderr on purpose (see the next test); its start-up lines must not
    notes = re.compile(r"^.*\(raylet\).*(\n[ \t].*)*$", re.M)
    lines = [line for line in notes.sub("", out.stderr).splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("done 1, failed 0"), out.stderr


CRASHING_OCR = """
import os, sys, time
from vlground.cli import main
from vlground.jobs import ocr

class CrashingPages(ocr.PageWorker):  # defined here, so Ray ships it to the actors by value
    def __call__(self, jobs):
        if any("crash" in os.path.basename(job.source.location) for job in jobs):
            os._exit(139)  # as a segfault in the engine would: Ray's driver prints a note on the death
        return super().__call__(jobs)

ocr.PageWorker = CrashingPages
sys.argv = ["vlground", "ocr", sys.argv[1], "--ray", sys.argv[2], "--workers", "1", "--out", "-"]
try:
    main.main()
except SystemExit as end:
    status = end.code
deadline = time.monotonic() + 60
while "(raylet)" not in open(sys.argv[3]).read() + open(sys.argv[4]).read() and time.monotonic() < deadline:
    time.sleep(0.2)  # the note comes from Ray's listener thread, or from Ray's exit (held back as a duplicate)
sys.exit(status)
"""


def test_ray_s_notes_about_dead_workers_stay_out_of_the_records_on_stdout(ray_cluster, tmp_path):
    """`--out -` on Ray with an input that kills its worker: stdout holds the records alone, and
    Ray's note that a worker died goes to stderr, whether Ray prints it while the job runs or
    when the process exits."""
    folder = tmp_path / "signs"
    folder.mkdir()
    for name in ("a.png", "crash.png", "b.png"):
        render(Document("sign", [[[("Gate", "center")]]]), Style(font=FONT, size=36)).save(folder / name)
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as stdout, err.open("w") as stderr:
        done = subprocess.run([sys.executable, "-c", CRASHING_OCR, str(folder), ray_cluster, str(out), str(err)],
                              stdout=stdout, stderr=stderr, timeout=300)
    assert done.returncode == 1, err.read_text()[-2000:]  # one input failed
    assert "(raylet)" in out.read_text() + err.read_text(), "Ray printed no note about the dead worker: the test proves nothing"
    records = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}  # records only
    assert sorted(records) == ["a.png", "b.png", "crash.png"]
    assert "died" in records["crash.png"]["error"] and records["a.png"]["text"] == "Gate"


def test_tiny_model_prints_only_its_note(tmp_path):
    out = vlground("tiny-model", "qwen2.5-vl", "tiny", cwd=tmp_path)  # the tokenizer trainer's bar wrote blank lines to fd 1
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr.startswith("wrote a tiny random-weight qwen2.5-vl checkpoint"), (out.stdout, out.stderr)
