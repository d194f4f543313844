"""`vlground label --ray` on a real local Ray cluster (the session's, 2 CPUs): the same records as
one process, pyarrow URIs as inputs, and every input exactly once when a worker process is killed
mid-run, when the driver is killed and the job resumed, and when an input kills its worker every time."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from vlground.cli.main import app
from vlground.jobs.label import LabelOptions, run_label
from vlground.jobs.loop import RunOptions
from vlground.core.options import GenerationOptions

CATEGORIES = ("cat", "dog")


@pytest.fixture
def folder(tmp_path) -> Path:
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(8):
        Image.new("RGB", (48 + 8 * i, 40 + 4 * i), (30 * i, 120, 90)).save(images / f"img{i}.png")
    return images


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _names(path: Path) -> list[str]:
    return sorted(Path(r["path"]).name for r in _records(path))


def _options(tiny_checkpoint, max_new_tokens: int = 8, batch_size: int = 2, format: str = "jsonl", **run) -> LabelOptions:
    generation = GenerationOptions(max_new_tokens=max_new_tokens, batch_size=batch_size)
    return LabelOptions(categories=CATEGORIES, model=str(tiny_checkpoint("qwen2.5-vl")), generation=generation, format=format,
                        run=RunOptions(**run))


def _wait_for_records(path: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (path.is_file() and len(path.read_text().splitlines()) >= count):
        assert time.monotonic() < deadline, f"no {count} records in {path} after {timeout} s"
        time.sleep(0.1)


def _actor_pids(name: str) -> list[int]:
    """Ray workers running our actor: Ray titles their processes 'ray::...MapBatches(NAME)...'."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if entry.isdigit() and command.startswith("ray::") and f"({name})" in command:
            pids.append(int(entry))
    return pids


def test_ray_run_equals_one_process_and_reads_pyarrow_uris(ray_cluster, folder, tmp_path, tiny_checkpoint):
    alone = run_label([str(folder)], tmp_path / "alone", _options(tiny_checkpoint, format="coco"))
    uri = folder.resolve().as_uri()  # file:///...: read through pyarrow's filesystem, as s3:// would be
    result = CliRunner().invoke(app, ["label", uri, "--ray", ray_cluster, "--workers", "2", "--format", "coco",
                                      "--out", str(tmp_path / "ray"), "--model", str(tiny_checkpoint("qwen2.5-vl")),
                                      "--max-new-tokens", "8", "--batch-size", "2", "-c", "cat", "-c", "dog"])
    assert result.exit_code == 0 and alone.ok, result.output
    assert "done 8, failed 0" in result.output
    on_ray = {Path(r["path"]).name: r for r in _records(tmp_path / "ray" / "records.jsonl")}
    assert all(r["path"].startswith("file:///") for r in on_ray.values())
    for record in _records(tmp_path / "alone" / "records.jsonl"):
        assert {**on_ray[Path(record["path"]).name], "path": record["path"], "abspath": record["abspath"]} == record  # URI vs file
    coco = json.loads((tmp_path / "ray" / "instances.json").read_text())
    assert len(coco["images"]) == 8 and [c["name"] for c in coco["categories"]] == list(CATEGORIES)


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(ray_cluster, folder, tmp_path, tiny_checkpoint):
    out = tmp_path / "labels.jsonl"
    options = _options(tiny_checkpoint, ray=ray_cluster, workers=2, batch_size=1, max_new_tokens=24)
    outcome = {}
    job = threading.Thread(target=lambda: outcome.setdefault("summary", run_label([str(folder)], out, options)))
    job.start()
    _wait_for_records(out, 1)
    victims = _actor_pids("DetectWorker")
    assert victims, "no labelling actor found to kill"
    os.kill(victims[0], signal.SIGKILL)
    job.join(timeout=240)
    assert not job.is_alive()
    assert victims[0] not in _actor_pids("DetectWorker")
    assert outcome["summary"].ok and outcome["summary"].done == 8
    assert _names(out) == [f"img{i}.png" for i in range(8)]  # each exactly once
    assert all(r["error"] is None for r in _records(out))


def test_a_killed_driver_resumes_without_loss_or_duplicates(ray_cluster, folder, tmp_path, tiny_checkpoint):
    out = tmp_path / "yolo"
    args = ["label", str(folder), "--ray", ray_cluster, "--workers", "2", "--batch-size", "1", "--format", "yolo",
            "--out", str(out), "--model", str(tiny_checkpoint("qwen2.5-vl")), "--max-new-tokens", "24", "-c", "cat"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "vlground.cli.main", *args], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_records(out / "records.jsonl", 2, timeout=180)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    killed_at = len(_records(out / "records.jsonl"))
    assert killed_at < 8, "the driver finished before it was killed; the test proves nothing"
    assert not (out / "data.yaml").exists()
    resumed = CliRunner().invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert f"skipped {killed_at}" in resumed.output
    assert _names(out / "records.jsonl") == [f"img{i}.png" for i in range(8)]
    assert sorted(p.name for p in (out / "labels").iterdir()) == [f"img{i}.txt" for i in range(8)]


def test_a_model_that_cannot_load_on_the_workers_fails_in_one_line(ray_cluster, folder, tmp_path):
    result = CliRunner().invoke(app, ["label", str(folder), "-c", "cat", "--out", str(tmp_path / "o.jsonl"),
                                      "--model", str(tmp_path / "no-model"), "--ray", ray_cluster])
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert line.startswith("error: a Ray worker could not start: ") and "no-model" in line


class _Echo:
    """A worker whose input "poison" kills its process, every time, as a crashing native library would."""

    def setup(self) -> None:
        pass

    def __call__(self, items: list[str]) -> list[dict]:
        if "poison" in items:
            os._exit(1)
        return [{"path": item, "pid": os.getpid(), "error": None} for item in items]

    def failed(self, item: str, reason: str) -> dict:
        return {"path": item, "error": reason}


def test_an_input_that_kills_every_worker_gets_an_error_record(ray_cluster):
    import ray.cloudpickle

    from vlground.jobs.ray_pool import RayExecutor, RaySettings

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test file
    items = ["a", "b", "poison", "c", "d", "e"]
    got = [r for _, r in RayExecutor(RaySettings(ray_cluster, workers=2, batch_size=2, retries=1)).run(_Echo(), items)]
    assert sorted(r["path"] for r in got) == sorted(items)
    by_item = {r["path"]: r for r in got}
    assert "died on every one of 2 tries" in by_item["poison"]["error"]
    assert all(by_item[i]["error"] is None for i in items if i != "poison")


def test_a_local_pool_that_cannot_fit_is_refused_not_left_waiting(ray_cluster):
    from vlground.jobs.ray_pool import RayExecutor, RaySettings

    with pytest.raises(ValueError, match="--gpus-per-worker 1: this machine has 0 GPUs"):
        list(RayExecutor(RaySettings("local", gpus_per_worker=1)).run(_Echo(), ["a"]))
