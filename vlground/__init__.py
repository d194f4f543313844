"""vlground: visual grounding and OCR with the Qwen-VL family, with boxes in the right frame."""
