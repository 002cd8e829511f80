"""Streaming weight access: headers without loading, sharded = single file, pattern selection, the writer."""

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from sharding import shard
from spectral_pairs import model_dir  # noqa: F401 - a fixture

from sftrl.families import FAMILIES
from sftrl.spectral.weights import (
    DTYPE_CODES,
    SINGLE_FILE,
    ModelWeights,
    SafetensorsWriter,
    TensorInfo,
    WeightsError,
    check_matching,
    layer_and_module,
    select,
)


def test_sharded_reads_the_same_as_single_file(model_dir, tmp_path):
    single, sharded = ModelWeights(model_dir), ModelWeights(shard(model_dir, tmp_path / "sharded"))
    assert len(sharded.files) == 2
    assert sorted(single.names) == sorted(sharded.names)
    for name in single.names:
        assert single.info(name).shape == sharded.info(name).shape
        assert single.info(name).dtype == sharded.info(name).dtype == "BF16"
        assert torch.equal(single.get(name), sharded.get(name))
    assert single.get("model.layers.0.self_attn.q_proj.weight").dtype == torch.bfloat16


def test_no_weights_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match=r"no model.safetensors"):
        ModelWeights(tmp_path)


def test_default_selection_and_name_parsing(model_dir):
    chosen = ModelWeights(model_dir).analysed()
    assert len(chosen) == 2 * 7
    assert {layer_and_module(n) for n in chosen} == {
        (i, f"{m}_proj") for i in range(2) for m in ("q", "k", "v", "o", "gate", "up", "down")
    }
    assert layer_and_module("model.embed_tokens.weight") == (-1, "embed_tokens")


def test_vision_llama_text_tower_selected_not_vision_tower():
    names = [
        "language_model.model.layers.3.self_attn.q_proj.weight",
        "language_model.model.layers.3.mlp.down_proj.weight",
        "model.language_model.layers.4.self_attn.k_proj.weight",
        "vision_model.transformer.layers.3.self_attn.q_proj.weight",
        "language_model.model.layers.3.input_layernorm.weight",
    ]
    assert select(names, ["re:" + FAMILIES["mllama"].projections]) == names[:3]
    assert layer_and_module(names[0]) == (3, "q_proj")
    assert layer_and_module(names[3])[0] == -1


def test_glob_and_regex_patterns():
    names = [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.q_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
    ]
    assert select(names, ["model.layers.*.self_attn.q_proj.weight"]) == names[:2]
    assert select(names, [r"layers\.1\..*proj"]) == names[1:]
    assert select(names, ["re:up_proj", "glob:*.0.*"]) == [names[0], names[2]]
    with pytest.raises(WeightsError, match="'nope_proj' matches no tensor"):
        select(names, ["up_proj", "nope_proj"])


def test_mismatch_errors_name_the_tensor(tmp_path):
    for name, shape in (("a", (3, 4)), ("b", (3, 5))):
        (tmp_path / name).mkdir()
        save_file(
            {"w": torch.zeros(shape), "x": torch.zeros(2)} if name == "a" else {"w": torch.zeros(shape)},
            tmp_path / name / SINGLE_FILE,
        )
    a, b = ModelWeights(tmp_path / "a"), ModelWeights(tmp_path / "b")
    with pytest.raises(WeightsError, match=r"'w' has shape \[3, 4\].*but \[3, 5\]"):
        check_matching(a, b, ["w"])
    with pytest.raises(WeightsError, match=r"'x' is missing from .*b"):
        check_matching(a, b, ["x"])


def test_writer_streams_a_valid_file(tmp_path):
    tensors = {"b": torch.randn(3, 5).to(torch.bfloat16), "a": torch.arange(7), "c": torch.tensor(2.5)}
    entries = [TensorInfo(n, tuple(t.shape), DTYPE_CODES[t.dtype], "x") for n, t in tensors.items()]
    with SafetensorsWriter(tmp_path / "x.safetensors", entries, {"format": "pt"}) as writer:
        for name, tensor in tensors.items():
            writer.write(name, tensor)
    with safe_open(tmp_path / "x.safetensors", framework="pt") as handle:
        assert handle.metadata() == {"format": "pt"}
        for name, tensor in tensors.items():
            assert torch.equal(handle.get_tensor(name), tensor)

    with pytest.raises(WeightsError, match="'a' written out of the declared order"):
        SafetensorsWriter(tmp_path / "y.safetensors", entries).write("a", tensors["a"])
    with pytest.raises(WeightsError, match=r"'b' is torch.float32"):
        SafetensorsWriter(tmp_path / "y.safetensors", entries).write("b", tensors["b"].float())
    with (
        pytest.raises(WeightsError, match="2 declared tensors never written"),
        SafetensorsWriter(tmp_path / "y.safetensors", entries) as writer,
    ):
        writer.write("b", tensors["b"])


def test_tied_embeddings_from_config(model_dir, tmp_path):
    assert ModelWeights(model_dir).tied_embeddings()
    untied = shutil.copytree(model_dir, tmp_path / "untied")
    config = json.loads((untied / "config.json").read_text())
    (untied / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    assert not ModelWeights(untied).tied_embeddings()
