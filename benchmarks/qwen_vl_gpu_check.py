"""Device check for the native Qwen-VL: reference equivalence on CUDA, and timing of the real 9.6B size
(Qwen-VL-Chat's config, random weights) in bf16. Writes results.json into $OUT (or argv[1]).

    QWEN_VL_REFERENCE=path/to/shared/reference/qwen_vl_v1 PYTHONPATH=. python benchmarks/qwen_vl_gpu_check.py OUT
SMALL=1 runs the same steps on CPU with a small config (a dry run of the script)."""
import json, os, shutil, subprocess, sys, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vlground.core.families import FAMILIES
from vlground.core.options import GenerationOptions
from vlground.models.base import Request
from vlground.models.qwen_vl.backend import DecodeStep, QwenVLBackend
from vlground.models.qwen_vl.checkpoint import load_model
from vlground.models.qwen_vl.model import KVCache
from vlground.models.qwen_vl.tokenizer import QwenVLTokenizer
from vlground.models.qwen_vl.vision import preprocess
from vlground.prompts import IMAGE_SLOT, Prompt, build_prompt
from vlground.testing.qwen_vl import make_tiny_qwen_vl

sys.path.insert(0, str(Path(__file__).parent))
from bench_runtime import random_qwen_vl  # noqa: E402

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ["OUT"])
SMALL = os.environ.get("SMALL") == "1"  # CPU dry run of this script with a small "real" config
HERE = Path(__file__).parent
REF = Path(os.environ.get("QWEN_VL_REFERENCE", HERE.parent.parent / "shared" / "reference" / "qwen_vl_v1"))
device = "cpu" if SMALL else "cuda"
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
results = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch": torch.__version__}


def save():
    (OUT / "results.json").write_text(json.dumps(results, indent=1))


def sync():
    if device == "cuda":
        torch.cuda.synchronize()


# 1. reference equivalence on the device, fp32 and bf16
ckpt = Path("/tmp/qwen_vl_ref")
subprocess.run([sys.executable, str(REF / "make_checkpoint.py"), str(ckpt)], check=True)
shutil.copy(REF / "qwen.tiktoken", ckpt / "qwen.tiktoken")
ref = json.loads((REF / "reference.json").read_text())
tok = QwenVLTokenizer.from_checkpoint(ckpt)
text = ref["prompt"].replace("<img>image.png</img>", IMAGE_SLOT)
image = Image.open(REF / "image.png")
for dtype in (torch.float32, torch.bfloat16):
    model = load_model(ckpt, device, dtype)
    enc = tok.raw_prompt(text)
    ids = torch.tensor([enc.ids], device=device)
    with torch.inference_mode():
        cache = KVCache(model.config, [ids.shape[1]], ids.shape[1], device, dtype)
        emb = model.embed(ids, preprocess([image], 56).to(device), torch.tensor([enc.image_start], device=device))
        logits = model.logits(model(emb, torch.ones_like(ids, dtype=torch.bool), cache, torch.arange(ids.shape[1], device=device)))[0].float().cpu()
    sub = logits[-16:, ref["vocab_subset"]]
    backend = QwenVLBackend(model, tok, FAMILIES["qwen-vl"])
    [ans] = backend.generate([Request(image, Prompt(text=text, task="grounded_caption", chat=False))], GenerationOptions(max_new_tokens=8))
    results[f"reference_{str(dtype)[6:]}"] = {
        "max_abs_logit_diff_subset": float((sub - torch.tensor(ref["logits_last16_subset"])).abs().max()),
        "max_abs_logsumexp_diff": float((torch.logsumexp(logits, -1) - torch.tensor(ref["logsumexp_all"])).abs().max()),
        "argmax_agreement": float((logits.argmax(-1) == torch.tensor(ref["argmax_all"])).float().mean()),
        "greedy_text_equal": ans.text == tok.decode(ref["greedy_8"]),
    }
    save()

# 2. tiny chat model: left-padded batch vs one at a time, fp32 and bf16
tiny = make_tiny_qwen_vl("/tmp/tiny_chat", chat=True)
rng = np.random.default_rng(0)
images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in [(60, 40), (30, 100), (64, 64), (200, 90)]]
fam = FAMILIES["qwen-vl-chat"]
prompts = [build_prompt("ground", fam, phrase="the red car"), build_prompt("caption", fam),
           build_prompt("ask", fam, question="What is written on the sign above the door?"), build_prompt("read_text", fam)]
reqs = [Request(i, p) for i, p in zip(images, prompts)]
for dt in ("fp32", "bf16"):
    b = QwenVLBackend.load(tiny, fam, device=device, dtype=dt)
    opt = GenerationOptions(max_new_tokens=12, batch_size=4)
    batched = [g.text for g in b.generate(reqs, opt)]
    alone = [b.generate([r], opt)[0].text for r in reqs]
    results[f"tiny_batch_equals_single_{dt}"] = [x == y for x, y in zip(batched, alone)]
save()

# 3. the real size (Qwen-VL-Chat config), random weights, bf16
real = json.loads((HERE / "qwen_vl_chat_config.json").read_text())
if SMALL:
    real.update(hidden_size=256, intermediate_size=512, num_hidden_layers=2, kv_channels=64, num_attention_heads=4)
    real["visual"].update(width=64, layers=2, heads=4, output_dim=256, image_size=112)
model = random_qwen_vl(real, device, torch.bfloat16)
config = model.config
params = sum(p.numel() for p in model.parameters())
results["real_size"] = {"parameters": params, "weights_gib": torch.cuda.memory_allocated() / 2**30 if device == "cuda" else None}
save()
backend = QwenVLBackend(model, tok, fam)
big = [Image.fromarray(rng.integers(0, 256, (int(rng.integers(640, 1300)), int(rng.integers(480, 1000)), 3), dtype=np.uint8)) for _ in range(32)]
ground = build_prompt("ground", fam, phrase="the red car on the left")
work = [Request(i, ground) for i in big]
new = 28
backend.generate(work[:2], GenerationOptions(max_new_tokens=4, batch_size=2))  # warm up
for batch, count in ((1, 8), (8, 32), (32, 32)):
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(); t = time.perf_counter()
    backend.generate(work[:count], GenerationOptions(max_new_tokens=new, min_new_tokens=new, batch_size=batch))
    sync(); dt = time.perf_counter() - t
    results["real_size"][f"batch_{batch}"] = {"images": count, "seconds": dt, "images_per_s": count / dt,
                                              "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None}
    save()
# vision tower alone, and a decode step alone, at batch 32
pixels = preprocess(big, config.vision.image_size).to(device)
with torch.inference_mode():
    model.vision(pixels[:4]); sync(); t = time.perf_counter(); model.vision(pixels); sync()
    results["real_size"]["vision_ms_per_image_b32"] = (time.perf_counter() - t) / 32 * 1000
    enc = [backend.encode_prompt(r) for r in work]
    ids = torch.tensor([e.ids for e in enc], device=device)
    n = ids.shape[1]
    for batch in (32, 1):
        cache = KVCache(config, [n] * batch, n + 16, device, torch.bfloat16)
        model(model.embed(ids[:batch], pixels[:batch], torch.tensor([e.image_start for e in enc[:batch]], device=device)),
              torch.ones_like(ids[:batch], dtype=torch.bool), cache, torch.arange(n, device=device))
        step = DecodeStep(model, cache, n)
        tokens = torch.zeros(batch, dtype=torch.long, device=device)
        sync(); t = time.perf_counter()
        for i in range(10):
            step(tokens, n + i)
        sync(); results["real_size"][f"decode_step_ms_b{batch}"] = (time.perf_counter() - t) / 10 * 1000
        t = time.perf_counter()
        for i in range(10):
            step._run()  # the same step launched kernel by kernel, no CUDA graph
        sync(); results["real_size"][f"decode_step_ms_b{batch}_no_graph"] = (time.perf_counter() - t) / 10 * 1000
    # a prompt past seq_length (2048): dynamic NTK alpha 3 and logn scaling take effect
    long_prompt = Prompt(text=IMAGE_SLOT + " the red car" * 800 + "<ref>x</ref><box>", task="ground", chat=False)
    [long_ans] = backend.generate([Request(big[0], long_prompt)], GenerationOptions(max_new_tokens=4, min_new_tokens=4))
    results["real_size"]["long_prompt_tokens"] = len(backend.encode_prompt(Request(big[0], long_prompt)).ids)
    results["real_size"]["long_prompt_ok"] = isinstance(long_ans.text, str)
save()
print(json.dumps(results, indent=1))
