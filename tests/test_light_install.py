"""The light install (`pip install vlground`, no extras): the main job, parse and eval run without
torch, and every command that needs an extra says in one line which `pip install` brings it.

Each check runs in a subprocess where the extras' modules cannot be imported (their sys.modules
entries set to None, which is how Python marks a module as absent), so this holds in the full test
venv too; CI also runs these tests in a real venv with the light set alone."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlground.extras import EXTRAS

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ABSENT = sorted({*EXTRAS["models"], *EXTRAS["ray"], *EXTRAS["supervision"], *EXTRAS["arrow"], "peft", "torchvision",
                 "tiktoken", "tokenizers", "accelerate", "scipy", "av"})
PRELUDE = f"import sys\nfor name in {ABSENT!r}:\n    sys.modules[name] = None\n"


def run_light(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, cwd=cwd, timeout=300)


def vlground(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_light(f"sys.argv = ['vlground', *{list(args)!r}]\nfrom vlground.cli.main import main\nmain()", cwd)


def test_every_public_name_imports_without_an_extra(tmp_path):
    code = ("import vlground\n"
            "for name in vlground.__all__: getattr(vlground, name)\n"
            "print(sorted(m for m, module in sys.modules.items() if module is not None and m.split('.')[0] in ('torch', 'transformers', 'ray')))")
    out = run_light(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_main_job_parse_and_eval_run_without_torch(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "shop_sign.png").write_bytes((SAMPLES / "shop_sign.png").read_bytes())
    ocr = vlground("ocr", "in", "--out", "results.jsonl", "--workers", "1", cwd=tmp_path)
    assert ocr.returncode == 0, ocr.stderr
    record = json.loads((tmp_path / "results.jsonl").read_text())
    assert record["error"] is None and "OPEN" in record["text"].upper()
    truth = [json.loads(line) for line in (SAMPLES / "ground_truth.jsonl").read_text().splitlines()]
    (tmp_path / "gt.jsonl").write_text("".join(json.dumps(t) + "\n" for t in truth if t["path"].endswith("shop_sign.png")))
    scored = vlground("eval", "ocr", "--gt", "gt.jsonl", "--pred", "results.jsonl", "--json", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["n"] == 1
    parsed = vlground("parse", "<ref>a</ref><box>(0,0),(500,500)</box>", "-f", "qwen-vl", "--image-size", "10x10", cwd=tmp_path)
    assert parsed.returncode == 0, parsed.stderr
    assert json.loads(parsed.stdout)["detections"][0]["box"] == [0.0, 0.0, 5.0, 5.0]


@pytest.mark.parametrize(("args", "extra"), [
    (("detect", "in/a.png", "a cat", "--model", "Qwen/Qwen2.5-VL-3B-Instruct"), "models"),
    (("detect", "in/a.png", "a cat", "--device", "cpu"), "models"),
    (("label", "in", "-c", "cat", "--out", "labels.jsonl", "--format", "jsonl"), "models"),
    (("ocr", "in", "--out", "text.jsonl", "--engine", "Qwen/Qwen2.5-VL-3B-Instruct"), "models"),
    (("ocr", "in", "--out", "text.jsonl", "--ray", "local"), "ray"),
    (("finetune", "--model", ".", "--data", "train.jsonl", "--out", "adapter"), "models"),
    (("finetune", "--model", "Qwen/Qwen2.5-VL-3B-Instruct", "--data", "train.jsonl", "--out", "adapter"), "models"),
    (("ocr", "s3://bucket/scans", "--out", "text.jsonl"), "arrow"),
    (("detect", "gs://bucket/a.png", "a cat"), "arrow"),
    (("eval", "refcoco", "--gt", "in/val-00000-of-00001.parquet", "--pred", "in/preds.jsonl"), "arrow"),
    (("bench", "refcoco", "--model", "Qwen/Qwen2.5-VL-3B-Instruct", "--gt", "in/val-00000-of-00001.parquet", "--out", "b"), "arrow"),
])
def test_a_command_that_needs_an_extra_names_its_install_in_one_line(tmp_path, args, extra):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes((SAMPLES / "shop_sign.png").read_bytes())
    (tmp_path / "in" / "val-00000-of-00001.parquet").write_bytes(b"PAR1")  # refused before it is read
    (tmp_path / "in" / "preds.jsonl").write_text('{"id": 1, "box": [0, 0, 1, 1]}\n')
    out = vlground(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: ") and f"pip install 'vlground[{extra}]'" in out.stderr


def import_errors(setup: str, calls: list[str], cwd: Path) -> list[str]:
    """The ImportError message each call (a Python expression) raises in the light install."""
    code = setup + "".join(f"try:\n    {call}\nexcept ImportError as error:\n    print(error)\n" for call in calls)
    out = run_light(code, cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_the_one_input_expander_and_loader_name_the_arrow_extra(tmp_path):
    # every command expands its inputs through io.sources.expand: the check lives there, once
    errors = import_errors("from vlground.io.sources import Source, expand, load\n",
                           ["expand(['.', 's3://bucket/scans'])", "load(Source('gs://bucket/a.png'))"], tmp_path)
    assert errors == ["reading s3:// and other pyarrow URIs needs pyarrow, which this install leaves out: "
                      "pip install 'vlground[arrow]'"] * 2


def test_to_supervision_names_its_extra_in_one_line(tmp_path):
    errors = import_errors("from vlground import parse, Record\n",
                           ["parse('<ref>a</ref><box>(0,0),(500,500)</box>', 'qwen-vl', (10, 10)).to_supervision()",
                            "Record.from_dict({'path': 'a.png', 'engine': 'pp-ocr', 'width': 10, 'height': 10}).to_supervision()"],
                           tmp_path)
    assert errors == ["to_supervision() needs supervision, which this install leaves out: pip install 'vlground[supervision]'"] * 2
