"""Throughput of vlground's local runtimes on random weights of a released model's size, plain and with
each scheduling mean switched on, on two workloads.

standard: N random images of 480-1000 x 640-1300 px (the generator and seed of
    ../shared/bench/hf_baseline.py), "Read all the text in the image.", min_pixels 3136 and max_pixels
    1280 visual tokens' worth, exactly NEW new tokens per image (pinned, so random weights cost what
    real ones would).
varying: VARY_N images of the same draw, answer lengths drawn from SHORTEST to LONGEST tokens (seed 1),
    each pinned to its request: where refill pays.

Runs (RUNS, comma separated; each at batch size BS): plain; static (static KV cache, generate compiles
the decode step into CUDA graphs on a GPU); refill; token_budget (BUDGET prompt tokens per batch);
prefetch; all (refill + token budget + prefetch). The native Qwen-VL always decodes with its own static
cache and CUDA graph, so "static" is skipped there. The model is built from its config directly on
the device in the target dtype; nothing is downloaded.

    SIZE=7b python benchmarks/bench_runtime.py                  # GPU
    SIZE=qwen-vl-9.6b python benchmarks/bench_runtime.py        # native Qwen-VL-Chat size, GPU
    SIZE=tiny N=4 VARY_N=6 NEW=8 LONGEST=12 BS=2 python benchmarks/bench_runtime.py   # CPU smoke run

SIZE: tiny | 3b | 7b (Qwen2.5-VL) | qwen3-8b | qwen-vl-9.6b | qwen-vl-tiny. IMAGE_SCALE shrinks the
images (dry runs). ATTN overrides the attention
implementation (default: flash_attention_2 when installed on CUDA, else sdpa). One warm-up pass of one
batch, then one timed run per (workload, run); the static runs come last, after an untimed pass of the
warm-up batch with the static cache (warm_up_s: on a GPU mostly compiling the decode step). Prints one JSON line; writes runtime_<SIZE>.json under
$OUT when set, with the figures of baseline.json from the same folder (or $BASELINE_JSON) beside ours
and the speed-ups of our best standard run."""
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
from vlground.models.hf import HFBackend, default_attn_implementation, set_pixel_limits
from vlground.prompts import build_prompt
from vlground.testing.hf import build_config, build_processor, generation_config, model_class

HERE = Path(__file__).parent

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
    native: dict | None = None  # the native Qwen-VL: changes to qwen_vl_chat_config.json (None: a transformers family)


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
    "qwen-vl-9.6b": ModelSize("qwen-vl-chat", None, None, 0, native={}),
    "qwen-vl-tiny": ModelSize("qwen-vl-chat", None, None, 0, native=dict(
        hidden_size=256, intermediate_size=512, num_hidden_layers=2, kv_channels=64, num_attention_heads=4,
        visual=dict(heads=4, image_size=112, layers=2, mlp_ratio=4.9231, output_dim=256, patch_size=14, width=64))),
}


def workload(n: int) -> list[Image.Image]:
    """The baseline's images: the same generator, seed and draw order."""
    rng = np.random.default_rng(0)
    sizes = [(int(rng.integers(480, 1000)), int(rng.integers(640, 1300))) for _ in range(n)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def varying_lengths(n: int, shortest: int, longest: int) -> list[int]:
    """Answer lengths of the varying workload, one per request (seed 1)."""
    return np.random.default_rng(1).integers(shortest, longest + 1, n).tolist()


def build_backend(size: ModelSize, device: str, dtype: torch.dtype, attn: str):
    """A random-weight model of `size`, initialised on `device` in `dtype` (no host copy, no download)."""
    if size.native is not None:
        return build_native_backend(size, device, dtype)
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


def build_native_backend(size: ModelSize, device: str, dtype: torch.dtype):
    """The native Qwen-VL of Qwen-VL-Chat's config (with `size.native` changes), random weights drawn
    on the device, and the tiny checkpoint's tokenizer (its ids fit the real vocabulary)."""
    import tempfile

    from vlground.models.qwen_vl.backend import QwenVLBackend
    from vlground.models.qwen_vl.tokenizer import QwenVLTokenizer
    from vlground.testing.qwen_vl import make_tiny_qwen_vl

    raw = json.loads((HERE / "qwen_vl_chat_config.json").read_text())
    raw.update({k: v for k, v in size.native.items() if k != "visual"})
    raw["visual"].update(size.native.get("visual", {}))
    model = random_qwen_vl(raw, device, dtype)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = QwenVLTokenizer.from_checkpoint(make_tiny_qwen_vl(Path(scratch) / "Qwen-VL-Chat", chat=True))
    return QwenVLBackend(model, tokenizer, get_family(size.family))


def random_qwen_vl(raw_config: dict, device: str, dtype: torch.dtype):
    """A native Qwen-VL of an original config.json's shape, random weights (N(0, 0.02), norms 1, biases
    0, the resampler's fixed sin-cos table) drawn on `device` in `dtype` without a host copy."""
    from vlground.models.qwen_vl.model import QwenVL, QwenVLConfig
    from vlground.models.qwen_vl.vision import sincos_table_2d

    config = QwenVLConfig.from_dict(raw_config)
    with torch.device("meta"):
        model = QwenVL(config)
    model = model.to_empty(device=device).to(dtype)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                parameter.fill_(1.0)
            elif name.endswith("bias"):
                parameter.zero_()
            else:
                parameter.normal_(0, 0.02, generator=generator)
        model.vision.resampler.pos_table.copy_(torch.from_numpy(sincos_table_2d(config.vision.output_dim, 16)))
    return model.eval()


RUNS = {  # "static" last: its first run compiles the decode step on a GPU
    "plain": {},
    "refill": {"refill": True},
    "token_budget": {"token_budget": None},  # BUDGET
    "prefetch": {"prefetch": True},
    "all": {"refill": True, "token_budget": None, "prefetch": True},
    "static": {"static_cache": True},
}


class Meter:
    """Counts what a run computed: the rows and new tokens of each plain batch (transformers'
    `generate`, the native Qwen-VL's `_decode`) and the refill engines' own counts."""

    def __init__(self, backend):
        self.device = str(getattr(backend, "device", "cpu"))
        self.reset()
        engine = backend._row_engine

        def counted_engine(*args, **kwargs):
            self.engines.append(engine(*args, **kwargs))
            return self.engines[-1]

        backend._row_engine = counted_engine
        if hasattr(backend.model, "generate"):
            generate = backend.model.generate

            def counted_generate(input_ids, **kwargs):
                output = generate(input_ids=input_ids, **kwargs)
                self.batches.append(len(input_ids))
                self.row_steps += len(input_ids) * (output.shape[1] - input_ids.shape[1])
                return output

            backend.model.generate = counted_generate
        else:  # the native Qwen-VL: its plain batches decode here
            decode = backend._decode

            def counted_decode(prompts, *args, **kwargs):
                ids = decode(prompts, *args, **kwargs)
                self.batches.append(len(prompts))
                self.row_steps += len(prompts) * max(map(len, ids), default=0)
                return ids

            backend._decode = counted_decode

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def reset(self) -> None:
        self.batches: list[int] = []
        self.engines: list = []
        self.row_steps = 0
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()


def timed_run(backend, meter: Meter, requests: list[Request], options: GenerationOptions, reference=None) -> tuple[dict, list]:
    """One pass over `requests`: seconds, images/s, new tokens/s, row-steps computed (plain batches:
    rows x new tokens of each generate; refill: the engine's count), peak accelerator memory, and the
    share of answers equal to `reference` (the plain run's; bf16 rounding may flip a few)."""
    meter.reset()
    start = time.perf_counter()
    answers = backend.generate(requests, options)
    meter.sync()
    seconds = time.perf_counter() - start
    useful = sum(r.prompt.max_new_tokens for r in requests)
    row_steps = meter.row_steps + sum(e.stats.row_steps for e in meter.engines)
    figures = dict(
        s=round(seconds, 2),
        img_per_s=round(len(requests) / seconds, 3),
        new_tokens_per_s=round(useful / seconds, 1),
        utilisation=round(useful / row_steps, 3) if row_steps else None,
        batches=meter.batches[:] or None,
        peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1) if meter.device.startswith("cuda") else None,
    )
    if reference is not None:
        figures["answers_equal_plain"] = round(sum(a == b for a, b in zip(answers, reference)) / len(answers), 3)
    return figures, answers


def read_baseline() -> dict | None:
    path = os.environ.get("BASELINE_JSON") or (os.environ.get("OUT") and os.path.join(os.environ["OUT"], "baseline.json"))
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else None


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    size_name = os.environ.get("SIZE", "tiny")
    size = SIZES[size_name]
    n, new = int(os.environ.get("N", "32")), int(os.environ.get("NEW", "64"))
    vary_n = int(os.environ.get("VARY_N", "96"))
    shortest, longest = int(os.environ.get("SHORTEST", "8")), int(os.environ.get("LONGEST", "160"))
    batch_size = int(os.environ.get("BS", "32"))
    budget = int(os.environ.get("BUDGET", str(16 * 1400)))
    runs = [r for r in os.environ.get("RUNS", ",".join(RUNS)).split(",") if not (size.native is not None and r == "static")]
    workloads = os.environ.get("WORKLOADS", "standard,varying").split(",")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    attn = os.environ.get("ATTN") or default_attn_implementation(device)

    start = time.time()
    backend = build_backend(size, device, dtype, attn)
    params = sum(p.numel() for p in backend.model.parameters())
    print("init_s", round(time.time() - start, 1), "params_B", round(params / 1e9, 2), flush=True)

    images = workload(max(n, vary_n if "varying" in workloads else 0))
    scale = float(os.environ.get("IMAGE_SCALE", "1"))  # a dry run's smaller images, same draw
    if scale != 1:
        images = [image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale)))) for image in images]
    task = "ground" if size.native is not None else "read_text"
    extra = {"phrase": "the red car on the left"} if task == "ground" else {}
    requests = {
        "standard": [Request(image, build_prompt(task, backend.family, max_new_tokens=new, **extra)) for image in images[:n]],
        "varying": [Request(image, build_prompt(task, backend.family, max_new_tokens=length, **extra))
                    for image, length in zip(images, varying_lengths(vary_n, shortest, longest))],
    }
    meter = Meter(backend)
    warm = requests["standard"][: min(batch_size, n)]
    backend.generate(warm, GenerationOptions(batch_size=batch_size, min_new_tokens=new))  # warm-up
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "transformers": transformers.__version__,
              "torch": torch.__version__, "size": size_name, "N": n, "NEW": new, "VARY_N": vary_n,
              "lengths": f"{shortest}-{longest}", "BS": batch_size, "BUDGET": budget, "attn": attn,
              "params_B": round(params / 1e9, 2)}
    baseline = read_baseline() if size.native is None else None
    # "static" after every other run: on a GPU its first batch compiles the decode step (CUDA graphs),
    # which may take a minute or more; cut off by the step's time limit, it loses only its own figures
    order = [(name, run) for name in workloads for run in runs if run != "static"]
    order += [(name, "static") for name in workloads if "static" in runs]
    references: dict[str, list] = {}
    for name, run in order:
        pinned = new if name == "standard" else longest
        settings = {k: (budget if k == "token_budget" else v) for k, v in RUNS[run].items()}
        options = GenerationOptions(batch_size=batch_size, min_new_tokens=pinned, **settings)
        try:
            compile_s = None
            if run == "static" and name == workloads[0]:  # compiled untimed, on the warm-up batch's shapes
                compile_start = time.perf_counter()
                backend.generate(warm, GenerationOptions(batch_size=batch_size, min_new_tokens=new, static_cache=True))
                compile_s = round(time.perf_counter() - compile_start, 1)
            figures, answers = timed_run(backend, meter, requests[name], options, references.get(name))
            references.setdefault(name, answers)
            if compile_s is not None:
                figures["warm_up_s"] = compile_s
        except Exception as error:  # one failing configuration must not lose the others' figures
            figures = {"error": f"{type(error).__name__}: {error}"[:500]}
        result.setdefault(name, {})[run] = figures
        print(name, run, figures, flush=True)
        add_speedups(result, baseline)
        save(result, size_name)  # each figure kept at once: a step cut off by its time limit loses only itself
    print(json.dumps(result), flush=True)


def add_speedups(result: dict, baseline: dict | None) -> None:
    """The baseline's figures (same machine, same folder) beside ours, and our best standard run's
    speed-up over each."""
    if not baseline or not result.get("standard"):
        return
    result["baseline"] = {k: v for k, v in baseline.items() if isinstance(v, dict)}
    best = max(v.get("img_per_s", 0) for v in result["standard"].values())
    for name, figures in result["baseline"].items():
        result[f"speedup_vs_{name}"] = round(best / figures["img_per_s"], 2)


def save(result: dict, size_name: str) -> None:
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], f"runtime_{size_name}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
