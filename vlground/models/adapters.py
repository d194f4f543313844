"""LoRA adapters on a loaded model: the folder `vlground finetune` writes (a PEFT adapter and
`vlground_finetune.json`), checked against the family and pixels the model is loaded with, then put on
top of it or merged into its weights."""
from __future__ import annotations

import json
from pathlib import Path

from vlground.extras import require
from vlground.core.families import Family

ADAPTER_INFO = "vlground_finetune.json"  # base model, family and pixels the adapter was trained for


class AdapterError(ValueError):
    """An adapter folder that cannot be used on this model."""


def read_adapter_info(path: Path) -> dict:
    """The `vlground_finetune.json` of an adapter, checked: a family name and min/max pixels (whole
    numbers or null); anything else is an AdapterError naming the file."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise AdapterError(f"{path} cannot be read ({type(error).__name__}: {error}); write it again with "
                            "`vlground finetune`, or remove it to load the adapter unchecked") from None
    pixels_ok = isinstance(info, dict) and all(
        info.get(name) is None or (isinstance(info.get(name), int) and not isinstance(info.get(name), bool))
        for name in ("min_pixels", "max_pixels"))
    if not pixels_ok or not isinstance(info.get("family"), str):
        raise AdapterError(f"{path} does not say what the adapter was trained for (it needs \"family\" and "
                            "\"min_pixels\"/\"max_pixels\" as `vlground finetune` writes them); remove it to load the "
                            "adapter unchecked")
    return {"family": info["family"], "min_pixels": info.get("min_pixels"), "max_pixels": info.get("max_pixels")}


def load_adapter(model, adapter: str | Path, family: Family, *, merge: bool = False,
                  min_pixels: int | None = None, max_pixels: int | None = None):
    """`model` with the LoRA adapter in folder `adapter` on top (merged into its weights with `merge`).
    An adapter `finetune` wrote is checked: trained for another family, or for other pixels than the
    loaded processor's (`min_pixels`/`max_pixels` as loaded), it is refused."""
    require("models", "a LoRA adapter", "peft")
    from peft import PeftModel

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise AdapterError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json); pass `vlground finetune`'s --out")
    info_file = adapter / ADAPTER_INFO
    if info_file.is_file():
        info = read_adapter_info(info_file)
        if info["family"] != family.name:
            raise AdapterError(f"{adapter} was trained on {info['family']}, not {family.name}")
        for name, loaded in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
            if info[name] is not None and loaded is not None and info[name] != loaded:
                raise AdapterError(f"{adapter} was trained with {name}={info[name]}, the model is loaded with {loaded}: "
                                    f"load it with {name}={info[name]} (--{name.replace('_', '-')} {info[name]} on the command line)")
    wrapped = PeftModel.from_pretrained(model, adapter)
    return wrapped.merge_and_unload() if merge else wrapped
