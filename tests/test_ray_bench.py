"""`bench refcoco` answered on a real local Ray cluster: the same prediction records as in one
process, each sample once, an unreadable image an error line."""
from __future__ import annotations

from PIL import Image

from vlground.eval.bench import _answer_chunk
from vlground.eval.refcoco_data import RefSample
from vlground.ray_jobs import refcoco_records
from vlground.scale import RaySettings


def test_refcoco_on_ray_answers_as_one_process(ray_cluster, tmp_path, tiny_checkpoint):
    import vlground

    samples = []
    for i in range(5):
        Image.new("RGB", (60 + 10 * i, 50), (50 * i, 100, 100)).save(tmp_path / f"{i}.png")
        samples.append(RefSample(id=f"s{i}", sent=f"the thing {i}", box=(1, 1, 20, 20), width=60 + 10 * i, height=50,
                                 split="val", image=f"{i}.png"))
    samples.append(RefSample(id="gone", sent="missing", box=(1, 1, 2, 2), width=9, height=9, split="val", image="gone.png"))
    model = str(tiny_checkpoint("qwen2.5-vl"))
    generation = {"batch_size": 2, "max_new_tokens": 8}
    alone = _answer_chunk(vlground.load_model(model), samples, list(range(6)), tmp_path, generation)
    settings = RaySettings(ray_cluster, workers=2, batch_size=2)
    on_ray = list(refcoco_records(model, {}, samples, list(range(6)), tmp_path, generation, settings))
    assert sorted(on_ray, key=lambda r: r["index"]) == alone
    assert alone[5]["error"] and all(r["error"] is None for r in alone[:5])
