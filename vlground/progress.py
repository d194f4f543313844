"""The progress bar of every command that runs over many inputs: on stderr, with rate and ETA, and
only where a person watches (a terminal), so logs and pipes stay clean."""
from __future__ import annotations

import sys


def progress_bar(total: int, enabled: bool | None = None, unit: str = "img"):
    """A tqdm bar over `total` items on stderr; `enabled` None shows it only when stderr is a
    terminal, True or False force it on or off (--progress / --quiet)."""
    from tqdm import tqdm

    show = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=not show)
