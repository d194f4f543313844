"""Entry point of the `vlground` command. Each command module registers its commands here; they
import heavy libraries (torch, transformers) inside the commands so `vlground parse` stays instant."""
from __future__ import annotations

import typer

from vlground.cli import detect, eval, ocr, parse

app = typer.Typer(
    name="vlground",
    help="Visual grounding and OCR with the Qwen-VL family, with boxes on the original image.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (parse, detect, ocr, eval):
    module.register(app)


def main() -> None:
    app()
if __name__ == "__main__":
    main()
