"""Loading Qwen-VL (v1) weights by their original key names, in every layout the releases use, and the
errors for folders that are not loadable."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vlground.models.qwen_vl.checkpoint import CheckpointError, key_map, load_model, read_config, weight_files
from vlground.models.qwen_vl.model import QwenVL, QwenVLConfig
from qwen_vl_reference import reference_config, reference_facts
from vlground.testing.qwen_vl import make_tiny_qwen_vl


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_qwen_vl(tmp_path_factory.mktemp("tiny") / "Qwen-VL-Chat")


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def _state(model: QwenVL) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in model.state_dict().items()}


def test_key_map_names_exactly_the_released_weights_with_their_shapes():
    reference = reference_facts()
    config = QwenVLConfig.from_dict(reference_config())
    with torch.device("meta"):
        shapes = {k: list(v.shape) for k, v in QwenVL(config).state_dict().items()}
    names = key_map(config)
    assert set(names) == set(reference["shapes"])
    assert sorted(names.values()) == sorted(shapes)
    assert {k: shapes[v] for k, v in names.items()} == reference["shapes"]


@pytest.mark.parametrize("weight_format,shards", [("bin", 3), ("safetensors", 2), ("bin", 1)])
def test_every_layout_loads_the_same_weights(tiny, tmp_path, weight_format, shards):
    other = make_tiny_qwen_vl(tmp_path / "other", weight_format=weight_format, shards=shards)
    assert len(weight_files(other)) == shards
    expected = _state(load_model(tiny, "cpu", torch.float32))
    loaded = _state(load_model(other, "cpu", torch.float32))
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_weights_land_in_the_requested_dtype_with_nothing_left_on_meta(tiny, dtype):
    model = load_model(tiny, "cpu", dtype)
    tensors = list(model.state_dict().values())
    assert {t.dtype for t in tensors} == {dtype}
    assert not any(t.is_meta for t in tensors)
    assert not model.training


def _with_weights(tiny: Path, tmp_path: Path, **changes) -> Path:
    """A copy of `tiny` whose weights get `changes` (key: tensor, or None to delete the key)."""
    folder = _copy(tiny, tmp_path)
    weights = load_file(folder / "model.safetensors")
    for key, tensor in changes.items():
        if tensor is None:
            del weights[key]
        else:
            weights[key] = tensor
    save_file(weights, folder / "model.safetensors")
    return folder


def test_a_missing_weight_is_named(tiny, tmp_path):
    folder = _with_weights(tiny, tmp_path, **{"transformer.h.1.mlp.w2.weight": None})
    with pytest.raises(CheckpointError, match=r"missing 1 weights: transformer\.h\.1\.mlp\.w2\.weight"):
        load_model(folder, "cpu", torch.float32)


def test_an_unexpected_weight_is_named(tiny, tmp_path):
    folder = _with_weights(tiny, tmp_path, **{
        "transformer.h.2.attn.c_attn.weight": torch.zeros(3),
        "transformer.rotary_emb.inv_freq": torch.zeros(3),  # a recomputed buffer: ignored
    })
    with pytest.raises(CheckpointError, match=r"1 unexpected weights: transformer\.h\.2\.attn\.c_attn\.weight"):
        load_model(folder, "cpu", torch.float32)


def test_a_weight_of_the_wrong_shape_is_named(tiny, tmp_path):
    folder = _with_weights(tiny, tmp_path, **{"transformer.ln_f.weight": torch.ones(7)})
    with pytest.raises(CheckpointError, match=r"transformer\.ln_f\.weight has shape \(7,\)"):
        load_model(folder, "cpu", torch.float32)


def test_quantized_checkpoints_are_refused(tiny, tmp_path):
    folder = _copy(tiny, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="quantized checkpoint .gptq"):
        read_config(folder)


def test_folders_without_weights_config_or_shards_say_what_is_wrong(tiny, tmp_path):
    folder = _copy(tiny, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="holds no weights"):
        weight_files(folder)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="names shards that are not in the folder"):
        weight_files(folder)
    config = json.loads((folder / "config.json").read_text())
    del config["visual"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="text-only Qwen model"):
        read_config(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        read_config(folder)


def _edit_config(folder: Path, **fields) -> None:
    config = json.loads((folder / "config.json").read_text())
    visual = fields.pop("visual", {})
    config.update(fields)
    config["visual"].update(visual)
    (folder / "config.json").write_text(json.dumps(config))


LOAD_AND_MEASURE = """
import resource, sys, torch
from vlground.models.qwen_vl.checkpoint import CheckpointError, load_model
for folder in sys.argv[1:]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load_model(folder, "cpu", torch.float32)
        outcome = "loaded"
    except CheckpointError as error:
        outcome = f"refused: {error}"
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 2**20
    print(f"{grown:.3f} {outcome}")
"""
TOO_BIG = [
    ({"hidden_size": 65536}, r"lm_head\.weight has shape \(151936, 128\), config\.json implies \(151936, 65536\)"),
    ({"num_hidden_layers": 30_000_000}, r"num_hidden_layers=30000000 but the weights hold 2 such layers"),
    ({"visual": {"layers": 10_000_000}}, r"visual\.layers=10000000 but the weights hold 2 such layers"),
    ({"vocab_size": 10**9}, r"config\.json implies \(1000000000, 128\)"),
]


def test_a_config_that_does_not_fit_the_weights_is_refused_before_anything_is_allocated(tiny, tmp_path):
    """In a fresh process, so peak memory is measured: refusing each config grows the peak by under
    0.2 GiB (3e7 layers used to build for minutes and ~13 GB; hidden 65536 asks for 40 GB)."""
    folders = []
    for number, (fields, _) in enumerate(TOO_BIG):
        folders.append(_copy(tiny, tmp_path / str(number)))
        _edit_config(folders[-1], **fields)
    done = subprocess.run([sys.executable, "-c", LOAD_AND_MEASURE, *map(str, folders)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(TOO_BIG)
    for line, (_, message) in zip(lines, TOO_BIG):
        grown, outcome = line.split(" ", 1)
        assert outcome.startswith("refused:") and re.search(message, outcome), outcome
        assert float(grown) < 0.2, line


def test_a_pickle_holding_more_than_tensors_is_refused_with_a_clear_error(tiny, tmp_path):
    folder = _copy(tiny, tmp_path)
    (folder / "model.safetensors").unlink()
    weights = load_file(tiny / "model.safetensors")
    weights["payload"] = Path("/etc/passwd")  # any object a weights-only unpickler must not build
    torch.save(weights, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"refused to load .*pytorch_model\.bin: it holds objects other than tensors \(pathlib\.PosixPath\)"):
        load_model(folder, "cpu", torch.float32)


def test_a_truncated_safetensors_file_is_a_clear_error(tiny, tmp_path):
    folder = _copy(tiny, tmp_path)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cannot read .*model\.safetensors as a safetensors file"):
        load_model(folder, "cpu", torch.float32)


def test_the_command_line_refuses_such_a_checkpoint_in_one_line(tiny, tmp_path):
    from PIL import Image

    folder = _copy(tiny, tmp_path)
    _edit_config(folder, num_hidden_layers=30_000_000)
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    done = subprocess.run([sys.executable, "-m", "vlground.cli.main", "detect", str(tmp_path / "a.png"), "a cat",
                           "--model", str(folder), "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "num_hidden_layers=30000000 but the weights hold 2" in done.stderr
