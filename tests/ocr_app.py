"""What the OCR command-line tests share: the `ocr` command in an app of its own, and its output."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from vlground.cli.ocr import register


def ocr_app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    app.callback()(lambda: None)  # keep "ocr" as a subcommand, as in the real CLI
    return app


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]
