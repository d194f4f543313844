"""Offline test tooling: tiny random-weight checkpoints of every family (`make_tiny_model`), forced
answers that make them write a chosen text (`vlground.testing.forced`), and a real OpenAI-compatible
server to point the server runtime at (`vlground.testing.serve`)."""
from __future__ import annotations

import json
from pathlib import Path

from vlground.core.families import get_family
from vlground.models.weights import TINY_NOTE


def make_tiny_model(family: str, path: str | Path, thinking: str | None = None, answer_budget: int | None = None) -> Path:
    """Write a tiny random checkpoint of `family` (a family name such as "qwen2.5-vl" or "qwen-vl-chat",
    or a variant: "qwen3-vl-moe", "qwen3.5-moe") into `path`, without network, and return the folder.
    It loads the way a real checkpoint of that family does, so load -> prompt -> generate -> parse runs
    end to end on CPU in seconds. `thinking` ("never", "default", "always"; transformers families
    only) gives the chat template that reasoning shape instead of the family's released one: "always"
    is a Thinking checkpoint. `answer_budget`: the default answer length of the loaded model (its
    answers are noise however long: a small one keeps trial runs fast); None keeps the task's."""
    fam = get_family(family)
    if fam.runtime == "transformers":
        from vlground.testing.hf import make_tiny_hf_model

        folder = make_tiny_hf_model(family, path, thinking)
    elif thinking is not None:
        raise ValueError(f"{fam.name} has no thinking variant")
    else:
        from vlground.testing.qwen_vl import make_tiny_qwen_vl

        folder = make_tiny_qwen_vl(path, chat=fam.chat)
    if answer_budget is not None:
        note = {"family": family, "answer_budget": answer_budget, "note": "random weights: the answers are noise"}
        (folder / TINY_NOTE).write_text(json.dumps(note) + "\n", encoding="utf-8")
    return folder
