"""vlground: visual grounding and OCR with the Qwen-VL family, with boxes in the right frame.

    import vlground
    model = vlground.load_model("Qwen/Qwen2.5-VL-7B-Instruct")
    result = model.ground("street.jpg", "the red car")      # boxes in pixels of street.jpg
    vlground.parse(answer, "qwen2.5-vl", image_size=(w, h))  # any answer, no model needed

Names are imported on first use, so `import vlground` does not pull in torch."""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "vlground.tasks",
    "Model": "vlground.tasks",
    "LoadOptions": "vlground.core.options",
    "GenerationOptions": "vlground.core.options",
    "parse": "vlground.grammar",
    "format_detections": "vlground.grammar",
    "format_click": "vlground.grammar",
    "build_prompt": "vlground.prompts",
    "point_prompt": "vlground.prompts",
    "Prompt": "vlground.prompts",
    "Detection": "vlground.core.results",
    "Result": "vlground.core.results",
    "Record": "vlground.core.records",
    "read_records": "vlground.core.records",
    "get_writer": "vlground.jobs.writers",
    "get_family": "vlground.core.families",
    "FAMILIES": "vlground.core.families",
    "smart_resize": "vlground.core.geometry",
    "model_input_size": "vlground.core.geometry",
    "load_image": "vlground.io.images",
    "annotate": "vlground.viz",
    "show": "vlground.viz",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vlground' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
