"""The job mechanism (`vlground.jobs`) with toy workers: the loop's resume, --retry-failed, Ctrl-C and
summary; the one crash-isolation rule in this process and in a pool of real worker processes (an
input that kills its process costs only itself). Ray's executor is tested with real jobs in the
test_ray_* files."""
from __future__ import annotations

import json
import os

import pytest

from vlground.io.sink import JsonlSink
from vlground.jobs.executors import InProcess, Processes, executor_for
from vlground.jobs.isolation import WorkerSetupError
from vlground.jobs.loop import RunOptions, Task, run_tasks


class Echo:
    """Answers each item with its name and the pid that answered; "raise" makes a whole batch raise
    (as a model that fails on one image does), "poison" kills the process running it, every time."""

    def __init__(self, broken_setup: bool = False) -> None:
        self.broken_setup = broken_setup
        self.calls: list[list[str]] = []
        self.set_up = 0

    def setup(self) -> None:
        if self.broken_setup:
            raise OSError("no weights in /nowhere")
        self.set_up += 1

    def __call__(self, items: list[str]) -> list[dict]:
        self.calls.append(list(items))
        if "poison" in items:
            os._exit(1)
        if "raise" in items:
            raise RuntimeError("the model failed")
        if "stop" in items:
            raise KeyboardInterrupt
        return [{"path": item, "pid": os.getpid(), "error": None} for item in items]

    def failed(self, item: str, reason: str) -> dict:
        return {"path": item, "error": reason}


def _key(record: dict) -> str:
    return record["path"]


def _tasks(items: list[str]) -> list[Task]:
    return [Task(item, item) for item in items]


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_batch_that_raises_is_run_again_item_by_item_in_process():
    worker = Echo()
    got = dict(InProcess(batch_size=3).run(worker, ["a", "raise", "b", "c"]))
    assert sorted(got) == [0, 1, 2, 3]
    assert got[1] == {"path": "raise", "error": "RuntimeError: the model failed"}
    assert [got[i]["error"] for i in (0, 2, 3)] == [None, None, None]
    assert worker.calls == [["a", "raise", "b"], ["c"], ["a"], ["raise"], ["b"]]  # only the failed batch, alone
    assert worker.set_up == 1


def test_an_item_that_kills_its_process_costs_only_itself():
    items = ["a", "b", "poison", "c", "d", "e", "f"]
    got = dict(Processes(workers=2, batch_size=2).run(Echo(), items))
    assert sorted(got) == list(range(len(items)))  # every item exactly once
    assert got[2] == {"path": "poison", "error": "its worker process died"}
    assert all(got[i]["error"] is None and got[i]["path"] == items[i] for i in got if i != 2)
    assert all(got[i]["pid"] != os.getpid() for i in got if i != 2)


def test_a_worker_whose_setup_fails_stops_the_job_with_its_message():
    with pytest.raises(WorkerSetupError, match="could not start: OSError: no weights in /nowhere"):
        list(Processes(workers=2).run(Echo(broken_setup=True), ["a", "b"]))
    with pytest.raises(OSError, match="no weights"):
        list(InProcess().run(Echo(broken_setup=True), ["a"]))


def test_the_loop_resumes_retries_failed_and_writes_each_input_once(tmp_path):
    out = tmp_path / "out.jsonl"
    with JsonlSink(out, _key) as sink:
        first = run_tasks(_tasks(["a", "raise", "b"]), Echo(), InProcess(batch_size=2), sink, progress=False)
    assert (first.done, first.failed, first.ok) == (3, 1, False)
    worker = Echo()
    with JsonlSink(out, _key, resume=True) as sink:
        again = run_tasks(_tasks(["a", "raise", "b", "c"]), worker, InProcess(batch_size=2), sink, progress=False)
    assert (again.done, again.skipped, again.skipped_failed) == (1, 3, 1) and worker.calls == [["c"]]
    with JsonlSink(out, _key, resume=True) as sink:
        retried = run_tasks(_tasks(["a", "b", "c"]), Echo(), InProcess(), sink, retry_failed=True, progress=False)
        retried_again = run_tasks(_tasks(["raise"]), Echo(), InProcess(), sink, retry_failed=True, progress=False)
    assert (retried.done, retried.skipped) == (0, 3)
    assert (retried_again.done, retried_again.failed, retried_again.skipped) == (1, 1, 0)
    assert sorted(r["path"] for r in _lines(out)) == ["a", "b", "c", "raise"]  # the retried record replaced the old


def test_nothing_to_do_sets_no_worker_up_and_known_records_go_first(tmp_path):
    worker = Echo()
    with JsonlSink(tmp_path / "out.jsonl", _key) as sink:
        summary = run_tasks([Task("x", record={"path": "x", "error": "encrypted PDF"})], worker, InProcess(), sink,
                            progress=False)
        assert worker.set_up == 0 and (summary.done, summary.failed) == (1, 1)
        run_tasks(_tasks(["a"]) + [Task("y", record={"path": "y", "error": "no pages"})], worker, InProcess(), sink,
                  progress=False)
    assert [r["path"] for r in _lines(tmp_path / "out.jsonl")] == ["x", "y", "a"]


def test_ctrl_c_keeps_what_is_written_and_says_interrupted(tmp_path):
    out = tmp_path / "out.jsonl"
    with JsonlSink(out, _key) as sink:
        summary = run_tasks(_tasks(["a", "b", "stop", "c"]), Echo(), InProcess(batch_size=1), sink, progress=False)
    assert summary.interrupted and not summary.ok and summary.done == 2
    assert [r["path"] for r in _lines(out)] == ["a", "b"]
    assert "interrupted: run again with --resume" in summary.describe()


def test_the_shared_flags_choose_the_executor():
    assert isinstance(executor_for(RunOptions(), 4), InProcess)
    assert executor_for(RunOptions(workers=3), 2) == Processes(3, 2)
    ray = executor_for(RunOptions(ray="local", workers=2, gpus_per_worker=0.5), 4)
    assert (ray.settings.workers, ray.settings.batch_size, ray.settings.gpus_per_worker) == (2, 4, 0.5)


def test_a_local_ray_cluster_listens_on_loopback_only(ray_cluster):
    """The tests' cluster (and `--ray local`) must not open ports on the machine's network address."""
    assert ray_cluster.startswith("127.0.0.1:")


def test_a_driver_joins_a_cluster_on_loopback_without_being_told_its_mode(ray_cluster):
    """A shell that did not set Ray's single-machine mode still joins a cluster on 127.0.0.1 (Ray
    would look for it at the machine's network address)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    join = ("import sys; from vlground.jobs.ray_pool import connect; connect(sys.argv[1]); "
            "import ray; print('joined', ray.get_runtime_context().gcs_address)")
    done = subprocess.run([sys.executable, "-c", join, ray_cluster], env=env, capture_output=True, text=True, timeout=300)
    # Ray's driver prints its notes ('(raylet) ...', e.g. lagging heartbeats on a busy machine) on stdout too
    joined = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("joined ")]
    assert done.returncode == 0 and joined == [[ray_cluster]], done.stdout[-1500:] + done.stderr[-1500:]
