"""`vlground finetune`: the loss on the answer only, with the prompt exactly as inference sends it; data
or adapters for other families or pixels refused; a stopped run resumes to the same adapter. The
whole loop on tiny models is tests/test_finetune_proof.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import vlground
from vlground.core.families import get_family
from vlground.io.images import load_image
from vlground.models.adapters import AdapterError, load_adapter
from vlground.models.base import Request
from vlground.models.hf import HFBackend
from vlground.prompts import build_prompt
from vlground.testing.shapes import make_shapes_dataset
from vlground.training.convert import convert, metadata_path, read_records, record_turns
from vlground.training.finetune import FinetuneError, FinetuneOptions, encode_example, finetune

# Qwen2.5-VL is trained and asked with a small max_pixels, so its input is about half the image:
# answers framed in original pixels (or the released settings' input) would miss. Qwen3-VL writes
# 0-1000 whatever the input; small images keep its run short (the released min_pixels is 65536).
SETTINGS = {"qwen2.5-vl": {"min_pixels": 3136, "max_pixels": 20000}, "qwen3-vl": {"min_pixels": 4096, "max_pixels": 32768}}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="module")
def data(shapes, tmp_path_factory) -> dict[str, Path]:
    """Converted training records of the shapes for each family, with its settings."""
    out = tmp_path_factory.mktemp("converted")
    return {family: convert(shapes, source_format="refcoco", target="qwen", family=family, task="ground",
                            out=out / f"{family}.jsonl", **SETTINGS[family]).out for family in SETTINGS}


def test_the_loss_counts_the_answer_tokens_only_after_the_prompt_inference_sends(tiny_checkpoint, data):
    backend = HFBackend.load(tiny_checkpoint("qwen2.5-vl"), get_family("qwen2.5-vl"), device="cpu", dtype="fp32",
                             **SETTINGS["qwen2.5-vl"])
    image, prompt, answer, _ = record_turns(read_records(data["qwen2.5-vl"])[0])
    example = encode_example(backend.processor, load_image(image), prompt, answer)
    labels, ids = example["labels"][0], example["input_ids"][0]
    answer_ids = ids[labels != -100]
    assert backend.processor.tokenizer.decode(answer_ids) == answer + "<|im_end|>"
    inference, _ = backend._encode([Request(load_image(image), build_prompt("ground", backend.family, phrase="the red square"))])
    prompt_ids = inference["input_ids"][0]
    assert torch.equal(ids[: len(prompt_ids)], prompt_ids)  # the very ids HFBackend generates from
    assert bool((labels[: len(prompt_ids)] == -100).all()) and len(answer_ids) == len(ids) - len(prompt_ids)


def test_data_for_another_family_or_other_pixels_is_refused(tiny_checkpoint, data, tmp_path):
    with pytest.raises(FinetuneError, match="converted for qwen3-vl, the model is qwen2.5-vl"):
        finetune(tiny_checkpoint("qwen2.5-vl"), data["qwen3-vl"], tmp_path / "a")
    with pytest.raises(FinetuneError, match="framed for max_pixels=20000, not 12845056"):
        finetune(tiny_checkpoint("qwen2.5-vl"), data["qwen2.5-vl"], tmp_path / "b", FinetuneOptions(max_pixels=12845056))
    with pytest.raises(FinetuneError, match="lora_rank must be an integer >= 1"):
        FinetuneOptions(lora_rank=0)


def _adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "adapter_model.safetensors")


class Stop(Exception):
    pass


def test_a_run_stopped_after_an_epoch_resumes_to_the_same_adapter(tiny_checkpoint, data, tmp_path):
    model, train = tiny_checkpoint("qwen2.5-vl"), data["qwen2.5-vl"]
    small = tmp_path / "small.jsonl"
    small.write_text("".join(train.read_text().splitlines(keepends=True)[:4]))
    small.with_name(small.name + ".vlground.json").write_text(train.with_name(train.name + ".vlground.json").read_text())
    options = FinetuneOptions(epochs=2, lr=1e-3, lora_rank=4, batch_size=2)
    lines: list[str] = []
    whole = finetune(model, small, tmp_path / "whole", options, merge=True, progress=lines.append)
    assert [line.split(" loss ")[0] for line in lines[:3]] == ["epoch 1/2 step 1/2", "epoch 1/2 step 2/2", "epoch 1/2 mean"]
    assert all(float(line.split(" loss ")[1].split(";")[0]) > 0 for line in lines)

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/2 mean"):
            raise Stop

    with pytest.raises(Stop):
        finetune(model, small, tmp_path / "cut", options, progress=stop_after_first_epoch)
    with pytest.raises(FinetuneError, match="holds a run already"):
        finetune(model, small, tmp_path / "cut", options)
    resumed_lines: list[str] = []
    finetune(model, small, tmp_path / "cut", options, resume=True, progress=resumed_lines.append)
    assert resumed_lines[0].startswith("epoch 2/2 step 1/2")
    expected, got = _adapter(whole), _adapter(tmp_path / "cut")
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)

    # --merge: a full checkpoint that answers as the base model with the adapter does
    image, _, _, _ = record_turns(read_records(small)[0])
    pixels = SETTINGS["qwen2.5-vl"]
    merged = vlground.load_model(whole / "merged", device="cpu", **pixels).ground(image, "the red square")
    adapted = vlground.load_model(model, device="cpu", adapter=whole, **pixels).ground(image, "the red square")
    assert merged.raw == adapted.raw and merged.raw


def test_an_adapter_for_another_family_or_other_pixels_is_refused(tiny_checkpoint, tmp_path):
    model = vlground.load_model(tiny_checkpoint("qwen3-vl"), device="cpu").backend.model
    folder = tmp_path / "adapter"
    folder.mkdir()
    with pytest.raises(AdapterError, match="not a PEFT adapter folder"):
        load_adapter(model, folder, get_family("qwen3-vl"))
    (folder / "adapter_config.json").write_text("{}")
    (folder / "vlground_finetune.json").write_text('{"family": "qwen2.5-vl", "min_pixels": 3136, "max_pixels": 20000}')
    with pytest.raises(AdapterError, match="trained on qwen2.5-vl, not qwen3-vl"):
        load_adapter(model, folder, get_family("qwen3-vl"))
    with pytest.raises(AdapterError, match="trained with max_pixels=20000, the model is loaded with 12845056"):
        load_adapter(model, folder, get_family("qwen2.5-vl"), min_pixels=3136, max_pixels=12845056)


def test_the_command_fails_in_one_line(tiny_checkpoint, data, tmp_path):
    import subprocess
    import sys

    for args, words in [
        (["--model", str(tiny_checkpoint("qwen2.5-vl")), "--data", str(data["qwen3-vl"])], "converted for qwen3-vl"),
        (["--model", str(tmp_path / "nowhere"), "--data", str(data["qwen3-vl"])], "not a local checkpoint folder"),
        (["--model", "Qwen/Qwen2.5-VL-3B-Instruct", "--data", str(data["qwen3-vl"])],
         "download it first (hf download Qwen/Qwen2.5-VL-3B-Instruct --local-dir Qwen2.5-VL-3B-Instruct)"),
        (["--model", str(tiny_checkpoint("qwen3-vl")), "--data", str(tmp_path / "none.jsonl")], "convert the data with"),
    ]:
        done = subprocess.run([sys.executable, "-m", "vlground.cli.main", "finetune", *args, "--out", str(tmp_path / "o")],
                              capture_output=True, text=True)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and words in done.stderr, done.stderr


@pytest.mark.parametrize("command", ["detect", "label", "ocr", "bench"])
def test_every_command_that_takes_a_model_takes_its_adapter(command, tiny_checkpoint, shapes, tmp_path):
    """--adapter reaches the adapter loader from each command: a folder that is no adapter is refused
    there, in one line, before any answer is written."""
    from typer.testing import CliRunner

    from vlground.cli.main import app

    model, image, not_adapter = str(tiny_checkpoint("qwen2.5-vl")), str(shapes.parent / "shape_00.png"), tmp_path / "empty"
    not_adapter.mkdir()
    args = {
        "detect": ["detect", image, "the red square", "--model", model],
        "label": ["label", image, "-c", "square", "--model", model, "--out", str(tmp_path / "labels.jsonl")],
        "ocr": ["ocr", image, "--engine", model, "--out", str(tmp_path / "text.jsonl")],
        "bench": ["bench", "refcoco", "--model", model, "--gt", str(shapes), "--image-root", str(shapes.parent),
                  "--out", str(tmp_path / "run")],
    }[command]
    done = CliRunner().invoke(app, [*args, "--device", "cpu", "--adapter", str(not_adapter)])
    last = done.output.strip().splitlines()[-1]  # after the weights' loading bar
    assert done.exit_code == 2 and "Traceback" not in done.output, done.output
    assert last.startswith("error:") and "not a PEFT adapter folder" in last, done.output


def test_the_built_in_ocr_engine_refuses_an_adapter(tmp_path):
    from typer.testing import CliRunner

    from vlground.cli.main import app

    done = CliRunner().invoke(app, ["ocr", str(tmp_path), "--out", str(tmp_path / "t.jsonl"), "--adapter", str(tmp_path)])
    assert done.exit_code == 2 and "Qwen engines" in done.output, done.output


def _copy_of(train: Path, target: Path, lines: list[str]) -> Path:
    """`lines` as converted data at `target`, with the metadata of `train` beside it."""
    target.write_text("".join(lines))
    metadata_path(target).write_text(metadata_path(train).read_text())
    return target


def test_broken_records_are_one_error_naming_file_and_line_before_the_model_loads(tiny_checkpoint, data, tmp_path, monkeypatch):
    model, train = tiny_checkpoint("qwen2.5-vl"), data["qwen2.5-vl"]
    good = train.read_text().splitlines(keepends=True)[0]
    missing = json.dumps(dict(json.loads(good), image=str(tmp_path / "gone.png"))) + "\n"
    monkeypatch.setattr(HFBackend, "load", lambda *a, **k: pytest.fail("the model was loaded before the data was checked"))
    for line, words in [('{"images": ["a.png"]}\n', r"d\.jsonl:2: .*(conversations|messages)"),
                        (missing, r"d\.jsonl:2: .*gone\.png"),
                        ("{not json\n", r"d\.jsonl:2: not a JSON record"),
                        ("[1, 2]\n", r"d\.jsonl:2: ")]:
        with pytest.raises(FinetuneError, match=words):
            finetune(model, _copy_of(train, tmp_path / "d.jsonl", [good, line]), tmp_path / "out")


def _damaged_checkpoint(out: Path, damage: str) -> None:
    folder = out / "checkpoint"
    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(1)}, folder / "adapter_model.safetensors")
    torch.save({"optimizer": {}, "schedule": {}}, folder / "optimizer.pt")
    (folder / "state.json").write_text('{"epochs_done": 1}')
    if damage == "empty optimizer":
        (folder / "optimizer.pt").write_bytes(b"")
    elif damage == "pickled object":
        torch.save({"optimizer": Path("x"), "schedule": {}}, folder / "optimizer.pt")  # weights_only refuses any class
    elif damage == "epochs not a number":
        (folder / "state.json").write_text('{"epochs_done": "x"}')
    elif damage == "state not JSON":
        (folder / "state.json").write_text('{"epochs_done": ')
    elif damage == "adapter cut":
        (folder / "adapter_model.safetensors").write_bytes(b"\x10\x00")


@pytest.mark.parametrize("damage, file", [("empty optimizer", "optimizer.pt"), ("pickled object", "optimizer.pt"),
                                          ("epochs not a number", "state.json"), ("state not JSON", "state.json"),
                                          ("adapter cut", "adapter_model.safetensors")])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(damage, file, tiny_checkpoint, data, tmp_path):
    from typer.testing import CliRunner

    from vlground.cli.main import app

    _damaged_checkpoint(tmp_path / "o", damage)
    done = CliRunner().invoke(app, ["finetune", "--model", str(tiny_checkpoint("qwen2.5-vl")), "--data", str(data["qwen2.5-vl"]),
                                    "--out", str(tmp_path / "o"), "--resume", "--device", "cpu"])
    lines = done.stderr.strip().splitlines()
    assert done.exit_code == 2 and len(lines) == 1 and "Traceback" not in done.output, (done.exit_code, done.output)
    assert lines[0].startswith("error: ") and str(tmp_path / "o" / "checkpoint" / file) in lines[0], lines[0]


@pytest.mark.parametrize("info", ["{}", "[]", "{not json", '{"family": "qwen3-vl", "min_pixels": "x", "max_pixels": null}'])
def test_an_adapter_with_a_damaged_info_file_is_refused_naming_it(info, tmp_path):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    (folder / "vlground_finetune.json").write_text(info)
    with pytest.raises(AdapterError, match=f"{folder / 'vlground_finetune.json'}"):
        load_adapter(None, folder, get_family("qwen3-vl"), min_pixels=4096, max_pixels=32768)


def test_qwen3_5_is_trained_after_the_empty_reasoning_block_it_is_asked_with(tiny_checkpoint, shapes, tmp_path):
    """Qwen3.5 thinks by default: its records carry the empty block its template writes with thinking
    off, and training puts the block in the prompt (as inference with thinking off sends it), not twice."""
    from vlground.core.families import EMPTY_REASONING
    from vlground.prompts import Prompt

    pixels = SETTINGS["qwen3-vl"]
    done = convert(shapes, source_format="refcoco", target="qwen", family="qwen3.5", task="ground",
                   out=tmp_path / "train.jsonl", **pixels)
    backend = HFBackend.load(tiny_checkpoint("qwen3.5"), get_family("qwen3.5"), device="cpu", **pixels)
    image, prompt, answer, _ = record_turns(read_records(done.out)[0])
    assert answer.startswith(EMPTY_REASONING)
    example = encode_example(backend.processor, load_image(image), prompt, answer)
    labels, ids = example["labels"][0], example["input_ids"][0]
    trained = backend.processor.tokenizer.decode(ids[labels != -100])
    assert trained == answer.removeprefix(EMPTY_REASONING) + "<|im_end|>"
    inference, _ = backend._encode([Request(load_image(image), Prompt(prompt, "ground"))], thinking=False)
    prompt_ids = inference["input_ids"][0]
    assert torch.equal(ids[: len(prompt_ids)], prompt_ids)  # the very prompt `--thinking off` sends
    assert backend.processor.tokenizer.decode(prompt_ids).endswith("<|im_start|>assistant\n" + EMPTY_REASONING)


@pytest.mark.parametrize("family", ["qwen2.5-vl", "qwen3-vl"])
def test_a_computer_use_record_is_trained_after_the_tool_description_inference_sends(tiny_checkpoint, tmp_path, family):
    """The system turn of a computer-use record (the tool, told the screen size) is the one
    `Model.point(style="tool_call")` sends, and only the call after it is trained."""
    from vlground.prompts import point_prompt
    from vlground.testing.screens import make_screenspot_dataset

    gt = make_screenspot_dataset(tmp_path / "screens", screens=1, elements=1)
    done = convert(gt, source_format="screenspot", target="swift", family=family, task="computer-use",
                   out=tmp_path / "train.jsonl", **SETTINGS[family])
    backend = HFBackend.load(tiny_checkpoint(family), get_family(family), device="cpu", **SETTINGS[family])
    image, prompt, answer, system = record_turns(read_records(done.out)[0])
    example = encode_example(backend.processor, load_image(image), prompt, answer, system)
    labels, ids = example["labels"][0], example["input_ids"][0]
    assert backend.processor.tokenizer.decode(ids[labels != -100]) == answer + "<|im_end|>"
    loaded = load_image(image)
    asked = point_prompt(family, prompt, style="tool_call", input_size=backend.input_size(loaded.size))
    assert asked.system == system and "computer_use" in system
    inference, _ = backend._encode([Request(loaded, asked)])
    prompt_ids = inference["input_ids"][0]
    assert torch.equal(ids[: len(prompt_ids)], prompt_ids)  # the very ids Model.point generates from
