import os

import pytest

# No test may reach a model hub: missing weights must fail the way an offline user sees it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

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


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster of 2 CPUs for every Ray test (starting one costs seconds); yields its
    address, which a subprocess joins with `--ray ADDRESS`."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
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
