"""The progress bar and the closing summary of every command that runs over many inputs: the bar on
stderr, with rate and ETA, only where a person watches (a terminal), so logs and pipes stay clean."""
from __future__ import annotations

import sys
from dataclasses import dataclass


def progress_bar(total: int, enabled: bool | None = None, unit: str = "img"):
    """A tqdm bar over `total` items on stderr; `enabled` None shows it only when stderr is a
    terminal, True or False force it on or off (--progress / --quiet)."""
    from tqdm import tqdm

    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=not show)


@dataclass
class Summary:
    """What a run did: `done` records written (of which `failed` are errors), `skipped` inputs the
    output already held (of which `skipped_failed` were errors), `not_images` folder files left out
    by suffix, `subfolders` not entered, `first_pages` multi-page files of which a job that reads
    images (detect, label) read the first page alone."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    skipped_failed: int = 0
    not_images: int = 0
    subfolders: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    no_inputs: str | None = None  # why nothing could be read, when nothing could
    first_pages: int = 0

    @property
    def images_per_second(self) -> float:
        return (self.done - self.failed) / self.seconds if self.seconds > 0 else 0.0  # what was read, not failures

    @property
    def ok(self) -> bool:
        """False when any input has an error record, from this run or an earlier one, or when
        there was nothing to read."""
        return self.failed == 0 and self.skipped_failed == 0 and not self.interrupted and self.no_inputs is None

    def describe(self) -> str:
        if self.no_inputs:
            return f"warning: {self.no_inputs}; nothing written"
        parts = [f"done {self.done}", f"failed {self.failed}", f"{self.seconds:.1f} s",
                 f"{self.images_per_second:.2f} images/s"]
        if self.skipped:
            parts.append(f"skipped {self.skipped} already in the output ({self.skipped_failed} of them failed"
                         + ("; --retry-failed reads them again)" if self.skipped_failed else ")"))
        if self.not_images:
            parts.append(f"{self.not_images} files in folders without an image suffix not read")
        if self.subfolders:
            parts.append(f"{self.subfolders} subfolders not entered (use --recursive)")
        if self.first_pages:
            files = "file" if self.first_pages == 1 else "files"
            parts.append(f"{self.first_pages} multi-page {files} of which the first page alone was read (vlground ocr reads every page)")
        text = ", ".join(parts)
        return text + ("; interrupted: run again with --resume to finish" if self.interrupted else "")
