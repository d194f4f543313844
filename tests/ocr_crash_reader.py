"""A reader for the worker-crash test: it kills its worker process on files named *crash*, as a
segfault inside onnxruntime would, and reads every other file with the real engine."""
import os

from vlground.jobs.ocr_workers import worker_read


def read_or_die(job):
    if "crash" in os.path.basename(job[0].source.location):
        os._exit(139)
    return worker_read(job)
