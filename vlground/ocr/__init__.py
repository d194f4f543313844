"""OCR engines: the embedded engine, line assembly and output formats. A page's lines are Detections
with a score and their words as parts, in the record every batch command writes
(`vlground.core.records`); the batch runner, its worker processes and exports are in vlground.jobs,
documents in vlground.io.

    engine     what every engine gives (PageText), and the Qwen-VL models as engines
    ppocr      the built-in engines, PP-OCRv6 (rapidocr 3, default) and PP-OCRv4, CPU, offline
    reading    their detection and recognition networks driven by vlground (resolution, batches)
    orientation which way up a page is (0/90/180/270), from box shapes and a recognizer vote
    layout     detected pieces -> lines in reading order (columns, tilted pages)
    spacing    word spaces the recognizer dropped, put back from the pixels; the words of a line
    confusions look-alike characters fixed where the context leaves no doubt
    output     the result sink for --out, keyed by input (`vlground.core.records.record_key`)
    formats    txt, hOCR, Markdown and searchable-PDF views of an input's records
    synthetic  rendered text with known truth, for tests, samples and benchmarks"""
