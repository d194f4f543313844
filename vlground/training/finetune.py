"""LoRA fine-tuning of the transformers families on data written by `vlground convert`.

What the model is trained on is what it is asked at inference: the prompt goes through the same chat
template as `vlground.models.hf` builds it (the image, then the user's words), the image through the
family's processor with the min/max pixels the data was converted for (a mismatch is refused: the
answers' coordinates depend on them for Qwen2.5-VL), and the loss counts the answer's tokens only
(and the end of turn, so the model learns to stop).

The output folder holds a PEFT adapter (`adapter_config.json`, `adapter_model.safetensors`) and
`vlground_finetune.json` (base model, family, pixels); `checkpoint/` beside them holds the optimizer
and the epoch reached, so a run stopped at any point resumes with `resume=True`. The adapter is put
on a loaded model by `vlground.models.adapters` (`load_model(M, adapter=DIR)`)."""
from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from vlground.extras import require
from vlground.core.families import EMPTY_REASONING, Family, get_family
from vlground.models.adapters import ADAPTER_INFO
from vlground.training.convert import ConvertError, read_metadata, training_turns

CHECKPOINT = "checkpoint"
FINETUNE_MODULES = ("torch", "transformers", "peft")  # what training imports, of the models extra
IGNORE = -100  # the label torch's cross-entropy skips
TARGET_MODULES = r"(.*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj))|lm_head"


class FinetuneError(ValueError):
    """Fine-tuning cannot start as asked (other family, other pixels, no data); the message says why."""


@dataclass(frozen=True)
class FinetuneOptions:
    """`epochs` over the data, AdamW at `lr`, LoRA of `lora_rank` (alpha twice the rank) on the
    language model's projections, `batch_size` examples per optimizer step, `seed` for the shuffle
    and the LoRA init. `min_pixels`/`max_pixels`: None takes the data's; others are refused."""

    epochs: int = 3
    lr: float = 2e-4
    lora_rank: int = 16
    batch_size: int = 4
    seed: int = 0
    min_pixels: int | None = None
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "lora_rank", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise FinetuneError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise FinetuneError(f"lr must be > 0, got {self.lr!r}")


def _check_data(family: Family, metadata: dict, options: FinetuneOptions) -> tuple[int | None, int | None]:
    """The data's min/max pixels, after checking the data was converted for this family and pixels."""
    if metadata.get("family") != family.name:
        raise FinetuneError(f"the data was converted for {metadata.get('family')}, the model is {family.name}: "
                            f"convert again with --family {family.name}")
    if "transformers" not in family.runtimes:
        raise FinetuneError(f"{family.name} runs on vlground's native runtime, which has no training; "
                            "fine-tune a Qwen2-VL, Qwen2.5-VL or Qwen3-VL checkpoint")
    pixels = metadata.get("min_pixels"), metadata.get("max_pixels")
    for name, asked, converted in zip(("min_pixels", "max_pixels"), (options.min_pixels, options.max_pixels), pixels):
        if asked is not None and asked != converted:
            raise FinetuneError(f"the data's answers were framed for {name}={converted}, not {asked}: train with "
                                f"--{name.replace('_', '-')} {converted} or convert again with the settings you want")
    return pixels


def encode_example(processor, image, prompt: str, answer: str, system: str | None = None) -> dict:
    """Model inputs of one example and `labels`: -100 over the prompt (image included), the answer's
    ids after it. The prompt is the one `HFBackend` sends at inference with thinking off, `system`
    (a computer-use tool's description) as its system turn: where the template writes the empty
    reasoning block itself, the answer's copy of it (`vlground convert` writes one for Qwen3.5) is
    not trained twice."""
    turns = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
    turns.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]})
    prompt_text = processor.apply_chat_template(turns, add_generation_prompt=True, tokenize=False, enable_thinking=False)
    if prompt_text.endswith(EMPTY_REASONING):
        answer = answer.removeprefix(EMPTY_REASONING)
    end = processor.tokenizer.convert_ids_to_tokens(processor.tokenizer.convert_tokens_to_ids("<|im_end|>"))
    full = processor(text=[prompt_text + answer + end], images=[image], return_tensors="pt")
    prompt_ids = processor(text=[prompt_text], images=[image], return_tensors="pt")["input_ids"][0]
    prompt_length = len(prompt_ids)
    if not bool((full["input_ids"][0, :prompt_length] == prompt_ids).all()):
        raise FinetuneError("the tokenizer merges the prompt's end with the answer's start; the prompt cannot be masked")
    labels = full["input_ids"].clone()
    labels[:, :prompt_length] = IGNORE
    return {**full, "labels": labels}


def _training_images(data: str | Path) -> list[tuple[object, str, str, str | None]]:
    """(image, user words, answer, system turn) of every record of `data`, images loaded; a record that is not a
    training record, or whose image cannot be read, is a FinetuneError naming the file and line."""
    from vlground.io.images import ImageLoadError, load_image

    out = []
    try:
        turns = training_turns(data)
    except ConvertError as error:
        raise FinetuneError(str(error)) from None
    for where, (image, prompt, answer, system) in turns:
        try:
            out.append((load_image(image), prompt, answer, system))
        except ImageLoadError as error:
            raise FinetuneError(f"{where}: {error}") from None
    if not out:
        raise FinetuneError(f"{data} holds no records")
    return out


def _lora(model, options: FinetuneOptions):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=options.lora_rank, lora_alpha=2 * options.lora_rank, lora_dropout=0.0,
                        target_modules=TARGET_MODULES, bias="none")
    return get_peft_model(model, config)


@dataclass(frozen=True)
class _Checkpoint:
    """What out/checkpoint holds to resume from: the epochs done and the saved states."""

    epochs_done: int
    adapter: dict
    optimizer: dict
    schedule: dict


def _read_checkpoint(out: Path) -> _Checkpoint | None:
    """out/checkpoint read (None: there is none) before any model is loaded; a damaged or foreign
    file is a FinetuneError naming it. The optimizer file is read as tensors only: a pickled
    object in it is refused, never run."""
    import pickle

    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = out / CHECKPOINT
    state_file, adapter_file, optimizer_file = folder / "state.json", folder / "adapter_model.safetensors", folder / "optimizer.pt"
    if not state_file.is_file():
        return None

    def damaged(file: Path, why: str) -> FinetuneError:
        return FinetuneError(f"{file} cannot be resumed from ({why}); remove {folder} to train from the start, "
                             "or choose another --out")

    try:
        epochs_done = json.loads(state_file.read_text(encoding="utf-8"))["epochs_done"]
    except (OSError, ValueError, RecursionError, KeyError, TypeError) as error:
        raise damaged(state_file, f"not {{\"epochs_done\": N}}: {type(error).__name__}: {error}") from None
    if isinstance(epochs_done, bool) or not isinstance(epochs_done, int) or epochs_done < 0:
        raise damaged(state_file, f"epochs_done is {epochs_done!r}, not a number of epochs")
    try:
        adapter = load_file(adapter_file)
    except (OSError, SafetensorError) as error:
        raise damaged(adapter_file, f"{type(error).__name__}: {error}") from None
    try:
        saved = torch.load(optimizer_file, weights_only=True)
    except pickle.UnpicklingError as error:
        wanted = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", str(error), re.IGNORECASE)
        raise damaged(optimizer_file, f"it holds a pickled object{f' ({wanted.group(1)})' if wanted else ''} "
                                      "that only running code could load") from None
    except (OSError, EOFError, RuntimeError, ValueError) as error:
        raise damaged(optimizer_file, f"{type(error).__name__}: {error or 'empty'}") from None
    if not (isinstance(saved, dict) and isinstance(saved.get("optimizer"), dict) and isinstance(saved.get("schedule"), dict)):
        raise damaged(optimizer_file, "it holds no optimizer and schedule states")
    return _Checkpoint(epochs_done, adapter, saved["optimizer"], saved["schedule"])


def _resume_state(checkpoint: _Checkpoint, folder: Path, model, optimizer, schedule) -> int:
    """The epoch to start at, after the adapter weights, optimizer and learning-rate schedule of
    `checkpoint` (read from `folder`) are put in place."""
    from peft import set_peft_model_state_dict

    try:
        set_peft_model_state_dict(model, checkpoint.adapter)
        optimizer.load_state_dict(checkpoint.optimizer)
        schedule.load_state_dict(checkpoint.schedule)
    except (KeyError, ValueError, RuntimeError, TypeError) as error:
        raise FinetuneError(f"{folder} was saved by a run with other options or another model ({type(error).__name__}: "
                            f"{error}); resume with the same options, or choose another --out") from None
    return checkpoint.epochs_done


def _save_checkpoint(out: Path, model, optimizer, schedule, epochs_done: int, info: dict) -> None:
    """The adapter in `out` and, in out/checkpoint, what resuming needs; the state file last, so a
    kill mid-save resumes from the epoch before."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from vlground.io.sink import atomic_write

    model.save_pretrained(out, save_embedding_layers=False)  # lm_head carries LoRA only: the base stays
    atomic_write(out / ADAPTER_INFO, json.dumps(info, indent=1) + "\n")
    folder = out / CHECKPOINT
    folder.mkdir(exist_ok=True)
    save_file(get_peft_model_state_dict(model, save_embedding_layers=False), folder / "adapter_model.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}, folder / "optimizer.pt")
    atomic_write(folder / "state.json", json.dumps({"epochs_done": epochs_done}) + "\n")


def _epoch(model, optimizer, schedule, batches: Sequence[Sequence[dict]], say: Callable[[str], None], epoch: str) -> float:
    """One pass: each batch's examples' mean loss, one optimizer step per batch (gradients clipped to
    norm 1, the learning rate decayed linearly); the epoch's mean loss."""
    import torch

    total = 0.0
    device = next(p for p in model.parameters() if p.requires_grad).device
    for number, batch in enumerate(batches, 1):
        optimizer.zero_grad()
        loss_sum = 0.0
        for example in batch:
            loss = model(**{k: v.to(device) for k, v in example.items()}).loss / len(batch)
            loss.backward()
            loss_sum += loss.item()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        optimizer.step()
        schedule.step()
        total += loss_sum
        say(f"epoch {epoch} step {number}/{len(batches)} loss {loss_sum:.4f}")
    return total / max(1, len(batches))


def finetune(
    model_path: str | Path,
    data: str | Path,
    out: str | Path,
    options: FinetuneOptions = FinetuneOptions(),
    *,
    resume: bool = False,
    merge: bool = False,
    device: str = "auto",
    progress: Callable[[str], None] = print,
    each_step: bool = True,
) -> Path:
    """Train a LoRA adapter for the checkpoint folder `model_path` on converted `data`, written to
    `out` (see the module docstring); with `merge`, also a full checkpoint in out/merged. `device`
    "auto" trains on a GPU when there is one (base weights in bf16 there, fp32 on the CPU; the
    adapter's weights in fp32). `progress` is told each step's loss (unless `each_step` is False) and each
    epoch's mean loss. Returns `out`."""
    require("models", "fine-tuning", *FINETUNE_MODULES)
    import torch

    from vlground.models.hf import HFBackend

    family = get_family(model_path)
    min_pixels, max_pixels = _check_data(family, read_metadata(data), options)
    out = Path(out)
    if (out / CHECKPOINT).exists() and not resume:
        raise FinetuneError(f"{out} holds a run already: resume it (--resume) or choose another --out")
    # Everything that can be wrong with the data or the checkpoint is found before the model loads.
    checkpoint = _read_checkpoint(out) if resume else None
    images = _training_images(data)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(options.seed)
    backend = HFBackend.load(Path(model_path), family, device=device, min_pixels=min_pixels, max_pixels=max_pixels)
    processor = backend.processor
    examples = [encode_example(processor, image, prompt, answer, system) for image, prompt, answer, system in images]
    model = _lora(backend.model, options)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=options.lr)
    steps = options.epochs * -(-len(examples) // options.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / steps))
    start = _resume_state(checkpoint, out / CHECKPOINT, model, optimizer, schedule) if checkpoint is not None else 0
    info = {"base_model": str(model_path), "family": family.name, "min_pixels": min_pixels, "max_pixels": max_pixels,
            "data": str(data), "options": asdict(options)}
    for epoch in range(start, options.epochs):
        order = list(range(len(examples)))
        random.Random(options.seed + epoch).shuffle(order)
        batches = [[examples[i] for i in order[s : s + options.batch_size]] for s in range(0, len(order), options.batch_size)]
        mean = _epoch(model, optimizer, schedule, batches, progress if each_step else lambda line: None, f"{epoch + 1}/{options.epochs}")
        _save_checkpoint(out, model, optimizer, schedule, epoch + 1, info)
        progress(f"epoch {epoch + 1}/{options.epochs} mean loss {mean:.4f}; adapter saved in {out}")
    if merge:
        merged = model.merge_and_unload()
        merged.save_pretrained(out / "merged")
        processor.save_pretrained(out / "merged")
    return out
