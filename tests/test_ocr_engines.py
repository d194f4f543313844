"""The built-in engines behind one interface: both selectable by name, neither reaching the network
(checked in a fresh process that refuses every connection), missing models refused, not fetched."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vlground.ocr.engine import EngineUnavailableError
from vlground.ocr.ppocr import BUILT_IN_ENGINES, PPOCR, PPOCR_V4, PPOCRv6, _char_geometry, built_in_engine
from vlground.ocr.synthetic import Document, Style, render

sys.path.insert(0, str(Path(__file__).parent))
from ocr_app import ocr_app, read_records  # noqa: E402

FONT = str(Path(__file__).parent / "fonts" / "DejaVuSansCondensed-Bold.ttf")

# Every connection and name lookup the process attempts is written down and refused; proxies
# point nowhere, so a downloader that went around the audit hook would fail too.
OFFLINE_READ = """
import json, socket, sys
attempts = []
def refuse(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
        attempts.append(f"{event} {args[1] if event == 'socket.connect' else args[0]}")
        raise OSError("network refused by the offline test")
sys.addaudithook(refuse)
from PIL import Image
from vlground.ocr.ppocr import built_in_engine
engine = built_in_engine(sys.argv[1], threads=1)
page = engine.read_one(Image.open(sys.argv[2]))
print(json.dumps({"text": page.text, "attempts": attempts}))
"""


def _engines() -> list:
    return [pytest.param(name, marks=pytest.mark.skipif(
        name == PPOCR_V4 and sys.version_info >= (3, 13), reason="rapidocr-onnxruntime 1.4 has no release for Python 3.13"))
        for name in BUILT_IN_ENGINES]


@pytest.mark.parametrize("name", _engines())
def test_each_engine_reads_with_the_network_refused(tmp_path, name):
    sign = tmp_path / "sign.png"
    render(Document("sign", [[[("Platform 4", "center")], [("Trains to Leeds", "center")]]]), Style(font=FONT, size=36)).save(sign)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": "", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", OFFLINE_READ, name, str(sign)], capture_output=True, text=True,
                          timeout=240, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == []
    assert result["text"] == "Platform 4\nTrains to Leeds"


def test_missing_bundled_models_are_refused_not_downloaded(tmp_path, monkeypatch):
    """A rapidocr whose models folder lost a file must not fall back to its downloader."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "PP-OCRv6_det_small.onnx").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "rapidocr", types.SimpleNamespace(__file__=str(tmp_path / "__init__.py")))
    with pytest.raises(EngineUnavailableError, match="never downloads.*--force-reinstall"):
        PPOCRv6()


def test_an_unknown_engine_name_lists_the_built_in_ones():
    with pytest.raises(ValueError, match="ppocr, ppocr-v4"):
        built_in_engine("tesseract")


def test_engine_spaces_sit_between_their_neighbours():
    """rapidocr 3 boxes the visible characters only; the spaces of its text get a place between them."""
    boxes = [np.array([[x, 0], [x + 8, 0], [x + 8, 20], [x, 20]], dtype=float) for x in (0, 10, 40, 50)]
    centers, widths = _char_geometry(np.array([[0, 0], [58, 0], [58, 20], [0, 20]], float), "ab cd", boxes)
    assert centers[:, 0].tolist() == [4, 14, 29, 44, 54] and widths.tolist() == [8, 8, 0, 8, 8]
    even, none = _char_geometry(np.array([[0, 0], [50, 0], [50, 10], [0, 10]], float), "ab cd", boxes[:3])
    assert none is None and even[:, 0].tolist() == [5, 15, 25, 35, 45]  # boxes that do not fit: even spacing


@pytest.mark.parametrize("name", _engines())
def test_the_record_names_the_engine_that_read_it(tmp_path, name):
    render(Document("sign", [[[("Fresh Coffee", "center")]]]), Style(font=FONT, size=40)).save(tmp_path / "a.png")
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path / "a.png"), "--out", str(out), "--engine", name])
    assert result.exit_code == 0, result.stderr
    [record] = read_records(out)
    assert record["engine"] == name and record["text"] == "Fresh Coffee"
    assert [w["text"] for w in record["lines"][0]["words"]] == ["Fresh", "Coffee"]


def test_the_default_engine_is_the_maintained_one():
    from vlground.jobs.ocr import OcrOptions

    assert OcrOptions().engine == PPOCR and BUILT_IN_ENGINES[PPOCR] is PPOCRv6


def _break_the_detection_model(folder: Path, monkeypatch) -> None:
    import rapidocr

    models = folder / "models"
    models.mkdir()
    for path in PPOCRv6.check_available().values():
        (models / path.name).write_bytes(path.read_bytes() if "_det_" not in path.name else b"not an onnx model")
    monkeypatch.setattr(rapidocr, "__file__", str(folder / "__init__.py"))


def test_a_broken_model_file_stops_the_engine_before_any_image(tmp_path, monkeypatch):
    """rapidocr would load it at the first image and fail every image of the batch."""
    _break_the_detection_model(tmp_path, monkeypatch)
    with pytest.raises(EngineUnavailableError, match="could not be loaded.*--force-reinstall"):
        PPOCRv6()


def test_a_broken_install_is_one_message_with_several_workers(tmp_path, monkeypatch):
    """The worker processes would each fail to build their engine and every page get a crash record."""
    pages = tmp_path / "pages"
    pages.mkdir()
    for index in range(3):
        render(Document("sign", [[[(f"Gate {index}", "center")]]]), Style(font=FONT, size=40)).save(pages / f"{index}.png")
    (tmp_path / "rapidocr").mkdir()
    _break_the_detection_model(tmp_path / "rapidocr", monkeypatch)
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(pages), "--out", str(out), "--workers", "2"])
    assert result.exit_code == 2 and "could not be loaded" in result.stderr, result.stderr
    assert not out.exists() or out.read_text() == ""


def test_the_angle_classifier_flag_is_for_built_in_engines_only(tmp_path):
    render(Document("sign", [[[("Exit", "center")]]]), Style(font=FONT, size=40)).save(tmp_path / "a.png")
    result = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path / "a.png"), "--out", str(tmp_path / "r.jsonl"),
                                         "--engine", "Qwen/Qwen2.5-VL-7B-Instruct", "--angle-cls"])
    assert result.exit_code == 2 and "--angle-cls is for the built-in engines" in result.stderr


def test_layout_flag_reads_scattered_labels_each_alone_and_refuses_what_it_cannot_do(tmp_path):
    image = Image.new("RGB", (900, 120), "white")
    image.paste(render(Document("sign", [[[("Exit", "center")]]]), Style(font=FONT, size=36)), (10, 10))
    image.paste(render(Document("sign", [[[("Stairs", "center")]]]), Style(font=FONT, size=36)), (700, 10))
    image.save(tmp_path / "a.png")
    texts = {}
    for layout in ("auto", "sparse"):
        out = tmp_path / f"{layout}.jsonl"
        result = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path / "a.png"), "--out", str(out), "--workers", "1", "--layout", layout])
        assert result.exit_code == 0, result.stderr
        texts[layout] = [line["text"] for line in read_records(out)[0]["lines"]]
    assert texts == {"auto": ["Exit Stairs"], "sparse": ["Exit", "Stairs"]}
    wrong = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path / "a.png"), "--out", str(tmp_path / "w.jsonl"), "--layout", "columns"])
    assert wrong.exit_code == 2 and "--layout must be one of auto, block, line, sparse" in wrong.stderr
    qwen = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path / "a.png"), "--out", str(tmp_path / "q.jsonl"),
                                       "--engine", "Qwen/Qwen2.5-VL-7B-Instruct", "--layout", "line"])
    assert qwen.exit_code == 2 and "--layout is for the built-in engines" in qwen.stderr
