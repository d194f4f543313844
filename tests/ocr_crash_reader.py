"""A page worker for the worker-crash test: it kills its worker process on files named *crash*, as a
segfault inside onnxruntime would, and reads every other file with the real engine."""
import os

from vlground.jobs.ocr import PageWorker


class CrashingPages(PageWorker):
    def __call__(self, jobs):
        if any("crash" in os.path.basename(job.source.location) for job in jobs):
            os._exit(139)
        return super().__call__(jobs)
