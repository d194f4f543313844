"""`vlground finetune`: a LoRA adapter trained on `vlground convert` output, resumable."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from vlground.cli.errors import fail
from vlground.cli.flags import Device
from vlground.cli.verbosity import verbose
from vlground.extras import require


def finetune(
    model: Annotated[str, typer.Option("--model", "-m", help="Local checkpoint folder (Qwen2-VL, Qwen2.5-VL, Qwen3-VL).")],
    data: Annotated[Path, typer.Option(help="Records written by `vlground convert` (its .vlground.json beside them).")],
    out: Annotated[Path, typer.Option(help="Folder for the adapter and the checkpoint to resume from.")],
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the data.")] = 3,
    lr: Annotated[float, typer.Option(help="AdamW learning rate (decays linearly to 0).")] = 2e-4,
    lora_rank: Annotated[int, typer.Option(min=1, help="LoRA rank (alpha is twice the rank).")] = 16,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per optimizer step.")] = 4,
    min_pixels: Annotated[Optional[int], typer.Option(help="Must equal the data's (default: the data's).")] = None,
    max_pixels: Annotated[Optional[int], typer.Option(help="Must equal the data's (default: the data's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the shuffle and the LoRA init.")] = 0,
    device: Device = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --out.")] = False,
    merge: Annotated[bool, typer.Option("--merge", help="Also write a full checkpoint with the adapter merged, in OUT/merged.")] = False,
) -> None:
    """Train a LoRA adapter; the loss goes to stderr (each step's on a terminal or with --verbose, else each epoch's), the adapter is saved every epoch."""
    from vlground.extras import MissingExtraError
    from vlground.training.finetune import FINETUNE_MODULES, FinetuneOptions, finetune as run

    require("models", "fine-tuning", *FINETUNE_MODULES)  # before the folder: the download needs the extra too
    if not Path(model).is_dir():
        hub_id = model.count("/") == 1 and not model.startswith((".", "/", "~")) and not Path(model).exists()
        fail(f"--model {model} is not a local checkpoint folder; "
             + (f"download it first (hf download {model} --local-dir {model.split('/')[1]}) and pass that folder"
                if hub_id else "give the folder that holds its config.json and weights"))
    try:
        options = FinetuneOptions(epochs=epochs, lr=lr, lora_rank=lora_rank, batch_size=batch_size, seed=seed,
                                  min_pixels=min_pixels, max_pixels=max_pixels)
        run(model, data, out, options, resume=resume, merge=merge, device=device, progress=lambda line: typer.echo(line, err=True),
            each_step=sys.stderr.isatty() or verbose())  # each step's loss is progress: on a terminal; off it, each epoch's
    except (ValueError, OSError, MissingExtraError) as error:  # FinetuneError, ConvertError, an unknown family, missing weights, no torch
        fail(str(error))
    typer.echo(f"adapter in {out}; use it with --adapter {out} or load_model(..., adapter={str(out)!r})", err=True)


def register(app: typer.Typer) -> None:
    app.command()(finetune)
