"""Finding a checkpoint on disk: a local folder as given, a hub id through the Hugging Face cache
(downloading it when the machine is online), and one clear error when neither works."""
from __future__ import annotations

from pathlib import Path

WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.bin", "*.tiktoken", "*.txt", "*.model", "*.jinja", "*.py"]
CONFIG_PATTERNS = ["config.json", "generation_config.json"]
# Written beside a tiny random-weight checkpoint built to try the commands (`vlground tiny-model`):
# {"answer_budget": N, ...}, the default answer length, since its answers are noise however long.
TINY_NOTE = "vlground_tiny.json"


class WeightsNotFoundError(FileNotFoundError):
    """The checkpoint is neither a local folder nor in (or reachable through) the hub cache."""


class InvalidCheckpointError(ValueError):
    """The folder holds a checkpoint that cannot answer correctly (a tokenizer without the image
    token, a chat template the sandbox refuses, weights of another shape than config.json says);
    found at load, the one-line message names the file at fault and what to do."""


def resolve_checkpoint(name_or_path: str | Path, patterns: list[str] = WEIGHT_PATTERNS) -> Path:
    """A local folder holding the checkpoint of `name_or_path` (a folder or a hub id); for a hub id,
    only the files matching `patterns` are fetched (CONFIG_PATTERNS: just enough to tell the family)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise WeightsNotFoundError(f"{name}: not a model folder, and not a hub id of the form owner/name")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as error:  # offline, gated, missing: all end in the same advice
        raise WeightsNotFoundError(
            f"cannot find the weights of {name} ({type(error).__name__}): pass a local folder "
            f"(--model /path/to/{name.split('/')[-1]}), run `hf download {name}` with network access, or point "
            f"HF_HOME (or HF_HUB_CACHE) at a cache that holds it (HF_HUB_OFFLINE=1 uses the cache without the network)"
        ) from error


def tiny_answer_budget(path: str | Path) -> int | None:
    """The default answer budget a tiny trial checkpoint in folder `path` asks for, else None."""
    note = Path(path) / TINY_NOTE
    if not note.is_file():
        return None
    import json

    budget = json.loads(note.read_text(encoding="utf-8")).get("answer_budget")
    return budget if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0 else None
