"""A real multi-node Ray cluster on this machine (127.0.0.1 only): a head and a second node started
with `ray start --address`, the job's actors spread over both, and `vlground ocr --ray` still gives
every input exactly once when the second node is killed mid-run, and, with `--resume`, when the
driver dies with it. Every wait is bounded; every Ray process this test starts is ended in a
`finally` (by its session, never by `ray stop`, which would end other clusters on the machine)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from vlground.ocr.synthetic import Document, Style, render

FONT = str(Path(__file__).parent / "fonts" / "DejaVuSansCondensed-Bold.ttf")
IMAGES = 16
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(*args: str) -> subprocess.Popen:
    """`ray start ... --block` in its own session, so the node (raylet, workers) ends with a killpg."""
    command = [sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", "--block",
               "--node-ip-address", "127.0.0.1", "--disable-usage-stats", *args]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _session_pids(leader: subprocess.Popen) -> list[int]:
    """The processes of the session `leader` started (a Ray node's raylet and workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == leader.pid:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _kill_node(node: subprocess.Popen) -> None:
    """SIGKILL every process of the node at once, as a machine that dies would lose them."""
    for pid in _session_pids(node):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    node.wait(timeout=30)


def _actors_on(node: subprocess.Popen) -> list[int]:
    """The node's processes running a job actor (Ray titles them 'ray::...MapBatches(PageWorker)')."""
    found = []
    for pid in _session_pids(node):
        try:
            if b"(PageWorker)" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def _wait(condition, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s"
        time.sleep(0.2)


def _alive(address: str) -> set[str]:
    """The names of the cluster's live worker nodes (each started with a custom resource of its name)."""
    probe = ("import json, ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
             "print(json.dumps([k for n in ray.nodes() if n['Alive'] for k in n['Resources'] if k.startswith('node_')]))")
    done = subprocess.run([sys.executable, "-c", probe, address], env=ENV, capture_output=True, text=True, timeout=120)
    return set(json.loads(done.stdout.strip().splitlines()[-1])) if done.returncode == 0 and done.stdout.strip() else set()


def _join(address: str, name: str) -> subprocess.Popen:
    return _ray_start("--address", address, "--num-cpus", "2", "--resources", json.dumps({f"node_{name}": 1}))


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def signs(tmp_path) -> Path:
    folder = tmp_path / "signs"
    folder.mkdir()
    for i in range(IMAGES):
        render(Document("sign", [[[(f"GATE {i:02d}", "center")]]]), Style(font=FONT, size=36)).save(folder / f"{i:02d}.png")
    return folder


def test_a_second_node_that_dies_mid_run_loses_and_duplicates_nothing(signs, tmp_path):
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="vlr", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    head = _ray_start("--head", "--port", str(port), "--num-cpus", "4", "--include-dashboard", "false", "--temp-dir", temp)
    nodes = [head]
    try:
        second = _join(address, "second")
        nodes.append(second)
        _wait(lambda: _alive(address) == {"node_second"}, "the second node joining the cluster", 120)

        ocr = [sys.executable, "-m", "vlground.cli.main", "ocr", str(signs), "--ray", address, "--workers", "3", "--no-progress"]
        out = tmp_path / "killed_node.jsonl"
        driver = subprocess.Popen([*ocr, "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _wait(lambda: _actors_on(second) and len(_lines(out)) >= 2, "an actor on the second node and two records", 240)
            before = len(_lines(out))
            _kill_node(second)
            _, stderr = driver.communicate(timeout=300)
        finally:
            driver.kill()
        assert before < IMAGES, "the run finished before the node was killed; the test proves nothing"
        assert driver.returncode == 0, stderr[-2000:]
        records = _lines(out)
        assert sorted(Path(r["path"]).name for r in records) == [f"{i:02d}.png" for i in range(IMAGES)]  # each exactly once
        assert all(r["error"] is None and "GATE" in r["text"] for r in records)

        # the driver dies with the node: --resume on what is left of the cluster finishes the job
        _wait(lambda: _alive(address) == set(), "the cluster seeing the second node dead", 120)
        third = _join(address, "third")
        nodes.append(third)
        _wait(lambda: _alive(address) == {"node_third"}, "a new second node joining the cluster", 120)
        out = tmp_path / "killed_driver.jsonl"
        driver = subprocess.Popen([*ocr, "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait(lambda: _actors_on(third) and len(_lines(out)) >= 2, "an actor on the new node and two records", 240)
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=30)
        _kill_node(third)
        killed_at = len(_lines(out))
        assert killed_at < IMAGES, "the driver finished before it was killed; the test proves nothing"
        resumed = subprocess.run([*ocr, "--out", str(out), "--resume"], env=ENV, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert f"skipped {killed_at}" in resumed.stderr
        records = _lines(out)
        assert sorted(Path(r["path"]).name for r in records) == [f"{i:02d}.png" for i in range(IMAGES)]
        assert all(r["error"] is None for r in records)
    finally:
        for node in reversed(nodes):
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)  # ray start --block stops its node's processes on SIGTERM
                try:
                    node.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            if _session_pids(node):
                _kill_node(node)
        shutil.rmtree(temp, ignore_errors=True)
