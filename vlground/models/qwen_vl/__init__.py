"""Native Qwen-VL (v1): the 2023 model of the paper, on today's torch, loading the released weights."""
