"""Streaming weight access: headers without loading, sharded = single file, pattern selection, SVD cache."""

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sftrl import weights
from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer, save_model
from sftrl.weights import (
    SINGLE_FILE,
    ModelWeights,
    SafetensorsWriter,
    SvdCache,
    TensorInfo,
    WeightsError,
    check_matching,
    layer_and_module,
    select,
    thin_svd,
)
from sharding import shard

TINY = TinyModelConfig(hidden_size=64, num_hidden_layers=2, intermediate_size=128, max_position_embeddings=64)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tokenizer = build_tokenizer(["a b c"], max_number=20)
    path = tmp_path_factory.mktemp("m") / "model"
    save_model(build_tiny_model(tokenizer, TINY, seed=0).to(torch.bfloat16), tokenizer, path)
    return path


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
    with pytest.raises(WeightsError, match="no model.safetensors"):
        ModelWeights(tmp_path)


def test_default_selection_and_name_parsing(model_dir):
    chosen = select(ModelWeights(model_dir).names)
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
    assert select(names) == names[:3]
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
    with pytest.raises(WeightsError, match="'x' is missing from .*b"):
        check_matching(a, b, ["x"])


def test_thin_svd_reconstructs():
    w = torch.randn(12, 30)
    for matrix in (w, w.T):
        svd = thin_svd(matrix)
        assert svd.u.dtype == torch.float32 and svd.s.shape == (12,)
        assert torch.allclose((svd.u * svd.s) @ svd.vh, matrix, atol=1e-5)
        assert torch.all(svd.s[:-1] >= svd.s[1:])


def test_svd_cache_hit_avoids_recomputation(model_dir, tmp_path, monkeypatch):
    calls = []
    real = weights.thin_svd
    monkeypatch.setattr(weights, "thin_svd", lambda w: calls.append(w.shape) or real(w))
    model = ModelWeights(model_dir)
    name = "model.layers.1.mlp.down_proj.weight"
    first = SvdCache(tmp_path / "cache", device="cpu").get(model, name)
    again = SvdCache(tmp_path / "cache", device="cpu")  # a new process would see the same files
    second = again.get(ModelWeights(model_dir), name)
    assert len(calls) == 1 and again.hits == 1 and again.computed == 0
    assert torch.equal(first.u, second.u) and torch.equal(first.s, second.s)

    moved = shutil.copytree(model_dir, tmp_path / "copy")  # another checkpoint: never a stale entry
    SvdCache(tmp_path / "cache", device="cpu").get(ModelWeights(moved), name)
    assert len(calls) == 2


def test_svd_cache_entries_appear_whole(model_dir, tmp_path, monkeypatch):
    """Jobs running side by side may compute the same entry: each writes a private temporary file and
    renames it into place, so a reader sees no entry or a complete one, and a failed write leaves none."""
    model = ModelWeights(model_dir)
    name = "model.layers.0.self_attn.q_proj.weight"
    cache = SvdCache(tmp_path / "cache", device="cpu")
    entry = cache.entry(model, name)
    real = weights.save_file
    seen = []

    def racing(tensors, path, metadata=None):
        seen.append(entry.exists())  # the final name is not written to
        if len(seen) == 1:  # another job finishes the same entry meanwhile
            SvdCache(tmp_path / "cache", device="cpu").get(model, name)
        real(tensors, path, metadata=metadata)

    monkeypatch.setattr(weights, "save_file", racing)
    svd = cache.get(model, name)
    assert seen == [False, False]
    reread = SvdCache(tmp_path / "cache", device="cpu").get(model, name)
    assert torch.equal(svd.u, reread.u) and torch.equal(svd.vh, reread.vh)
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temporary files left

    def failing(tensors, path, metadata=None):
        raise OSError("disk full")

    monkeypatch.setattr(weights, "save_file", failing)
    other = "model.layers.1.self_attn.q_proj.weight"
    with pytest.raises(OSError, match="disk full"):
        SvdCache(tmp_path / "cache", device="cpu").get(model, other)
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]


def test_writer_streams_a_valid_file(tmp_path):
    tensors = {"b": torch.randn(3, 5).to(torch.bfloat16), "a": torch.arange(7), "c": torch.tensor(2.5)}
    entries = [TensorInfo(n, tuple(t.shape), weights.DTYPE_CODES[t.dtype], "x") for n, t in tensors.items()]
    with SafetensorsWriter(tmp_path / "x.safetensors", entries, {"format": "pt"}) as writer:
        for name, tensor in tensors.items():
            writer.write(name, tensor)
    with safe_open(tmp_path / "x.safetensors", framework="pt") as handle:
        assert handle.metadata() == {"format": "pt"}
        for name, tensor in tensors.items():
            assert torch.equal(handle.get_tensor(name), tensor)

    with pytest.raises(WeightsError, match="'a' written out of the declared order"):
        SafetensorsWriter(tmp_path / "y.safetensors", entries).write("a", tensors["a"])
    with pytest.raises(WeightsError, match="'b' is torch.float32"):
        SafetensorsWriter(tmp_path / "y.safetensors", entries).write("b", tensors["b"].float())
    with pytest.raises(WeightsError, match="2 declared tensors never written"):
        with SafetensorsWriter(tmp_path / "y.safetensors", entries) as writer:
            writer.write("b", tensors["b"])


def test_tied_embeddings_from_config(model_dir, tmp_path):
    assert ModelWeights(model_dir).tied_embeddings()
    untied = shutil.copytree(model_dir, tmp_path / "untied")
    config = json.loads((untied / "config.json").read_text())
    (untied / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))
    assert not ModelWeights(untied).tied_embeddings()
