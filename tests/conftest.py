import os
import signal
import sys
import threading

import pytest

# No test may reach a model hub: missing weights must fail the way an offline user sees it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vlground.cli import verbosity
from vlground.testing import make_tiny_model


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny matrices on a 2-core machine: one thread avoids OpenMP oversubscription stalls, which made
    tiny-model generation up to 30x slower here. The light install has no torch: nothing to set."""
    try:
        import torch
    except ImportError:
        yield
        return

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# What a command run in process sets in os.environ for the rest of the process (see quiet_libraries).
_COMMAND_VARIABLES = (*verbosity._QUIET, "HF_HUB_DISABLE_PROGRESS_BARS", verbosity.VERBOSE)


@pytest.fixture(autouse=True)
def command_variables_as_they_were():
    """Each test leaves the variables an in-process command sets (quiet_libraries: PYTHONWARNINGS=ignore,
    TRANSFORMERS_VERBOSITY=error, ...; --verbose: VLGROUND_VERBOSE=1) as it found them: every
    subprocess a later test starts with {**os.environ} inherited them, and its assertions about what
    the libraries print held or failed depending on which tests ran before. Only these: ray.init sets
    variables its later drivers need (RAY_AUTH_MODE, ...), also when a test starts the session's
    cluster from its body (request.getfixturevalue)."""
    before = {name: os.environ.get(name) for name in _COMMAND_VARIABLES}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster of 2 CPUs for every Ray test (starting one costs seconds); yields its
    address (on 127.0.0.1), which a subprocess joins with `--ray ADDRESS`."""
    from vlground.jobs.ray_pool import LOCAL, connect

    connect(LOCAL, cpus=2)  # before this process imports ray (see connect)
    import ray

    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """tiny_checkpoint(family) -> folder of a tiny random checkpoint, built once per session."""
    built = {}

    def get(family: str):
        if family not in built:
            built[family] = make_tiny_model(family, tmp_path_factory.mktemp(family.replace(".", "_")))
        return built[family]

    return get


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_stops_the_test_run():
    """A command run in process (typer's CliRunner) catches Ctrl-C as a user wants it to (records kept,
    exit 130), and CliRunner turns that exit into a result: the runner's interrupt would be lost and
    the first Ctrl-C would not stop pytest. A SIGINT that arrives during `invoke` is raised again
    once the command has returned."""
    from typer.testing import CliRunner

    invoke = CliRunner.invoke

    def invoke_passing_ctrl_c_on(self, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            return invoke(self, *args, **kwargs)
        received = []

        def on_sigint(signum, frame):
            received.append(signum)
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            result = invoke(self, *args, **kwargs)
        finally:
            signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt
        return result

    CliRunner.invoke = invoke_passing_ctrl_c_on
    yield
    CliRunner.invoke = invoke


@pytest.fixture(params=[True, False], ids=["pyarrow", "light install"])
def arrow(request, monkeypatch):
    """Runs a test with pyarrow (the arrow extra, column-wise scoring) and again as the light install
    has it: without (pyarrow's sys.modules entry None, which is how Python marks a module absent)."""
    if request.param:
        pytest.importorskip("pyarrow", reason="the column path needs the arrow extra")
    else:
        monkeypatch.setitem(sys.modules, "pyarrow", None)
    return request.param
