"""Whether the device a user asks for exists on this machine, told before any weight is read: a
model loaded for 40 s onto a GPU that is not there ends in a traceback, not in advice."""
from __future__ import annotations

import os
import re

from vlground.extras import require

_DEVICE = re.compile(r"^(cpu|cuda|mps)(?::(\d+))?$")


class DeviceUnavailableError(ValueError):
    """The device is not a device name, or not present here; the message lists what is."""


def available_devices() -> list[str]:
    """The devices a model can run on here: "cpu", then "cuda:0", "cuda:1", ... (those CUDA makes
    visible, CUDA_VISIBLE_DEVICES honoured), then "mps" on Apple GPUs."""
    require("models", "choosing a --device", "torch")
    import torch

    found = ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def _absent(device: str, kind: str, index: str | None, available: list[str]) -> str:
    """Why a well-formed device is not here."""
    if kind == "cuda" and not any(d.startswith("cuda") for d in available):
        hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
        why = f" (CUDA_VISIBLE_DEVICES={hidden!r})" if hidden is not None else ""
        return f"device {device!r}: no CUDA GPU is visible here{why}"
    if kind == "cuda":
        count = sum(d.startswith("cuda") for d in available)
        return f"device {device!r}: there is no GPU {index} (this machine shows {count}, numbered from 0)"
    return f"device {device!r}: no Apple GPU (MPS) here"


def check_device(device: str) -> str:
    """`device` itself when a model can be loaded there ("auto" always can: CUDA when present, else
    the CPU); raises DeviceUnavailableError naming the available devices otherwise."""
    if device == "auto":
        return device
    match = _DEVICE.match(device)
    if match is None:
        raise DeviceUnavailableError(
            f"device {device!r} is not a device name: use auto, cpu, cuda, cuda:N or mps "
            f"(available here: {', '.join(available_devices())})"
        )
    kind, index = match.groups()
    available = available_devices()
    wanted = f"{kind}:{index or 0}" if kind == "cuda" else kind
    if wanted not in available:
        raise DeviceUnavailableError(f"{_absent(device, kind, index, available)}; available: {', '.join(available)}")
    return device
