"""Batch OCR: the embedded engine, line assembly, and the resumable folder runner."""
