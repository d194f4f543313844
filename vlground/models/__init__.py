"""One backend per runtime. The runtime is chosen apart from the family: the family registry lists
the runtimes that can run it (`Family.runtimes`), the name says where the model is (an http(s) URL is
a server), and `LoadOptions.runtime` may pick another one the family supports.

Adding a runtime: one module with a `Backend` subclass (`load(source, family, options)` and
`_generate_batch`), one line in RUNTIMES, and its name in the `runtimes` of the families it runs."""
from __future__ import annotations

import importlib
from pathlib import Path

from vlground.extras import require
from vlground.core.families import Family, UnknownFamilyError, get_family
from vlground.core.options import LoadOptions, OptionsError, with_overrides
from vlground.models.base import Backend
from vlground.models.server import is_server_url
from vlground.models.weights import CONFIG_PATTERNS, resolve_checkpoint, tiny_answer_budget

# runtime name -> "module:class"; imported on first use so `import vlground` stays light
RUNTIMES = {
    "transformers": "vlground.models.hf:HFBackend",
    "qwen-vl-native": "vlground.models.qwen_vl.backend:QwenVLBackend",
    "server": "vlground.models.server:ServerBackend",
}


def runtime_class(runtime: str) -> type[Backend]:
    """The Backend class of a runtime name."""
    if runtime not in RUNTIMES:
        raise OptionsError(f"unknown runtime {runtime!r}; runtimes: {', '.join(RUNTIMES)}")
    module, cls = RUNTIMES[runtime].split(":")
    return getattr(importlib.import_module(module), cls)


def load_backend(name_or_path: str | Path, options: LoadOptions | None = None, **keywords) -> Backend:
    """The backend for a hub id, checkpoint folder or server URL, with `options` (or the same
    fields as keywords: device=, dtype=, min_pixels=, ...). The family comes from the registry or the
    checkpoint's config.json (a server: from its model list). Raises WeightsNotFoundError,
    UnknownFamilyError or OptionsError with advice."""
    options = with_overrides(LoadOptions, options, keywords)
    if is_server_url(name_or_path) or options.runtime == "server":
        return _load_server(str(name_or_path), options)
    if options.server_only:
        raise OptionsError(f"{_apply(options.server_only)} to a server URL (http://...), not to {name_or_path}")
    require("models", f"running {name_or_path} on this machine")
    _check_family_early(name_or_path)
    path = resolve_checkpoint(name_or_path)
    family = get_family(path)  # the checkpoint's own config has the last word
    runtime = options.runtime or family.runtime
    if runtime not in family.runtimes or runtime == "server":
        raise OptionsError(f"{family.name} runs locally on {', '.join(r for r in family.runtimes if r != 'server')}, not {runtime}")
    backend = runtime_class(runtime).load(path, family, options)
    backend.answer_budget = tiny_answer_budget(path)
    return backend


def _load_server(url: str, options: LoadOptions) -> Backend:
    if not is_server_url(url):
        raise OptionsError(f"runtime 'server' needs the server's API base URL (http://host:port/v1), not {url!r}")
    if options.local_only:
        raise OptionsError(f"{_apply(options.local_only)} to local models; a server runs the model its own way")
    return runtime_class("server").load(url, None, options)


def _apply(names) -> str:
    names = list(names)
    return f"{', '.join(names)} {'applies' if len(names) == 1 else 'apply'}"


def _check_family_early(name_or_path: str | Path) -> Family:
    """The family, told before a long download when the model is not one we can run."""
    try:
        return get_family(name_or_path)
    except UnknownFamilyError:
        if Path(name_or_path).expanduser().is_dir():
            raise
        return get_family(resolve_checkpoint(name_or_path, CONFIG_PATTERNS))  # a fine-tune under another name
