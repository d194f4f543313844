"""An unavailable --device is a one-line error with exit status 2 naming what is available, told
before any weight is read (the model named here does not exist: reaching it would be a weights error)."""
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vlground.cli.main import app
from vlground.core.device import DeviceUnavailableError, available_devices, check_device

runner = CliRunner()


def _commands_with_device():
    """Every command path that takes --device: detect, ocr, bench refcoco, label, ..."""
    import typer

    found, todo = [], [([], typer.main.get_command(app))]
    while todo:
        path, command = todo.pop()
        if any("--device" in getattr(p, "opts", ()) for p in command.params):
            found.append(path)
        todo += [([*path, name], sub) for name, sub in getattr(command, "commands", {}).items()]
    return found


def test_device_names_are_checked_against_this_machine():
    assert check_device("auto") == "auto" and check_device("cpu") == "cpu"
    assert available_devices()[0] == "cpu"
    with pytest.raises(DeviceUnavailableError, match="'gpu' is not a device name.*available here: cpu"):
        check_device("gpu")
    count = sum(d.startswith("cuda") for d in available_devices())
    with pytest.raises(DeviceUnavailableError, match="available: cpu"):
        check_device(f"cuda:{count}")  # one past the last GPU, or any GPU on a machine without one


def test_cuda_hidden_is_refused_before_any_weight_is_read(tmp_path):
    image = tmp_path / "photo.png"
    image.write_bytes(b"never read")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    for device in ("cuda", "cuda:3"):
        proc = subprocess.run(
            [sys.executable, "-m", "vlground.cli.main", "detect", str(image), "a car", "--device", device,
             "--model", str(tmp_path / "no-such-model")], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 2, (device, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --device:"), (device, proc.stderr)
        assert "available" in lines[0] and "cpu" in lines[0] and "no-such-model" not in proc.stderr
        assert "CUDA_VISIBLE_DEVICES=''" in lines[0]


def test_misspelt_and_absent_devices_are_refused_before_the_model(tmp_path):
    missing = ["--model", str(tmp_path / "no-such-model")]
    for device in ("gpu", "mps", "cuda:0", "cuda1"):
        if device in available_devices():
            continue
        res = runner.invoke(app, ["detect", str(tmp_path / "photo.png"), "a car", "--device", device, *missing])
        assert res.exit_code == 2 and res.stderr.startswith("error: --device:"), (device, res.output)
        assert "no-such-model" not in res.stderr and "available" in res.stderr


def test_every_command_with_a_device_option_checks_it(tmp_path):
    commands = _commands_with_device()
    assert ["detect"] in commands and ["bench", "refcoco"] in commands and ["label"] in commands
    for path in commands:
        res = runner.invoke(app, [*path, "--device", "gpu", "--help"])  # help is eager: it wins over the check
        assert res.exit_code == 0
        res = runner.invoke(app, [*path, "--device", "gpu"])
        assert res.exit_code == 2 and "--device" in res.stderr, (path, res.output)
