"""Native Qwen-VL (v1): the 2023 model of the paper, on today's torch, loading the released weights.

- `model`: config parsed from the release's config.json, the LLM, the multimodal forward, the KV cache.
- `vision`: preprocessing (448x448 bicubic squash, CLIP mean/std), the ViT and the 256-query resampler.
- `tokenizer`: tiktoken BPE from the checkpoint's `qwen.tiktoken`, release special-token ids, ChatML.
- `checkpoint`: weights by their original key names (safetensors or .bin, sharded or not).
- `backend`: `QwenVLBackend`, the "qwen-vl-native" runtime (batched, left-padded generation)."""
