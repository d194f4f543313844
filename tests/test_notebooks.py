"""The notebook gallery: every notebook runs top to bottom in a Jupyter kernel of this interpreter
(nbclient), on CPU, without error, and shows pictures; the committed files carry their outputs,
pictures included, and stay small. A check cell appended at test time asserts what each notebook
is about (it is not saved)."""
import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_BYTES = 300_000
PICTURES = ("image/png", "image/jpeg")

CHECKS = {
    "quickstart.ipynb": """
assert abs(result.detections[0].box[0] - 765 * 1024 / 1036) < 1e-6  # the 1036-pixel input frame, undone
""",
    "grounding_and_detection.ipynb": """
assert [len(r.detections) for r in results] == [1, 3, 1, 1, 1, 1, 1]  # every family's answer read
assert [d.label for d in results[1].detections] == ["Two apples", "Two apples", "a bowl"]  # no label lost
assert results[4].detections[0].box == results[6].detections[0].box or \\
    max(abs(a - b) for a, b in zip(results[4].detections[0].box, results[6].detections[0].box)) < 1.5
assert tiny.image_size == photo.size and tiny.raw  # the tiny model answered on the photo
assert tiny.image.size == photo.size and tiny._repr_png_()  # and its result draws itself
""",
    "coordinate_frames.ipynb": """
right, as_original, as_1000 = (r.detections[0].box for r in readings)
assert max(abs(a - b) for a, b in zip(right, truth)) < 2  # the right frame gives the truth back
assert right[0] - as_original[0] > 400 and as_1000[2] - right[2] > 200  # the wrong ones miss by far
""",
    "ocr.ipynb": """
assert summary.failed == 0 and len(records) == 3 and all(r.lines for r in records)
assert "TOTAL" in records[0].text and "Platform 4" in records[1].text
""",
    "gui_click.ipynb": """
x1, y1, x2, y2 = target.box
inside = lambda p: x1 <= p[0] <= x2 and y1 <= p[1] <= y2
assert len(clicks) == 4 and all(inside(r.detections[0].point) for r in clicks)  # every dialect lands on the target
assert not inside(readings[1].detections[0].point) and not inside(readings[2].detections[0].point)  # wrong frames miss
click = clicked.detections[0]
assert inside(click.point) and click.label == target.instruction and click.attributes["point_from"] == "point"
assert size_seen != screen.image.size  # the tiny model saw another size: a frame error would show
""",
    "evaluation.ipynb": """
assert scores.summary()["n"] == 60 and 0.3 < scores.summary()["accuracy"] < 0.95 and scores.summary()["unparsable"] == 7
assert "http" not in report.read_text() and report.read_text().count("<img") > 10
""",
}


def _pictures(nb) -> int:
    return sum(any(m in o.get("data", {}) for m in PICTURES) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory, monkeypatch_module):
    """A kernel spec that starts THIS interpreter with this checkout first on the path."""
    folder = tmp_path_factory.mktemp("jupyter")
    spec = folder / "kernels" / "vlground-tests"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "vlground tests", "language": "python",
        "env": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"},
    }))
    monkeypatch_module.setenv("JUPYTER_PATH", str(folder))
    return "vlground-tests"


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_every_notebook_has_a_check():
    assert sorted(CHECKS) == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_has_pictures_and_is_small(path):
    nb = nbformat.read(path, as_version=4)
    assert _pictures(nb) >= 1, "commit the notebook with its outputs"
    assert not any(o.output_type == "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert path.stat().st_size < MAX_BYTES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_draws(path, kernel):
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CHECKS[path.name]))
    NotebookClient(nb, timeout=120, kernel_name=kernel, resources={"metadata": {"path": str(path.parent)}}).execute()
    assert _pictures(nb) >= 1
