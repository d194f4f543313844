"""benchmarks/gpu_runtime.sh --dry-run: every step of the GPU run at tiny sizes on the CPU, in a Python
that cannot import supervision, shapely, pycocotools or rapidocr (the GPU machine's Python has none of
them), so the script and the model path it needs cannot rot between GPU runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABSENT_ON_THE_GPU_MACHINE = ("supervision", "shapely", "pycocotools", "rapidocr", "rapidocr_onnxruntime")

BLOCKER = f'''
import importlib.abc, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {ABSENT_ON_THE_GPU_MACHINE!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent on the GPU machine)")
        return None

sys.meta_path.insert(0, Absent())
'''


def gpu_machine_env(tmp_path: Path) -> dict:
    """This environment with the venv's python first on PATH and the packages above unimportable."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    return dict(os.environ, PYTHONPATH=str(site), PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                OUT=str(tmp_path / "out"))


def test_the_gpu_script_dry_run_runs_every_step_without_the_packages_the_gpu_machine_lacks(tmp_path):
    env = gpu_machine_env(tmp_path)
    blocked = subprocess.run([sys.executable, "-c", "import supervision"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "absent on the GPU machine" in blocked.stderr  # the block holds
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_runtime.sh"), "--dry-run"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "out"
    for name, runs in (("runtime_tiny.json", {"plain", "static", "refill", "token_budget", "prefetch", "all"}),
                       ("runtime_qwen-vl-tiny.json", {"plain", "refill", "prefetch", "all"})):
        result = json.loads((out / name).read_text())
        assert result["device"] == "cpu"
        for workload in ("standard", "varying"):
            figures = result[workload]
            assert set(figures) == runs, (name, workload)
            assert all("error" not in f and f["img_per_s"] > 0 for f in figures.values()), figures
            # fp32 on the CPU: every mean answers exactly as plain batches
            assert all(f["answers_equal_plain"] == 1.0 for run, f in figures.items() if run != "plain"), figures
    # static last: on a GPU its first batch compiles the decode step, which must not eat the other runs' time
    ran = [line.split()[:2] for line in (out / "runtime.log").read_text().splitlines() if line.startswith(("standard ", "varying "))]
    assert [run for _, run in ran[-2:]] == ["static", "static"] and len(ran) == 12, ran
    assert "warm_up_s" in json.loads((out / "runtime_tiny.json").read_text())["standard"]["static"]
    varying = json.loads((out / "runtime_tiny.json").read_text())["varying"]
    assert varying["refill"]["utilisation"] > varying["plain"]["utilisation"]
    native = json.loads((out / "runtime_qwen-vl-tiny.json").read_text())["varying"]
    assert 0 < native["plain"]["utilisation"] < 1 and native["plain"]["batches"]  # plain native batches counted too
    assert not list(ROOT.glob("benchmarks/results/cpu_*.json"))  # a dry run writes nothing into the repository
