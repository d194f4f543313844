"""`vlground tiny-model`: a tiny random-weight checkpoint of a family, to try the model commands
offline (no download, a CPU, seconds). Its answers are noise; it shows the commands work."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vlground.cli.errors import fail, reported

TRIAL_BUDGET = 16


def tiny_model(
    family: Annotated[str, typer.Argument(help="A family: qwen2.5-vl, qwen3-vl, qwen2-vl, qwen-vl-chat, ...")],
    out: Annotated[Path, typer.Argument(help="The folder to write the checkpoint to (new or empty).")],
    answer_budget: Annotated[int, typer.Option(min=1, help="Default answer length in tokens of the models loaded from it.")] = TRIAL_BUDGET,
) -> None:
    """Write a tiny random-weight checkpoint of FAMILY to OUT, to try the model commands without weights."""
    from vlground.extras import require
    from vlground.core.families import get_family

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        fail(f"{out} exists and is not an empty folder; name a new one")
    with reported(ValueError):
        require("models", "building a tiny checkpoint")
        name = get_family(family).name
        from vlground.testing import make_tiny_model

        make_tiny_model(family, out, answer_budget=answer_budget)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    typer.echo(f"wrote a tiny random-weight {name} checkpoint to {out} ({size:.0f} MB). Its answers are noise "
               f"(at most {answer_budget} tokens by default): it is for trying the commands offline, e.g.\n"
               f'  vlground detect samples/shop_sign.png "the sign" --model {out}', err=True)


def register(app: typer.Typer) -> None:
    app.command("tiny-model")(tiny_model)
