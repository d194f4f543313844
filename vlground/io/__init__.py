"""Bytes in and out, knowing no result type: the one image loader (images), inputs given as files,
folders, globs, URLs or stdin (sources), PDF and TIFF pages (documents), and the durable JSONL sink
(sink)."""
