"""Batch OCR: the embedded engine, line assembly, and the resumable folder runner.

    records    the JSONL record `vlground ocr` writes (and `vlground eval ocr` reads)
    engine     PP-OCR (rapidocr-onnxruntime, CPU, offline) and Qwen-VL engines
    layout     detected pieces -> lines in reading order (columns, tilted pages)
    spacing    word spaces the recognizer dropped, put back from the pixels
    confusions look-alike characters fixed where the context leaves no doubt
    inputs     PATH arguments (files, folders, globs) -> files to read
    output     durable JSONL appends, resume, per-image .txt export
    runner     the batch: workers, progress, summary
    synthetic  rendered text with known truth, for tests, samples and benchmarks"""
