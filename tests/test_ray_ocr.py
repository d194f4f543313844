"""The embedded OCR engine on a real local Ray cluster: single-threaded actors give the records one
worker process gives, each page job once, a bad file an error record."""
from __future__ import annotations

from pathlib import Path

from vlground.jobs.executors import InProcess
from vlground.jobs.ocr import PageWorker
from vlground.jobs.ray_pool import RayExecutor, RaySettings
from vlground.io.documents import PageJob
from vlground.ocr.ppocr import EngineSpec
from vlground.ocr.synthetic import Document, Style, render
from vlground.io.sources import Source

FONT = str(Path(__file__).parent / "fonts" / "DejaVuSansCondensed-Bold.ttf")


def test_ppocr_on_ray_reads_as_a_worker_process(ray_cluster, tmp_path):
    paths = []
    for i, words in enumerate(["OPEN 24 HOURS", "EXIT", "NO PARKING"]):
        path = tmp_path / f"sign{i}.png"
        render(Document("sign", [[[(words, "center")]]]), Style(font=FONT, size=40)).save(path)
        paths.append(path)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    jobs = [PageJob(Source(str(p))) for p in [*paths, tmp_path / "bad.png"]]
    alone = {r["path"]: r for _, r in InProcess().run(PageWorker(EngineSpec(), max_image_pixels=None), jobs)}
    on_ray = [r for _, r in RayExecutor(RaySettings(ray_cluster, workers=2)).run(PageWorker(EngineSpec(), max_image_pixels=None), jobs)]
    assert sorted(r["path"] for r in on_ray) == sorted(alone)
    assert all(r == alone[r["path"]] for r in on_ray)
    assert alone[str(paths[0])]["text"] == "OPEN 24 HOURS" and alone[str(tmp_path / "bad.png")]["error"]
