"""Batch OCR: the embedded engine, line assembly, documents, exports and the resumable runner.

    records    the JSONL record `vlground ocr` writes (and `vlground eval ocr` reads), words included
    engine     what every engine gives (PageText), and the Qwen-VL models as engines
    ppocr      the built-in engines, PP-OCRv6 (rapidocr 3, default) and PP-OCRv4, CPU, offline
    layout     detected pieces -> lines in reading order (columns, tilted pages)
    spacing    word spaces the recognizer dropped, put back from the pixels; the words of a line
    confusions look-alike characters fixed where the context leaves no doubt
    documents  PDFs and multi-page TIFFs -> one input per page (--pages, --dpi)
    output     the result sink for --out, keyed by input (absolute path, page)
    formats    txt, hOCR, Markdown and searchable-PDF views of an input's records
    exports    writing those views once all of an input's pages are in
    workers    one input -> one record; the pool of worker processes that die with their run
    runner     the batch: planning, resume, progress, summary
    synthetic  rendered text with known truth, for tests, samples and benchmarks"""
