"""A real OpenAI-compatible server for tests: `transformers serve` on 127.0.0.1, on CPU, offline.

Started without a fixed model, it loads each local checkpoint folder a request names (its `model`
field) on first use, so one server answers for tiny Qwen2.5-VL and Qwen3-VL checkpoints at once.
Needs the `transformers[serving]` extra (in the `dev` extra). Every wait is bounded in time."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVE_COMMAND = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())", "serve"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TransformersServer:
    """A running `transformers serve` process; `url` is its API base (http://127.0.0.1:PORT/v1)."""

    def __init__(self, port: int, log_path: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}/v1"
        self.log_path = log_path
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*SERVE_COMMAND, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "info"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )

    def wait_ready(self, timeout: float) -> None:
        """Until /v1/models answers; a RuntimeError with the end of the server's log after `timeout` s
        or when the process ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as answer:
                    json.loads(answer.read())
                    return
            except (OSError, ValueError):
                time.sleep(0.5)
        raise RuntimeError(f"transformers serve did not answer within {timeout:g} s:\n{self.log_tail()}")

    def warm(self, model_dirs: list[Path], timeout: float = 120.0) -> None:
        """Load each checkpoint now (one tiny request each), so tests do not pay for it and the
        server lists the models in this order."""
        for folder in model_dirs:
            payload = {"model": str(folder), "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
            request = urllib.request.Request(self.url + "/chat/completions", data=json.dumps(payload).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read()

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (its whole process group), then kill it if it lingers."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_bytes()[-chars:].decode("utf-8", "replace")


@contextmanager
def transformers_server(log_dir: Path, model_dirs: list[Path] = (), startup_timeout: float = 120.0) -> Iterator[TransformersServer]:
    """A `transformers serve` on a free port, ready and with `model_dirs` loaded; stopped on exit."""
    server = TransformersServer(free_port(), Path(log_dir) / "transformers-serve.log")
    try:
        server.wait_ready(startup_timeout)
        server.warm(list(model_dirs))
        yield server
    finally:
        server.stop()
