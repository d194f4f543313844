import json

import pytest

from vlground.core.families import FAMILIES, UnknownFamilyError, get_family


@pytest.mark.parametrize(
    "key, name",
    [
        ("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl"),
        ("Qwen/Qwen2-VL-2B-Instruct", "qwen2-vl"),
        ("Qwen/Qwen3-VL-30B-A3B-Instruct", "qwen3-vl"),
        ("Qwen/Qwen-VL", "qwen-vl"),
        ("Qwen/Qwen-VL-Chat", "qwen-vl-chat"),
        ("QWEN2.5-VL", "qwen2.5-vl"),
        ("Qwen/Qwen3.6-35B-A3B", "qwen3.5"),  # Qwen3.6 loads as qwen3_5_moe
        ("unsloth/Qwen3.5-9B-GGUF", "qwen3.5"),
        ("Qwen/Qwen3-VL-8B-Thinking", "qwen3-vl"),
    ],
)
def test_hub_ids_and_names(key, name):
    assert get_family(key).name == name


def test_every_listed_hub_id_resolves_to_its_family():
    for family in FAMILIES.values():
        for hub_id in family.hub_ids:
            assert get_family(hub_id) is family


@pytest.mark.parametrize("model_type, name", [
    ("qwen2_vl", "qwen2-vl"), ("qwen2_5_vl", "qwen2.5-vl"), ("qwen3_vl", "qwen3-vl"), ("qwen3_vl_moe", "qwen3-vl"),
    ("qwen3_5", "qwen3.5"), ("qwen3_5_moe", "qwen3.5"), ("qwen4_exp", "qwen4-exp"),
])
def test_local_folder_by_model_type(tmp_path, model_type, name):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    assert get_family(tmp_path).name == name


@pytest.mark.parametrize("chat_format, name", [("chatml", "qwen-vl-chat"), ("raw", "qwen-vl")])
def test_qwen_vl_base_and_chat_told_apart_by_generation_config(tmp_path, chat_format, name):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen"}))
    (tmp_path / "generation_config.json").write_text(json.dumps({"chat_format": chat_format}))
    assert get_family(tmp_path).name == name


def test_unknown_family_lists_known_ones(tmp_path):
    with pytest.raises(UnknownFamilyError, match="qwen2.5-vl"):
        get_family("llava-1.5")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(UnknownFamilyError, match="'llava' is not supported"):
        get_family(tmp_path)


def test_fixed_size_family_has_no_factor():
    with pytest.raises(ValueError):
        get_family("qwen-vl").factor
    assert get_family("qwen2.5-vl").factor == 28 and get_family("qwen3-vl").factor == 32


def test_a_family_from_a_name_never_opens_a_path(tmp_path):
    from vlground.core.families import family_from_name

    assert family_from_name("/models/Qwen2-VL-7B-Instruct").name == "qwen2-vl"  # the last part, as a name
    assert family_from_name("Qwen/Qwen2.5-VL-7B-Instruct").name == "qwen2.5-vl"
    folder = tmp_path / "vision"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen3_vl"}')
    assert get_family(folder).name == "qwen3-vl"  # a folder the caller gives is read...
    with pytest.raises(UnknownFamilyError):
        family_from_name(str(folder))  # ...a name is not
