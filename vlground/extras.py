"""The optional parts of the install. `pip install vlground` is the light set (OCR with the built-in
engine, parse, eval, convert, dataset writers, reports: no torch); running models, Ray, supervision's
Detections, pyarrow (parquet ground truth, s3:// inputs) and the rest are extras. A feature that
needs one calls `require` first, so a light install answers with the one command to run instead of
an ImportError from deep inside."""
from __future__ import annotations

import importlib.util

# extra -> the modules it brings that vlground imports (checked by import name, without importing)
EXTRAS = {
    "models": ("torch", "transformers", "huggingface_hub", "safetensors"),
    "ray": ("ray",),
    "serve": ("fastapi", "uvicorn"),
    "docs": ("mkdocs", "mkdocstrings"),
    "supervision": ("supervision",),
    "arrow": ("pyarrow",),
}


class MissingExtraError(ImportError):
    """A feature needs an extra that is not installed; the message is the pip command."""


def missing(extra: str, *modules: str) -> list[str]:
    """The modules of `extra` (or just `modules` of it) that cannot be imported here."""
    return [name for name in modules or EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require(extra: str, feature: str, *modules: str) -> None:
    """Raise MissingExtraError when `extra` (or the `modules` of it that `feature` uses) is not
    installed: `feature` (what the user asked for, e.g. "running a model") and the pip command that
    brings it, on one line."""
    absent = missing(extra, *modules)
    if absent:
        raise MissingExtraError(
            f"{feature} needs {', '.join(absent)}, which this install leaves out: pip install 'vlground[{extra}]'")

