"""The notebooks run top to bottom (their model cells are commented out: no weights in CI)."""
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path):
    scope: dict = {}
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert cells
    for cell in cells:
        exec(compile("".join(cell["source"]), f"{path.name}", "exec"), scope)
    assert scope["result"].detections[0].box[0] == pytest.approx(765 * 1024 / 1036)
