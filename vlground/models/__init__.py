"""One backend per runtime; the family registry says which runtime a checkpoint needs."""
from __future__ import annotations

import importlib
from pathlib import Path

from vlground.families import Family, UnknownFamilyError, get_family
from vlground.models.base import Backend
from vlground.models.server import ServerBackend, is_server_url
from vlground.models.weights import CONFIG_PATTERNS, resolve_checkpoint

# runtime name -> "module:class"; imported on first use so `import vlground` stays light
RUNTIMES = {
    "transformers": "vlground.models.hf:HFBackend",
    "qwen-vl-native": "vlground.models.qwen_vl.backend:QwenVLBackend",
}


def load_backend(
    name_or_path: str | Path,
    device: str = "auto",
    dtype: str = "auto",
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    attn_implementation: str | None = None,
    served_model: str | None = None,
) -> Backend:
    """The backend for a hub id or checkpoint folder, its family read from the registry or the
    checkpoint's config.json. Raises WeightsNotFoundError or UnknownFamilyError with advice.

    An http(s):// URL is an OpenAI-compatible server's API base (see `ServerBackend.connect`):
    `served_model` names the model there, min/max_pixels must be the server's own settings."""
    if is_server_url(name_or_path):
        if device != "auto" or dtype != "auto" or attn_implementation is not None:
            raise ValueError("device, dtype and attention apply to local models; a server runs the model its own way")
        return ServerBackend.connect(str(name_or_path), served_model, min_pixels=min_pixels, max_pixels=max_pixels)
    if served_model is not None:
        raise ValueError(f"served_model applies to a server URL (http://...), not to {name_or_path}")
    try:  # fail before a long download when the model is not one we can run
        get_family(name_or_path)
    except UnknownFamilyError:
        if Path(name_or_path).expanduser().is_dir():
            raise
        get_family(resolve_checkpoint(name_or_path, CONFIG_PATTERNS))  # a fine-tune under another name
    path = resolve_checkpoint(name_or_path)
    family: Family = get_family(path)  # the checkpoint's own config has the last word
    module, cls = RUNTIMES[family.runtime].split(":")
    backend_cls = getattr(importlib.import_module(module), cls)
    if family.runtime == "transformers":
        return backend_cls.load(path, family, device, dtype, min_pixels, max_pixels, attn_implementation)
    if min_pixels is not None or max_pixels is not None:
        raise ValueError(f"{family.name} squashes every image to a fixed size; min/max pixels do not apply")
    return backend_cls.load(path, family, device, dtype)
