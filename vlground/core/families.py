"""The model families as data: one registry entry says how a generation speaks, in which coordinate
frame, with which processor settings and prompts, and which checkpoints belong to it.

Everything else looks a family up here instead of branching on model names."""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


class UnknownFamilyError(ValueError):
    """Raised for a name, hub id or folder that matches no registered family."""


@dataclass(frozen=True)
class Family:
    """One generation of the Qwen-VL family.

    `frame` names the coordinate frame the model writes: "norm1000" (integers on [0, 1000) of the
    original image) or "input_pixels" (absolute pixels of the smart-resized model input).
    `patch_size * merge_size` is smart_resize's factor; min/max pixels are the released checkpoints'.
    `prompts` maps a task to its template; `raw_prompts` are prefix completions for base models
    (`<img></img>` marks where the image goes). `runtimes` lists the runtimes (keys of
    `vlground.models.RUNTIMES`) that can run the family, the default first: the runtime is chosen
    apart from the family, so one Qwen2.5-VL checkpoint runs on transformers or behind a server.

    `thinking` says whether the family's checkpoints reason before they answer (see THINKING);
    checkpoints whose hub name matches `thinking_pattern` (Qwen3-VL-*-Thinking) always do. A local
    checkpoint's chat template has the last word (`vlground.models.thinking.template_thinking`).
    `transformers` is the oldest transformers release with the family's model classes."""

    name: str
    dialect: str
    frame: str
    runtimes: tuple[str, ...]
    model_types: tuple[str, ...]
    hub_pattern: str
    hub_ids: tuple[str, ...]
    prompts: dict[str, str]
    chat: bool = True
    patch_size: int | None = None
    merge_size: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    max_new_tokens: dict[str, int] = field(default_factory=dict)
    thinking: str = "never"
    thinking_pattern: str | None = None
    transformers: str | None = None

    def __post_init__(self) -> None:
        if self.thinking not in THINKING:
            raise ValueError(f"{self.name}: thinking must be one of {', '.join(THINKING)}, got {self.thinking!r}")

    @property
    def factor(self) -> int:
        """smart_resize's rounding unit: one merged visual token covers factor x factor pixels."""
        if self.patch_size is None or self.merge_size is None:
            raise ValueError(f"{self.name} squashes images to a fixed size; it has no smart_resize factor")
        return self.patch_size * self.merge_size

    @property
    def runtime(self) -> str:
        """The runtime a checkpoint folder of this family loads on by default."""
        return self.runtimes[0]


# Whether a checkpoint reasons before it answers: "never"; "default" (its chat template opens a
# <think> block unless the template is given enable_thinking=False, as Qwen3.5's); "always" (the
# template opens one whatever it is given, as Qwen3-VL-*-Thinking's).
THINKING = ("never", "default", "always")
# What a Qwen3.5-style template writes after `<|im_start|>assistant\n` when told enable_thinking=False:
# training answers for such checkpoints start with it, so they are trained as they are asked with thinking off.
EMPTY_REASONING = "<think>\n\n</think>\n\n"

_VQA = "{question}\nAnswer the question using a single word or phrase."
_JSON_PROMPTS = {
    "ground": "Locate {phrase} in this image and output the bbox coordinates in JSON format.",
    "caption": "Describe this image.",
    "grounded_caption": "Describe this image in detail, and output the bbox coordinates of every object you mention in JSON format.",
    "read_text": "Read all the text in the image.",
    "spot_text": "Spotting all the text in the image with line-level, and output in JSON format.",
    "ask": _VQA,
    # Qwen3-VL's spatial-understanding cookbook asks for points so; Qwen2.5-VL answers the same point_2d JSON
    "point": "Locate {phrase} in this image. Output the point coordinates in JSON format.",
}

_QWEN3_PROMPTS = {
    **_JSON_PROMPTS,
    "detect": 'Locate every instance that belongs to the following categories: "{categories}". Report bbox coordinates in JSON format.',
}

# Qwen3.5 / Qwen3.6: natively multimodal; Qwen3-VL's prompts, JSON and 0-1000 frame (QwenLM maintainers).
# min/max pixels are Qwen3-VL's, not confirmed for Qwen3.5: used only where neither a checkpoint folder's
# preprocessor config nor the caller says otherwise (a server's resizing, `vlground convert`).
_QWEN35 = Family(
    name="qwen3.5",
    dialect="json",
    frame="norm1000",
    runtimes=("transformers", "server"),
    model_types=("qwen3_5", "qwen3_5_moe"),
    hub_pattern=r"qwen3\.[56](?!\d)",
    hub_ids=("Qwen/Qwen3.5-0.8B", "Qwen/Qwen3.5-2B", "Qwen/Qwen3.5-4B", "Qwen/Qwen3.5-9B", "Qwen/Qwen3.5-27B",
             "Qwen/Qwen3.5-35B-A3B", "Qwen/Qwen3.5-122B-A10B", "Qwen/Qwen3.5-397B-A17B", "Qwen/Qwen3.6-35B-A3B"),
    patch_size=16,
    merge_size=2,
    min_pixels=65536,
    max_pixels=16777216,
    prompts=_QWEN3_PROMPTS,
    thinking="default",
    transformers="5.2.0",
)

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            name="qwen-vl",
            dialect="qwen-vl",
            frame="norm1000",
            runtimes=("qwen-vl-native",),
            model_types=("qwen",),
            hub_pattern=r"qwen-vl(?!-chat)\b",
            hub_ids=("Qwen/Qwen-VL",),
            chat=False,
            prompts={
                "ground": "<img></img><ref>{phrase}</ref><box>",
                "detect": "<img></img><ref>{categories}</ref><box>",
                "caption": "<img></img>Generate the caption in English:",
                "grounded_caption": "<img></img>Generate the caption in English with grounding:",
                "read_text": "<img></img>OCR:",
                "spot_text": "<img></img>OCR with grounding:",
                "ask": "<img></img>{question} Answer:",
            },
            max_new_tokens={"ground": 28},
        ),
        Family(
            name="qwen-vl-chat",
            dialect="qwen-vl",
            frame="norm1000",
            runtimes=("qwen-vl-native", "server"),
            model_types=("qwen",),
            hub_pattern=r"qwen-vl-chat\b",
            hub_ids=("Qwen/Qwen-VL-Chat",),
            prompts={
                "ground": "Frame the position of <ref>{phrase}</ref> in the picture.",
                "detect": "Frame all the {categories} in the picture.",
                "caption": "Describe this picture.",
                "grounded_caption": "Generate the caption in English with grounding:",
                "read_text": "Read all the text in the picture.",
                "spot_text": "Read all the text in the picture and frame each line of it.",
                "ask": _VQA,
            },
        ),
        Family(
            name="qwen2-vl",
            dialect="qwen2-vl",
            frame="norm1000",
            runtimes=("transformers", "server"),
            model_types=("qwen2_vl",),
            hub_pattern=r"qwen2-vl",
            hub_ids=("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-7B-Instruct", "Qwen/Qwen2-VL-72B-Instruct"),
            patch_size=14,
            merge_size=2,
            min_pixels=3136,
            max_pixels=12845056,
            prompts={
                "ground": "Output the bounding box of <|object_ref_start|>{phrase}<|object_ref_end|> in the image.",
                "detect": "Output the bounding boxes of all the {categories} in the image.",
                "caption": "Describe this image.",
                "grounded_caption": "Describe this image, and give the bounding box of every object you mention.",
                "read_text": "Read all the text in the image.",
                "spot_text": "Read all the text in the image, and give the bounding box of each line.",
                "ask": _VQA,
            },
        ),
        Family(
            name="qwen2.5-vl",
            dialect="json",
            frame="input_pixels",
            runtimes=("transformers", "server"),
            model_types=("qwen2_5_vl",),
            hub_pattern=r"qwen2\.5-vl",
            hub_ids=("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-32B-Instruct", "Qwen/Qwen2.5-VL-72B-Instruct"),
            patch_size=14,
            merge_size=2,
            min_pixels=3136,
            max_pixels=12845056,
            prompts={**_JSON_PROMPTS, "detect": "Outline the position of each {categories} and output all the coordinates in JSON format."},
        ),
        Family(
            name="qwen3-vl",
            dialect="json",
            frame="norm1000",
            runtimes=("transformers", "server"),
            model_types=("qwen3_vl", "qwen3_vl_moe"),
            hub_pattern=r"qwen3-vl",
            hub_ids=("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-8B-Instruct", "Qwen/Qwen3-VL-32B-Instruct",
                     "Qwen/Qwen3-VL-30B-A3B-Instruct", "Qwen/Qwen3-VL-235B-A22B-Instruct", "Qwen/Qwen3-VL-8B-Thinking",
                     "Qwen/Qwen3-VL-30B-A3B-Thinking"),
            patch_size=16,
            merge_size=2,
            min_pixels=65536,
            max_pixels=16777216,
            prompts=_QWEN3_PROMPTS,
            thinking_pattern=r"thinking",
            transformers="4.57.0",
        ),
        _QWEN35,
        # Qwen4-Exp: in transformers 5.25 with Qwen3.5's processor (patch 16, merge 2). No released checkpoint
        # says how it grounds: Qwen3.5's prompts and frame are assumed; it runs end to end on tiny checkpoints.
        dataclasses.replace(_QWEN35, name="qwen4-exp", model_types=("qwen4_exp",), hub_pattern=r"qwen4-exp",
                            hub_ids=("Qwen/Qwen4-Exp",), transformers="5.25.0"),
    ]
}

DEFAULT_MODEL = "Qwen/Qwen3-VL-4B-Instruct"


def chosen_model(name: str | Path | None) -> str | Path:
    """The model a command or `load_model` uses: `name` as given, else $VLGROUND_MODEL, else
    DEFAULT_MODEL; what loads it and what its records name are the same."""
    return name or os.environ.get("VLGROUND_MODEL") or DEFAULT_MODEL


def _known() -> str:
    return ", ".join(FAMILIES)


def _from_folder(path: Path) -> Family:
    config = path / "config.json"
    if not config.is_file():
        raise UnknownFamilyError(f"{path} has no config.json; it is not a model folder (known families: {_known()})")
    model_type = json.loads(config.read_text()).get("model_type")
    matches = [f for f in FAMILIES.values() if model_type in f.model_types]
    if not matches:
        raise UnknownFamilyError(f"{path}: model_type {model_type!r} is not supported (known families: {_known()})")
    if len(matches) > 1:  # Qwen-VL base and chat share model_type "qwen": the release tells them apart
        gen = path / "generation_config.json"
        chat_format = json.loads(gen.read_text()).get("chat_format") if gen.is_file() else None
        if chat_format is None:
            chat_format = "chatml" if "chat" in path.name.lower() else "raw"
        return FAMILIES["qwen-vl-chat" if chat_format == "chatml" else "qwen-vl"]
    return matches[0]


def family_from_name(name: str) -> Family:
    """The family of a family name or a hub id (or any name whose last part looks like one), read
    from the name alone: never from a file, so it is safe on names a server reports."""
    key = str(name)
    if key.lower() in FAMILIES:
        return FAMILIES[key.lower()]
    repo_name = key.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    for family in FAMILIES.values():
        if re.search(family.hub_pattern, repo_name):
            return family
    raise UnknownFamilyError(f"unknown model family {key!r}; known families: {_known()}")


def checkpoint_thinking(family: Family, name: str | None = None) -> str:
    """Whether a checkpoint of `family` named `name` (a hub id or served name) reasons before it
    answers, told from the name alone (one of THINKING)."""
    repo_name = str(name or "").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    if family.thinking_pattern and re.search(family.thinking_pattern, repo_name):
        return "always"
    return family.thinking


def get_family(name_or_path: str | Path | Family) -> Family:
    """The family of a family name ("qwen2.5-vl"), a hub id ("Qwen/Qwen2.5-VL-7B-Instruct") or a
    local checkpoint folder (by its config.json `model_type`)."""
    if isinstance(name_or_path, Family):
        return name_or_path
    key = str(name_or_path)
    if key.lower() in FAMILIES:
        return FAMILIES[key.lower()]
    path = Path(key).expanduser()
    if path.is_dir():
        return _from_folder(path)
    return family_from_name(key)
