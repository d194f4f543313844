"""Turning the PATH arguments of `vlground ocr` (files, folders, globs) into the list of files to read.

Rules: a file named on the command line is read whatever it is (a bad one becomes an error record);
a folder is walked, not read, and from it only files with an image suffix are taken (the rest are
counted, not read: a folder of scans often holds notes and ground-truth text); subfolders only with
`recursive`; a glob that matches nothing is reported as a failed input. Each file appears once, in
the order given, folders sorted by name."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image


def image_suffixes() -> frozenset[str]:
    """Lower-case suffixes (".jpg") of the formats this Pillow can open."""
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass
class Inputs:
    """`files` to read; `unmatched` patterns that matched nothing, with the reason; `not_images`
    files seen in folders and left out by suffix; `subfolders` folders not entered (no recursive)."""

    files: list[str] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)
    subfolders: list[str] = field(default_factory=list)


def _walk(folder: str, recursive: bool, suffixes: frozenset[str], into: Inputs) -> list[str]:
    found = []
    if recursive:
        for root, dirs, names in os.walk(folder):
            dirs.sort()
            found += [os.path.join(root, n) for n in sorted(names)]
    else:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_dir():
                    into.subfolders.append(entry.path)
                else:
                    found.append(entry.path)
    images = [p for p in found if Path(p).suffix.lower() in suffixes]
    into.not_images += [p for p in found if Path(p).suffix.lower() not in suffixes]
    return images


def collect_inputs(paths: list[str], recursive: bool = False) -> Inputs:
    """The files behind `paths` (see the module docstring for the rules)."""
    suffixes = image_suffixes()
    inputs = Inputs()
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            inputs.files.append(path)

    for arg in paths:
        targets = [arg]
        if glob.has_magic(arg) and not os.path.exists(arg):
            targets = sorted(glob.glob(arg, recursive=True))
            if not targets:
                inputs.unmatched.append((arg, "no file matches this pattern"))
        for target in targets:
            if os.path.isdir(target):
                for path in _walk(target, recursive, suffixes, inputs):
                    add(path)
            else:
                add(target)  # missing or unreadable files become error records when read
    return inputs
