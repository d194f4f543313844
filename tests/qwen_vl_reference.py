"""Where the Qwen-VL (v1) tests find their reference: the facts in tests/data/qwen_vl_v1 (in the
repository), and the released `qwen.tiktoken`, which its licence (Tongyi Qianwen LICENSE AGREEMENT)
keeps out of the repository.

Only the tests that check the released tokenizer's exact ids need that file. They look for it at
$VLGROUND_QWEN_TIKTOKEN, else at ../shared/reference/qwen_vl_v1/qwen.tiktoken beside the checkout
(where this project's CI keeps it), and skip saying so when it is in neither place."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data" / "qwen_vl_v1"
TIKTOKEN_ENV = "VLGROUND_QWEN_TIKTOKEN"
DEFAULT_TIKTOKEN = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "qwen_vl_v1" / "qwen.tiktoken"
IMAGE_PLACEHOLDER = -1  # input_ids stores -1 for the 256 image positions (their ids do not matter)


def released_tiktoken() -> Path:
    """The released qwen.tiktoken, or a skip that says where to put it."""
    path = Path(os.environ.get(TIKTOKEN_ENV) or DEFAULT_TIKTOKEN)
    if not path.is_file():
        pytest.skip(
            f"needs the released Qwen-VL qwen.tiktoken (not shipped: Tongyi Qianwen licence): set {TIKTOKEN_ENV}="
            f"/path/to/qwen.tiktoken or put it at {DEFAULT_TIKTOKEN}"
        )
    return path


def reference_facts() -> dict:
    """The original code's results on the reference checkpoint: reference.json (prompt, seed, weight
    shapes, the sin-cos table's hash) merged with the arrays of reference.npz."""
    facts = json.loads((DATA / "reference.json").read_text())
    with np.load(DATA / "reference.npz") as arrays:
        facts.update({name: arrays[name] for name in arrays.files})
    return facts


def reference_config() -> dict:
    return json.loads((DATA / "config.json").read_text())
