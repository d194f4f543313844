"""The proof of the training loop for clicks: tiny Qwen2.5-VL and Qwen3-VL checkpoints go from no hits
to >= 0.9 click accuracy (the click inside the target's box, scored by `vlground eval screenspot`) on
8 rendered screens with 2 targets each, after `vlground convert --task point` and `vlground
finetune`. Two targets per screen: the model must read the instruction, not only the screen. It
fails if any frame is wrong on the way: the screenshots are 320-560 pixels wide, Qwen2.5-VL sees an
input of about 160 (max_pixels 20000) and writes its pixels, Qwen3-VL writes 0-1000."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlground.testing.screens import make_screenspot_dataset
from vlground.training.finetune import FinetuneOptions

PROOF = FinetuneOptions(epochs=60, lr=3e-3, lora_rank=16, batch_size=2)
PIXELS = {"qwen2.5-vl": (3136, 20000), "qwen3-vl": (4096, 32768)}
ANSWER_TOKENS = 64  # a point answer is 45-50 tokens of the tiny vocabulary; noise before training is cut there


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    return make_screenspot_dataset(tmp_path_factory.mktemp("screens"), screens=8, elements=2)


def _command(*args: str) -> subprocess.CompletedProcess:
    # one torch thread, as in this process (conftest): tiny matrices on a busy machine stall with more
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "vlground.cli.main", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.parametrize("family", sorted(PIXELS))
def test_the_loop_through_the_commands_takes_clicks_from_zero_to_above_0_9(tiny_checkpoint, screens, tmp_path, family):
    """convert --task point -> finetune -> bench screenspot --adapter, each as a user runs it."""
    folder, (low, high) = str(tiny_checkpoint(family)), PIXELS[family]
    pixels = ["--min-pixels", str(low), "--max-pixels", str(high)]
    bench = ["bench", "screenspot", "--model", folder, "--gt", str(screens), "--device", "cpu", "--json",
             "--max-new-tokens", str(ANSWER_TOKENS), *pixels]
    before = json.loads(_command(*bench, "--out", str(tmp_path / "before")).stdout)
    assert before["n"] == 16 and before["accuracy"] <= 0.1
    data, adapter = tmp_path / "train.jsonl", tmp_path / "adapter"
    converted = _command("convert", str(screens), "--from", "screenspot", "--to", "trl", "-f", family, "--task", "point",
                         "--out", str(data), *pixels)
    assert "16 records from 16 source items" in converted.stderr
    _command("finetune", "--model", folder, "--data", str(data), "--out", str(adapter), "--epochs", str(PROOF.epochs),
             "--lr", str(PROOF.lr), "--lora-rank", str(PROOF.lora_rank), "--batch-size", str(PROOF.batch_size))
    after = json.loads(_command(*bench, "--adapter", str(adapter), "--out", str(tmp_path / "after")).stdout)
    assert after["n"] == 16 and after["accuracy"] >= 0.9, after
