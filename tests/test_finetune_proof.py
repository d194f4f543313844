"""The proof of the training loop: tiny Qwen2.5-VL and Qwen3-VL checkpoints go from no hits to >= 0.9
RefCOCO accuracy on 16 synthetic images after convert -> finetune -> bench with the adapter.
It fails if any frame is wrong anywhere on the way: Qwen2.5-VL is trained and asked with a small
max_pixels (its input about half the image), Qwen3-VL writes 0-1000."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import vlground
from vlground.eval.refcoco_data import load_refcoco
from vlground.jobs.bench import run_refcoco_bench
from vlground.core.options import GenerationOptions
from vlground.models.adapters import AdapterError
from vlground.training.finetune import FinetuneOptions, finetune
from test_finetune import SETTINGS, data, shapes  # noqa: F401 (fixtures)

PROOF = FinetuneOptions(epochs=60, lr=3e-3, lora_rank=16, batch_size=2)


def _accuracy(model, samples, gt: Path, out: Path) -> float:
    return run_refcoco_bench(model, "tiny", samples, out, gt_name=str(gt), generation=GenerationOptions(batch_size=8))["accuracy"]


def _command(*args: str) -> subprocess.CompletedProcess:
    # one torch thread, as in this process (conftest): tiny matrices on a busy machine stall with more
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "vlground.cli.main", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_the_loop_through_the_commands_takes_qwen2_5_vl_from_zero_to_above_0_9(tiny_checkpoint, shapes, tmp_path):
    """convert -> finetune -> bench refcoco --adapter, each as a user runs it, with a small max_pixels
    (the input about half the image, so answers framed in any other frame miss)."""
    folder, pixels = str(tiny_checkpoint("qwen2.5-vl")), ["--min-pixels", "3136", "--max-pixels", "20000"]
    bench = ["bench", "refcoco", "--model", folder, "--gt", str(shapes), "--device", "cpu", "--json", *pixels]
    before = json.loads(_command(*bench, "--out", str(tmp_path / "before")).stdout)
    assert before["n"] == 16 and before["accuracy"] <= 0.1
    data, adapter = tmp_path / "train.jsonl", tmp_path / "adapter"
    _command("convert", str(shapes), "--from", "refcoco", "--to", "qwen", "-f", "qwen2.5-vl", "--out", str(data), *pixels)
    trained = _command("finetune", "--model", folder, "--data", str(data), "--out", str(adapter), "--epochs", str(PROOF.epochs),
                       "--lr", str(PROOF.lr), "--lora-rank", str(PROOF.lora_rank), "--batch-size", str(PROOF.batch_size))
    assert f"epoch {PROOF.epochs}/{PROOF.epochs} mean loss" in trained.stderr
    assert " step " not in trained.stderr  # off a terminal: each epoch's loss, not each step's
    after = json.loads(_command(*bench, "--adapter", str(adapter), "--out", str(tmp_path / "after")).stdout)
    assert after["n"] == 16 and after["accuracy"] >= 0.9
    with pytest.raises(AdapterError, match="trained with max_pixels=20000"):  # the released settings frame otherwise
        vlground.load_model(folder, device="cpu", adapter=adapter)


def test_the_loop_in_python_takes_qwen3_vl_from_zero_to_above_0_9(tiny_checkpoint, shapes, data, tmp_path):
    """convert -> finetune -> load_model(adapter=) -> the bench's scoring, and the merged adapter too."""
    folder, samples, pixels = tiny_checkpoint("qwen3-vl"), load_refcoco(shapes), SETTINGS["qwen3-vl"]
    assert _accuracy(vlground.load_model(folder, device="cpu", **pixels), samples, shapes, tmp_path / "before") <= 0.1
    adapter = finetune(folder, data["qwen3-vl"], tmp_path / "adapter", PROOF, progress=lambda line: None)
    tuned = vlground.load_model(folder, device="cpu", adapter=adapter, **pixels)
    assert _accuracy(tuned, samples, shapes, tmp_path / "after") >= 0.9
    merged = vlground.load_model(folder, device="cpu", adapter=adapter, merge_adapter=True, **pixels)
    assert _accuracy(merged, samples, shapes, tmp_path / "merged") >= 0.9
    with pytest.raises(AdapterError, match="trained on qwen3-vl, not qwen2.5-vl"):
        vlground.load_model(tiny_checkpoint("qwen2.5-vl"), device="cpu", adapter=adapter, **pixels)


def test_the_loop_through_the_commands_takes_qwen3_5_from_zero_to_above_0_9(tiny_checkpoint, shapes, tmp_path):
    """Qwen3.5 (hybrid linear/full attention; thinks by default): trained on answers after the empty
    reasoning block its template writes with thinking off, and asked with --thinking off."""
    folder, pixels = str(tiny_checkpoint("qwen3.5")), ["--min-pixels", "4096", "--max-pixels", "32768"]
    bench = ["bench", "refcoco", "--model", folder, "--gt", str(shapes), "--device", "cpu", "--json", "--thinking", "off",
             "--max-new-tokens", "80", *pixels]  # an answer is about 60 tokens of the tiny vocabulary
    before = json.loads(_command(*bench, "--out", str(tmp_path / "before")).stdout)
    assert before["n"] == 16 and before["accuracy"] <= 0.1
    data, adapter = tmp_path / "train.jsonl", tmp_path / "adapter"
    _command("convert", str(shapes), "--from", "refcoco", "--to", "qwen", "-f", "qwen3.5", "--out", str(data), *pixels)
    _command("finetune", "--model", folder, "--data", str(data), "--out", str(adapter), "--epochs", str(PROOF.epochs),
             "--lr", str(PROOF.lr), "--lora-rank", str(PROOF.lora_rank), "--batch-size", str(PROOF.batch_size))
    after = json.loads(_command(*bench, "--adapter", str(adapter), "--out", str(tmp_path / "after")).stdout)
    assert after["n"] == 16 and after["accuracy"] >= 0.9
