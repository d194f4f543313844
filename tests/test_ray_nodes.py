"""A real multi-node Ray cluster on this machine: a head and a second node started with
`ray start --address`, the job's actors spread over both, and `vlground ocr --ray` still gives every
input exactly once when the second node is killed mid-run, and, with `--resume`, when the driver
dies with it.

Ray on Linux puts a node on the machine's network address even when told 127.0.0.1 (it resolves
loopback to a reachable address; only its single-machine mode keeps 127.0.0.1, and that mode refuses
`ray start --address`). So the cluster, the drivers and the probes run in a network namespace of
this test's own whose only interface is loopback (`unshare -rn`): nothing of it can reach, or be
reached from, the network. The nodes and drivers share a token (RAY_AUTH_MODE=token), as a real
cluster with token authentication does. Every wait is bounded; every process of the namespace is
killed at the end, pass or fail."""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from vlground.ocr.synthetic import Document, Style, render

FONT = str(Path(__file__).parent / "fonts" / "DejaVuSansCondensed-Bold.ttf")
IMAGES = 16
PORT = 6379  # Ray's default: the namespace has no other listener


def _netns_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _wait(condition, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s"
        time.sleep(0.2)


class Namespace:
    """A network namespace with loopback only, held by a sleeping process; `run`/`start` run a
    command in it."""

    def __init__(self) -> None:
        for tool in ("unshare", "nsenter", "ip"):
            if shutil.which(tool) is None:
                pytest.fail(f"{tool} is missing: install util-linux and iproute2 (Debian: apt-get install util-linux iproute2)")
        self.holder = subprocess.Popen(["unshare", "-rn", "sleep", "900"], start_new_session=True)
        outside = _netns_of(os.getpid())
        _wait(lambda: _netns_of(self.holder.pid) not in (None, outside) or self.holder.poll() is not None,
              "unshare -rn making a network namespace", 10)
        if self.holder.poll() is not None:
            pytest.skip("this kernel does not let a user make a network namespace (unshare -rn failed)")
        self.inode = _netns_of(self.holder.pid)
        self.prefix = ["nsenter", "-t", str(self.holder.pid), "-U", "-n", "--preserve-credentials"]
        token = secrets.token_hex(32)
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
                    # Ray's multi-node mode, not the single-machine mode of a local test cluster
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
        self.env.pop("RAY_AUTH_TOKEN_PATH", None)
        self.env.pop("RAY_ADDRESS", None)
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *command: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *command], env=self.env, capture_output=True, text=True, timeout=timeout, check=check)

    def start(self, *command: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen([*self.prefix, *command], env=self.env, start_new_session=True, **kwargs)

    def pids(self) -> list[int]:
        """Every process in the namespace (this test's Ray nodes, their workers, drivers, the holder)."""
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and _netns_of(int(p)) == self.inode]

    def close(self) -> None:
        """SIGKILL everything in the namespace, then wait (bounded) until nothing is left."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        raise AssertionError(f"processes of the test's network namespace outlived SIGKILL: {self.pids()}")


def _ray_start(netns: Namespace, *args: str) -> subprocess.Popen:
    """`ray start ... --block` in its own session, so the node (raylet, workers) ends with it."""
    command = [sys.executable, "-c", "from ray.scripts.scripts import main; main()", "start", "--block",
               "--node-ip-address", "127.0.0.1", "--disable-usage-stats", *args]
    return netns.start(*command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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


PROBE = ("import json, ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False); "
         "print('NODES', json.dumps([[n['NodeManagerAddress'], [k for k in n['Resources'] if k.startswith('node_')]] "
         "for n in ray.nodes() if n['Alive']]))")


def _alive(netns: Namespace, address: str) -> dict[str, str]:
    """The cluster's live nodes: {name of the custom resource each joining node was started with
    ("head" for the head): its address}; {} when the probe gave no answer, so a wait asks again.
    Ray may print its own lines on stdout around the answer (a busy raylet's heartbeat warning),
    so the answer is the line the probe marked."""
    try:
        done = netns.run(sys.executable, "-c", PROBE, address)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return {}
    answers = [line.removeprefix("NODES ") for line in done.stdout.splitlines() if line.startswith("NODES ")]
    if not answers:
        return {}
    return {(names or ["head"])[0]: ip for ip, names in json.loads(answers[-1])}


def _join(netns: Namespace, address: str, name: str) -> subprocess.Popen:
    return _ray_start(netns, "--address", address, "--num-cpus", "2", "--resources", json.dumps({f"node_{name}": 1}))


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback  # ::ffff:127.0.0.1 too


def _listening(netns: Namespace) -> set[str]:
    """The addresses TCP sockets listen on in the namespace."""
    lines = netns.run("ss", "-Htln").stdout.splitlines()
    return {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in lines}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def netns():
    namespace = Namespace()
    try:
        yield namespace
    finally:
        namespace.close()


@pytest.fixture
def signs(tmp_path) -> Path:
    folder = tmp_path / "signs"
    folder.mkdir()
    for i in range(IMAGES):
        render(Document("sign", [[[(f"GATE {i:02d}", "center")]]]), Style(font=FONT, size=36)).save(folder / f"{i:02d}.png")
    return folder


def test_a_second_node_that_dies_mid_run_loses_and_duplicates_nothing(netns, signs, tmp_path):
    temp = tempfile.mkdtemp(prefix="vlr", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        _ray_start(netns, "--head", "--port", str(PORT), "--num-cpus", "4", "--include-dashboard", "false", "--temp-dir", temp)
        address = f"127.0.0.1:{PORT}"
        _wait(lambda: "head" in _alive(netns, address), "the head node starting", 120)
        second = _join(netns, address, "second")
        _wait(lambda: "node_second" in _alive(netns, address), "the second node joining the cluster", 120)
        nodes = _alive(netns, address)
        assert set(nodes) == {"head", "node_second"}
        assert all(_loopback(ip) for ip in nodes.values()), nodes
        assert all(_loopback(ip) for ip in _listening(netns)), _listening(netns)

        ocr = [sys.executable, "-m", "vlground.cli.main", "ocr", str(signs), "--ray", address, "--workers", "3", "--no-progress"]
        out = tmp_path / "killed_node.jsonl"
        driver = netns.start(*ocr, "--out", str(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
        _wait(lambda: set(_alive(netns, address)) == {"head"}, "the cluster seeing the second node dead", 120)
        third = _join(netns, address, "third")
        _wait(lambda: set(_alive(netns, address)) == {"head", "node_third"}, "a new second node joining the cluster", 120)
        out = tmp_path / "killed_driver.jsonl"
        driver = netns.start(*ocr, "--out", str(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait(lambda: _actors_on(third) and len(_lines(out)) >= 2, "an actor on the new node and two records", 240)
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=30)
        _kill_node(third)
        killed_at = len(_lines(out))
        assert killed_at < IMAGES, "the driver finished before it was killed; the test proves nothing"
        resumed = netns.run(*ocr, "--out", str(out), "--resume", timeout=300, check=False)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert f"skipped {killed_at}" in resumed.stderr
        records = _lines(out)
        assert sorted(Path(r["path"]).name for r in records) == [f"{i:02d}.png" for i in range(IMAGES)]
        assert all(r["error"] is None for r in records)
    finally:
        netns.close()
        shutil.rmtree(temp, ignore_errors=True)
