"""Thin SVDs and their disk cache: reconstruction, cache hits, entries that appear whole."""

import shutil

import pytest
import torch
from safetensors.torch import save_file
from spectral_pairs import model_dir  # noqa: F401 - a fixture

from sftrl.spectral.svd import SvdCache, thin_svd
from sftrl.spectral.weights import ModelWeights


def test_thin_svd_reconstructs():
    w = torch.randn(12, 30)
    for matrix in (w, w.T):
        svd = thin_svd(matrix)
        assert svd.u.dtype == torch.float32 and svd.s.shape == (12,)
        assert torch.allclose((svd.u * svd.s) @ svd.vh, matrix, atol=1e-5)
        assert torch.all(svd.s[:-1] >= svd.s[1:])


def test_svd_cache_hit_avoids_recomputation(model_dir, tmp_path, monkeypatch):
    calls = []

    def counted(w):
        calls.append(w.shape)
        return thin_svd(w)

    monkeypatch.setattr("sftrl.spectral.svd.thin_svd", counted)
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
    real = save_file
    seen = []

    def racing(tensors, path, metadata=None):
        seen.append(entry.exists())  # the final name is not written to
        if len(seen) == 1:  # another job finishes the same entry meanwhile
            SvdCache(tmp_path / "cache", device="cpu").get(model, name)
        real(tensors, path, metadata=metadata)

    monkeypatch.setattr("sftrl.spectral.svd.save_file", racing)
    svd = cache.get(model, name)
    assert seen == [False, False]
    reread = SvdCache(tmp_path / "cache", device="cpu").get(model, name)
    assert torch.equal(svd.u, reread.u) and torch.equal(svd.vh, reread.vh)
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temporary files left

    def failing(tensors, path, metadata=None):
        raise OSError("disk full")

    monkeypatch.setattr("sftrl.spectral.svd.save_file", failing)
    other = "model.layers.1.self_attn.q_proj.weight"
    with pytest.raises(OSError, match="disk full"):
        SvdCache(tmp_path / "cache", device="cpu").get(model, other)
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]
