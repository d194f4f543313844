"""Offline test tooling: tiny random-weight checkpoints of every family (`make_tiny_model`), forced
answers that make them write a chosen text (`vlground.testing.forced`), and a real OpenAI-compatible
server to point the server runtime at (`vlground.testing.serve`)."""
from __future__ import annotations

from pathlib import Path

from vlground.families import get_family


def make_tiny_model(family: str, path: str | Path, thinking: str | None = None) -> Path:
    """Write a tiny random checkpoint of `family` (a family name such as "qwen2.5-vl" or "qwen-vl-chat",
    or a variant: "qwen3-vl-moe", "qwen3.5-moe") into `path`, without network, and return the folder.
    It loads the way a real checkpoint of that family does, so load -> prompt -> generate -> parse runs
    end to end on CPU in seconds. `thinking` ("never", "default", "always"; transformers families
    only) gives the chat template that reasoning shape instead of the family's released one: "always"
    is a Thinking checkpoint."""
    fam = get_family(family)
    if fam.runtime == "transformers":
        from vlground.testing.hf import make_tiny_hf_model

        return make_tiny_hf_model(family, path, thinking)
    if thinking is not None:
        raise ValueError(f"{fam.name} has no thinking variant")
    from vlground.testing.qwen_vl import make_tiny_qwen_vl

    return make_tiny_qwen_vl(path, chat=fam.chat)
