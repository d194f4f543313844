"""Every error a user can cause ends as one line on stderr with exit status 2, never a traceback:
checkpoints that are broken in the ways a download or an edit breaks them, and messages of many lines."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vlground.cli.errors import one_line
from vlground.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(path)
    return path


def _broken_copy(tiny_checkpoint, tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(tiny_checkpoint("qwen2.5-vl"), folder)
    return folder


def _one_line_error(res):
    lines = [line for line in res.stderr.strip().splitlines() if not line.startswith("Loading weights")]  # transformers' bar
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


def test_a_chat_template_tripping_the_sandbox(tiny_checkpoint, tmp_path, photo):
    folder = _broken_copy(tiny_checkpoint, tmp_path, "template")
    (folder / "chat_template.jinja").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    line = _one_line_error(runner.invoke(app, ["detect", str(photo), "a car", "--model", str(folder), "--device", "cpu"]))
    assert "template" in line and "unsafe" in line


def test_weights_of_other_shapes_than_the_config(tiny_checkpoint, tmp_path, photo):
    folder = _broken_copy(tiny_checkpoint, tmp_path, "shapes")
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["intermediate_size"] *= 2
    (folder / "config.json").write_text(json.dumps(config))
    line = _one_line_error(runner.invoke(app, ["detect", str(photo), "a car", "--model", str(folder), "--device", "cpu"]))
    assert "shape" in line


def test_a_weights_pickle_that_would_run_code_is_refused(tiny_checkpoint, tmp_path, photo):
    import torch

    folder = _broken_copy(tiny_checkpoint, tmp_path, "pickle")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"weight": Payload()}, folder / "pytorch_model.bin")
    line = _one_line_error(runner.invoke(app, ["detect", str(photo), "a car", "--model", str(folder), "--device", "cpu"]))
    assert "refused" in line and "system" in line and not marker.exists()


def test_missing_weights_advise_hf_download(tmp_path, photo):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache")}
    proc = subprocess.run([sys.executable, "-m", "vlground.cli.main", "detect", str(photo), "a car", "--model",
                           "Qwen/Qwen2.5-VL-3B-Instruct"], capture_output=True, text=True, env=env, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "hf download Qwen/Qwen2.5-VL-3B-Instruct" in lines[0], proc.stderr


def test_usage_errors_are_one_line_naming_what_is_wrong():
    line = _one_line_error(runner.invoke(app, ["detect", "--no-such-flag"]))
    assert "--no-such-flag" in line and "-h for help" in line


def test_messages_of_several_lines_become_one():
    message = "cannot find X. Provide it one of these ways:\n  - pass a folder\n  - download it\nSet HF_HUB_OFFLINE=1."
    assert one_line(message) == "cannot find X. Provide it one of these ways: pass a folder; download it; Set HF_HUB_OFFLINE=1."
    assert one_line("plain") == "plain"


def test_a_reader_that_leaves_ends_the_run_quietly(tmp_path):
    """`vlground ocr ... --out - | head`: no error line, no traceback once the pipe closes."""
    from vlground.ocr.synthetic import Document, Style, render

    for index in range(3):
        render(Document("sign", [[[(f"Gate {index}", "center")]]]), Style(size=40)).save(tmp_path / f"{index}.png")
    run = subprocess.Popen([sys.executable, "-m", "vlground.cli.main", "ocr", str(tmp_path), "--out", "-", "--workers", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert run.stdout.read(10).startswith(b'{"path"')
    run.stdout.close()
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 1 and b"error" not in stderr and b"Traceback" not in stderr, stderr.decode()


def test_an_eof_error_inside_a_command_is_not_taken_for_ctrl_c(monkeypatch):
    """click turns EOFError into its Abort, which the CLI maps to exit 130 as for Ctrl-C: an EOFError
    from a damaged file must instead reach the user (here the test) as the error it is."""
    import vlground.grammar

    def truncated(*args, **kwargs):
        raise EOFError("Ran out of input")

    monkeypatch.setattr(vlground.grammar, "parse", truncated)
    res = runner.invoke(app, ["parse", "<ref>a</ref><box>(1,2),(3,4)</box>", "--family", "qwen-vl", "--image-size", "100x100"])
    assert res.exit_code != 130 and isinstance(res.exception, EOFError), (res.exit_code, res.output)


@pytest.mark.parametrize("command", ["ocr", "label"])
def test_a_ray_address_where_nothing_listens_is_one_line_soon_and_leaves_no_output(command, photo, tmp_path):
    import socket
    import time

    with socket.socket() as probe:  # a port nobody listens on, held bound so no other process takes it meanwhile
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        out = tmp_path / "o.jsonl"
        args = {"ocr": ["ocr", str(photo)], "label": ["label", str(photo), "-c", "car", "--format", "jsonl"]}[command]
        started = time.monotonic()
        res = runner.invoke(app, [*args, "--out", str(out), "--ray", f"127.0.0.1:{port}"])
    assert time.monotonic() - started < 30
    assert f"127.0.0.1:{port}" in _one_line_error(res) and not out.exists() and os.listdir(tmp_path) == []


def test_ray_not_installed_is_an_install_hint_and_leaves_no_output(photo, tmp_path, monkeypatch):
    import vlground.extras

    real = vlground.extras.missing
    monkeypatch.setattr(vlground.extras, "missing", lambda extra, *m: ["ray"] if extra == "ray" else real(extra, *m))
    res = runner.invoke(app, ["ocr", str(photo), "--out", str(tmp_path / "o.jsonl"), "--ray", "local"])
    assert "pip install 'vlground[ray]'" in _one_line_error(res) and os.listdir(tmp_path) == []


_INTERRUPTED_SESSION = '''
import os, signal, time

import vlground.grammar
from typer.testing import CliRunner
from vlground.cli.main import app


def test_a_long_command_in_process(monkeypatch):
    def long_parse(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the user's first Ctrl-C, while the command runs (not on a timer)
        time.sleep(60)

    monkeypatch.setattr(vlground.grammar, "parse", long_parse)
    CliRunner().invoke(app, ["parse", "x", "--family", "qwen-vl", "--image-size", "10x10"])


def test_the_next_one():
    open(os.environ["MARKER"], "w").close()
'''


def test_the_first_ctrl_c_stops_the_test_run_even_inside_an_in_process_command(tmp_path):
    """A command catches Ctrl-C (exit 130, records kept); under the test runner it must still stop the runner."""
    (tmp_path / "test_session.py").write_text(_INTERRUPTED_SESSION)
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "MARKER": str(tmp_path / "ran"), "PYTHONPATH": tests}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider", str(tmp_path / "test_session.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and not (tmp_path / "ran").exists(), done.stdout[-2000:] + done.stderr[-2000:]
