"""`bench refcoco` answered on a real local Ray cluster: the same prediction records and scores as
in one process, each sample once, an unreadable image an error line, all through the bench's sink."""
from __future__ import annotations

import json

from PIL import Image

from vlground.jobs.bench import run_refcoco_bench
from vlground.jobs.loop import RunOptions
from vlground.core.options import GenerationOptions
from vlground.eval.refcoco_data import RefSample


def _predictions(folder) -> list[dict]:
    return sorted((json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()),
                  key=lambda r: r["index"])


def test_refcoco_on_ray_answers_and_scores_as_one_process(ray_cluster, tmp_path, tiny_checkpoint):
    import vlground

    samples = []
    for i in range(5):
        Image.new("RGB", (60 + 10 * i, 50), (50 * i, 100, 100)).save(tmp_path / f"{i}.png")
        samples.append(RefSample(id=f"s{i}", sent=f"the thing {i}", box=(1, 1, 20, 20), width=60 + 10 * i, height=50,
                                 split="val", image=f"{i}.png"))
    samples.append(RefSample(id="gone", sent="missing", box=(1, 1, 2, 2), width=9, height=9, split="val", image="gone.png"))
    model = str(tiny_checkpoint("qwen2.5-vl"))
    common = dict(gt_name="tiny-refcoco", image_root=tmp_path, generation=GenerationOptions(batch_size=2, max_new_tokens=8))
    alone = run_refcoco_bench(vlground.load_model(model), model, samples, tmp_path / "alone", **common)
    on_ray = run_refcoco_bench(None, model, samples, tmp_path / "ray", run=RunOptions(ray=ray_cluster, workers=2), **common)
    assert _predictions(tmp_path / "ray") == _predictions(tmp_path / "alone")  # each sample once, same answers
    assert [r["index"] for r in _predictions(tmp_path / "ray")] == list(range(6))
    assert _predictions(tmp_path / "ray")[5]["error"]
    assert {k: on_ray[k] for k in ("accuracy", "errors", "n")} == {k: alone[k] for k in ("accuracy", "errors", "n")}
