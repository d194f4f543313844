"""Loading Qwen-VL (v1) weights by their original key names, in every layout the releases use, and the
errors for folders that are not loadable."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vlground.models.qwen_vl.checkpoint import CheckpointError, key_map, load_model, read_config, weight_files
from vlground.models.qwen_vl.model import QwenVL, QwenVLConfig
from vlground.testing.qwen_vl import make_tiny_qwen_vl

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "qwen_vl_v1"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_qwen_vl(tmp_path_factory.mktemp("tiny") / "Qwen-VL-Chat")


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def _state(model: QwenVL) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in model.state_dict().items()}


def test_key_map_names_exactly_the_released_weights_with_their_shapes():
    reference = json.loads((REFERENCE / "reference.json").read_text())
    config = QwenVLConfig.from_dict(json.loads((REFERENCE / "config.json").read_text()))
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


def test_a_missing_weight_is_named(tiny, tmp_path):
    folder = _copy(tiny, tmp_path)
    weights = load_file(folder / "model.safetensors")
    del weights["transformer.h.1.mlp.w2.weight"]
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing 1 weights: transformer\.h\.1\.mlp\.w2\.weight"):
        load_model(folder, "cpu", torch.float32)


def test_an_unexpected_weight_is_named(tiny, tmp_path):
    folder = _copy(tiny, tmp_path)
    weights = load_file(folder / "model.safetensors")
    weights["transformer.h.2.attn.c_attn.weight"] = torch.zeros(3)
    weights["transformer.rotary_emb.inv_freq"] = torch.zeros(3)  # a recomputed buffer: ignored
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"1 unexpected weights: transformer\.h\.2\.attn\.c_attn\.weight"):
        load_model(folder, "cpu", torch.float32)


def test_a_weight_of_the_wrong_shape_is_named(tiny, tmp_path):
    folder = _copy(tiny, tmp_path)
    weights = load_file(folder / "model.safetensors")
    weights["transformer.ln_f.weight"] = torch.ones(7)
    save_file(weights, folder / "model.safetensors")
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
