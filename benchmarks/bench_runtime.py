"""Throughput of vlground's batched transformers pipeline on random weights of a released model's size.

Same workload as ../shared/bench/hf_baseline.py: N random images of 480-1000 x 640-1300 px from the same
seed, "Read all the text in the image.", min_pixels 3136 and max_pixels 1280 visual tokens' worth, and
exactly NEW new tokens per image (pinned, so random weights cost what real ones would). The model is
built from its config directly on the device in the target dtype; nothing is downloaded.

    SIZE=7b N=32 BS=16,32 NEW=64 python benchmarks/bench_runtime.py      # GPU
    SIZE=tiny N=4 BS=2 NEW=8 python benchmarks/bench_runtime.py          # CPU smoke run

SIZE: tiny | 3b | 7b (Qwen2.5-VL) | qwen3-8b. BS: one batch size or a comma list. VISION: packed (the
default: all vision windows in one attention call) and/or sdpa (transformers' call per window), comma
separated. ATTN overrides the attention implementation (default: flash_attention_2 when installed on
CUDA, else sdpa). One timed run per (VISION, BS), after one warm-up batch of the largest size with the
first VISION. Prints one JSON line; writes runtime.json under $OUT when set, with the figures of
baseline.json from the same folder (or $BASELINE_JSON) beside ours and the speed-ups of our best run."""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

from vlground.core.families import get_family
from vlground.core.options import GenerationOptions
from vlground.models.base import Request
from vlground.models.hf import HFBackend, default_attn_implementation, set_pixel_limits, use_packed_vision_attention
from vlground.prompts import build_prompt
from vlground.testing.hf import build_config, build_processor, generation_config, model_class

_QWEN25_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=14, spatial_merge_size=2,
                      temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31])
_MROPE_QWEN25 = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]}


@dataclass(frozen=True)
class ModelSize:
    """A released model's sizes (None: the family's tiny test sizes)."""

    family: str
    text: dict | None
    vision: dict | None
    max_pixels: int  # the workload's cap: 1280 visual tokens per image
    tie_word_embeddings: bool = False


SIZES = {
    "tiny": ModelSize("qwen2.5-vl", None, None, 1280 * 28 * 28),
    "3b": ModelSize(
        "qwen2.5-vl",
        dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
             num_key_value_heads=2, max_position_embeddings=128000, rms_norm_eps=1e-6, rope_parameters=_MROPE_QWEN25),
        dict(_QWEN25_VISION, out_hidden_size=2048),
        1280 * 28 * 28,
        tie_word_embeddings=True,
    ),
    "7b": ModelSize(
        "qwen2.5-vl",
        dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
             num_key_value_heads=4, max_position_embeddings=128000, rms_norm_eps=1e-6, rope_parameters=_MROPE_QWEN25),
        dict(_QWEN25_VISION, out_hidden_size=3584),
        1280 * 28 * 28,
    ),
    "qwen3-8b": ModelSize(
        "qwen3-vl",
        dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
             num_key_value_heads=8, head_dim=128, max_position_embeddings=262144, rms_norm_eps=1e-6, attention_bias=False,
             rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                              "mrope_interleaved": True}),
        dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096, patch_size=16,
             spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24],
             hidden_act="gelu_pytorch_tanh"),
        1280 * 32 * 32,
    ),
}


def workload(n: int) -> list[Image.Image]:
    """The baseline's images: the same generator, seed and draw order."""
    rng = np.random.default_rng(0)
    sizes = [(int(rng.integers(480, 1000)), int(rng.integers(640, 1300))) for _ in range(n)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def build_backend(size: ModelSize, device: str, dtype: torch.dtype, attn: str) -> HFBackend:
    """A random-weight model of `size`, initialised on `device` in `dtype` (no host copy, no download)."""
    family = get_family(size.family)
    processor = build_processor(family)
    set_pixel_limits(processor, min_pixels=3136, max_pixels=size.max_pixels)
    config = build_config(family, processor.tokenizer, size.text, size.vision, tie_word_embeddings=size.tie_word_embeddings)
    with torch.device(device):
        torch.set_default_dtype(dtype)
        try:
            model = model_class(family)._from_config(config, attn_implementation=attn, dtype=dtype).eval()
        finally:
            torch.set_default_dtype(torch.float32)
    model.generation_config = generation_config(processor.tokenizer)
    return HFBackend(model, processor, family)


class Meter:
    """Counts what the pipeline did, by wrapping the backend's encode step and the model's generate:
    preprocessing seconds (device synchronised), new tokens per row, batch sizes."""

    def __init__(self, backend: HFBackend, device: str):
        self.device = device
        self.preprocess_s = 0.0
        self.new_tokens: set[int] = set()
        self.batches: list[int] = []
        encode, generate = backend._encode, backend.model.generate

        def timed_encode(requests):
            start = time.perf_counter()
            result = encode(requests)
            self.sync()
            self.preprocess_s += time.perf_counter() - start
            return result

        def counted_generate(input_ids, **kwargs):
            output = generate(input_ids=input_ids, **kwargs)
            self.new_tokens.add(output.shape[1] - input_ids.shape[1])
            self.batches.append(len(input_ids))
            return output

        backend._encode = timed_encode
        backend.model.generate = counted_generate

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def reset(self) -> None:
        self.preprocess_s = 0.0
        self.new_tokens.clear()
        self.batches.clear()
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()


def timed_run(backend: HFBackend, meter: Meter, requests: list[Request], options: GenerationOptions) -> dict:
    """One pass over the workload: seconds, images/s, preprocessing seconds, visual tokens, new tokens
    per row (must be exactly NEW), batch sizes used and peak accelerator memory."""
    meter.reset()
    start = time.perf_counter()
    answers = backend.generate(requests, options)
    meter.sync()
    seconds = time.perf_counter() - start
    return dict(
        s=round(seconds, 2),
        img_per_s=round(len(requests) / seconds, 3),
        preprocess_s=round(meter.preprocess_s, 2),
        visual_tokens=sum(w * h for w, h in (a.input_size for a in answers)) // backend.family.factor**2,
        new_tokens_each=sorted(meter.new_tokens),
        batches=meter.batches[:],
        peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1) if meter.device == "cuda" else None,
    )


def read_baseline() -> dict | None:
    path = os.environ.get("BASELINE_JSON") or (os.environ.get("OUT") and os.path.join(os.environ["OUT"], "baseline.json"))
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else None


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    size_name = os.environ.get("SIZE", "tiny")
    n, new = int(os.environ.get("N", "16")), int(os.environ.get("NEW", "64"))
    batch_sizes = [int(b) for b in os.environ.get("BS", "16").split(",")]
    visions = os.environ.get("VISION", "packed").split(",")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    attn = os.environ.get("ATTN") or default_attn_implementation(device)

    start = time.time()
    backend = build_backend(SIZES[size_name], device, dtype, attn)
    params = sum(p.numel() for p in backend.model.parameters())
    print("init_s", round(time.time() - start, 1), "params_B", round(params / 1e9, 2), flush=True)

    prompt = build_prompt("read_text", backend.family, max_new_tokens=new)
    requests = [Request(image, prompt) for image in workload(n)]
    meter = Meter(backend, device)
    options = dict(min_new_tokens=new, max_new_tokens=new)
    use_packed_vision_attention(backend.model, visions[0] == "packed")
    backend.generate(requests[: max(batch_sizes)], GenerationOptions(batch_size=max(batch_sizes), **options))  # warm-up
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "transformers": transformers.__version__,
              "torch": torch.__version__, "size": size_name, "N": n, "NEW": new, "attn": attn, "params_B": round(params / 1e9, 2)}
    for vision in visions:
        for batch_size in batch_sizes:
            name = f"vlground_bs{batch_size}" + ("_sdpa_vision" if vision == "sdpa" else "")
            use_packed_vision_attention(backend.model, vision == "packed")
            try:
                result[name] = timed_run(backend, meter, requests, GenerationOptions(batch_size=batch_size, **options))
            except Exception as error:  # one failing configuration must not lose the others' figures
                result[name] = {"error": f"{type(error).__name__}: {error}"[:500]}
            print(name, result[name], flush=True)
    baseline = read_baseline()
    if baseline:
        result["baseline"] = {k: v for k, v in baseline.items() if isinstance(v, dict)}
        best = max(v.get("img_per_s", 0) for k, v in result.items() if k.startswith("vlground_bs"))
        for name, figures in result["baseline"].items():
            result[f"speedup_vs_{name}"] = round(best / figures["img_per_s"], 2)
    print(json.dumps(result), flush=True)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "runtime.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
