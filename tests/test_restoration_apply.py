"""Restoration edits: their algebra, complete bf16 model directories, layer resets, and bad input."""

import json
import runpy
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from sharding import shard
from transformers import AutoModelForCausalLM, AutoTokenizer

from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer, save_model
from sftrl.restoration import apply as restore
from sftrl.restoration.apply import apply_edits, edit_grid, svd_edit
from sftrl.restoration.spec import EditError, EditSpec
from sftrl.spectral.svd import SvdCache, thin_svd
from sftrl.spectral.weights import INDEX_FILE, SINGLE_FILE, ModelWeights

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "restore.py"
TINY = TinyModelConfig(hidden_size=64, num_hidden_layers=2, intermediate_size=128, max_position_embeddings=64)
Q0 = "model.layers.0.self_attn.q_proj.weight"
EMBED = "model.embed_tokens.weight"


def make_model(path, seed, cfg=TINY, dtype=torch.bfloat16):
    tokenizer = build_tokenizer(["a b c d"], max_number=20)
    save_model(build_tiny_model(tokenizer, cfg, seed).to(dtype), tokenizer, path)
    return path


def tensors(path):
    model = ModelWeights(path)
    return {name: model.get(name) for name in model.names}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return make_model(root / "source", seed=1), make_model(root / "target", seed=2)


# --- algebra on random matrices -------------------------------------------------------------------


@pytest.fixture(scope="module")
def matrices():
    g = torch.Generator().manual_seed(0)
    t, s = torch.randn(24, 40, generator=g), torch.randn(24, 40, generator=g)
    return t, s, thin_svd(t), thin_svd(s)


def full(kind):
    return EditSpec(kind, top=1.0).index_set(24)


def test_full_direction_swap_keeps_target_singular_values(matrices):
    t, s, svd_t, svd_s = matrices
    out = svd_edit("direction", t, svd_t, svd_s, full("direction"))
    assert torch.allclose(torch.linalg.svdvals(out), svd_t.s, rtol=1e-5, atol=1e-5)
    assert torch.allclose(out, (svd_s.u * svd_t.s) @ svd_s.vh, atol=1e-4)  # S's directions, not S itself
    assert not torch.allclose(out, s, atol=1e-1)


def test_full_triplet_swap_reproduces_source(matrices):
    t, s, svd_t, svd_s = matrices
    assert torch.allclose(svd_edit("triplet", t, svd_t, svd_s, full("triplet")), s, atol=1e-4)


def test_value_swap_keeps_target_singular_vectors(matrices):
    t, _s, svd_t, svd_s = matrices
    out = thin_svd(svd_edit("value", t, svd_t, svd_s, full("value")))
    assert torch.allclose(out.s, svd_s.s, atol=1e-4)
    assert torch.allclose((out.u.T @ svd_t.u).abs().diagonal(), torch.ones(24), atol=1e-4)
    assert torch.allclose((out.vh @ svd_t.vh.T).abs().diagonal(), torch.ones(24), atol=1e-4)


def test_partial_swaps_match_their_definition(matrices):
    t, _s, svd_t, svd_s = matrices
    spec = EditSpec("direction", top=0.25, tail=0.125)
    index = spec.index_set(24)
    assert index.tolist() == [0, 1, 2, 3, 4, 5, 21, 22, 23]
    u, vh, sigma = svd_t.u.clone(), svd_t.vh.clone(), svd_t.s.clone()
    u[:, index], vh[index] = svd_s.u[:, index], svd_s.vh[index]
    assert torch.allclose(svd_edit("direction", t, svd_t, svd_s, index), (u * sigma) @ vh, atol=1e-4)
    sigma[index] = svd_s.s[index]
    assert torch.allclose(svd_edit("triplet", t, svd_t, svd_s, index), (u * sigma) @ vh, atol=1e-4)
    assert torch.equal(svd_edit("triplet", t, svd_t, svd_s, EditSpec("triplet").index_set(24)), t)


def test_index_sets():
    assert EditSpec("value", top=0.2, tail=0.1).index_set(10).tolist() == [0, 1, 9]
    assert EditSpec("value", top=0.001).index_set(10).tolist() == [0]  # a non-zero fraction takes one
    assert EditSpec("value", top=0.6, tail=0.6).index_set(5).tolist() == [0, 1, 2, 3, 4]


def test_spec_names_and_round_trip():
    assert EditSpec("direction", top=0.2).name == "direction-top20-tail0"
    assert EditSpec("triplet", top=1, tail=0.005).name == "triplet-top100-tail0p5"
    assert EditSpec("layer", layers=0.25).name == "layer-first25pct"
    assert EditSpec("layer", layers="0.25:0.5").name == "layer-25to50pct"
    assert EditSpec("layer", layers=[0, 1, 2, 3, 5]).name == "layer-L0to3_5"
    authors = ["lm_head", "projections", "embeddings"]  # every matrix; any order names one edit
    assert EditSpec("value", top=0.5, scope=authors).name == "value-top50-tail0-emb-head"
    assert EditSpec("layer", layers=0.25, scope=authors).name == "layer-first25pct-nonorm-emb-head"
    assert EditSpec("layer", layers=0.25, scope=["projections", "norms"]).name == "layer-first25pct"
    assert EditSpec("direction", top=0.2, scope=["embeddings"]).name == "direction-top20-tail0-noproj-emb"
    patterned = EditSpec("direction", top=0.2, patterns=["*.q_proj.weight"])
    assert patterned.name.startswith("direction-top20-tail0-p") and "/" not in patterned.name
    assert EditSpec.from_dict(patterned.to_dict()) == patterned
    assert EditSpec("layer", layers="0:0.25").layer_indices(40) == list(range(10))
    assert EditSpec("layer", layers=0.25).layer_indices(28) == list(range(7))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "rotate"}, "unknown edit kind 'rotate'"),
        ({"kind": "direction", "top": 1.5}, r"top = 1.5 is not a fraction"),
        ({"kind": "triplet", "tail": -0.1}, r"tail = -0.1 is not a fraction"),
        ({"kind": "layer"}, "needs `layers`"),
        ({"kind": "layer", "layers": 2.0}, r"layers = 2.0"),
        ({"kind": "layer", "layers": 1}, r"layers = 1: give a fraction .* or a list of indices \(\[1\]\)"),
        ({"kind": "layer", "layers": "0.5:0.25"}, "need 0 <= a < b <= 1"),
        ({"kind": "value", "layers": 0.5}, "layers apply to a layer reset"),
        ({"kind": "value", "k": 3}, r"unknown edit field\(s\) \['k'\]"),
        ({"kind": "value", "top": 0.2, "top_k": 3}, "as fractions .* or as counts .* not both"),
        ({"kind": "value", "top_k": -1}, r"top_k = -1 is not a count"),
        ({"kind": "layer", "layers": 0.5, "top_k": 8}, "apply to SVD edits"),
        ({"kind": "direction", "top_k": 8, "covering": "whole"}, "covering = 'whole'"),
        ({"kind": "direction", "top_k": 8, "round_trip": "bf16"}, "round_trip = 'bf16'"),
        ({"kind": "value", "top": 1, "scope": ["heads"]}, r"scope \['heads'\]: name one or more of projections"),
        ({"kind": "value", "top": 1, "scope": []}, r"scope \[\]: name one or more"),
        ({"kind": "direction", "top": 1, "scope": ["norms"]}, "norms are vectors"),
    ],
)
def test_bad_specs(kwargs, message):
    with pytest.raises(EditError, match=message):
        EditSpec.from_dict(kwargs)


# --- complete model directories -------------------------------------------------------------------


GRID = [
    EditSpec("direction", top=0.2),
    EditSpec("direction", top=1.0),
    EditSpec("triplet", top=1.0),
    EditSpec("value", top=1.0),
    EditSpec("layer", layers=0.5),
    EditSpec("triplet"),  # selects no index: T unchanged
]


@pytest.fixture(scope="module")
def grid(pair, tmp_path_factory):
    out_root = tmp_path_factory.mktemp("edits")
    cache = SvdCache(device="cpu")
    edit_grid(*pair, GRID, out_root, cache)
    return out_root, cache


def test_grid_computes_each_svd_once(grid, pair):
    _, cache = grid
    assert cache.computed == 2 * len(ModelWeights(pair[1]).analysed())


def test_outputs_are_complete_directories(grid, pair):
    out_root, _ = grid
    _, target = pair
    assert sorted(p.name for p in out_root.iterdir()) == sorted(spec.name for spec in GRID)
    for spec in GRID:
        out = out_root / spec.name
        assert {p.name for p in out.iterdir()} == {p.name for p in target.iterdir()} | {"edit.json"}
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
            assert (out / name).read_bytes() == (target / name).read_bytes()
        assert json.loads((out / "edit.json").read_text())["edit"] == spec.to_dict()
        model = ModelWeights(out)
        assert all(info.dtype == "BF16" for info in model.infos.values())
        assert "lm_head.weight" not in model  # tied: one matrix
    loaded = AutoModelForCausalLM.from_pretrained(out_root / GRID[0].name, dtype=torch.bfloat16)
    assert torch.equal(loaded.state_dict()[Q0], ModelWeights(out_root / GRID[0].name).get(Q0))
    tokenizer = AutoTokenizer.from_pretrained(out_root / GRID[0].name)
    assert tokenizer.get_vocab() == AutoTokenizer.from_pretrained(target).get_vocab()


def test_edits_in_model_dirs(grid, pair):
    out_root, _ = grid
    source, target = tensors(pair[0]), tensors(pair[1])
    projections = set(ModelWeights(pair[1]).analysed())
    identity = tensors(out_root / GRID[5].name)
    assert all(torch.equal(identity[n], target[n]) for n in target)
    for spec in GRID[:4]:
        out = tensors(out_root / spec.name)
        for name in target:
            if name not in projections:
                assert torch.equal(out[name], target[name]), (spec.name, name)
    triplet, direction = tensors(out_root / GRID[2].name), tensors(out_root / GRID[1].name)
    for name in projections:
        s, t = source[name].float(), target[name].float()
        assert (triplet[name].float() - s).norm() / s.norm() < 5e-3  # S again, up to bf16 rounding
        sv = torch.linalg.svdvals(direction[name].float())
        assert torch.allclose(sv, torch.linalg.svdvals(t), rtol=1e-2, atol=1e-3)
        assert not torch.allclose(sv, torch.linalg.svdvals(s), rtol=1e-2, atol=1e-3)


def test_layer_reset_is_bit_exact(grid, pair):
    out_root, _ = grid
    source, target = tensors(pair[0]), tensors(pair[1])
    out = tensors(out_root / "layer-first50pct")
    layer0 = [n for n in target if n.startswith("model.layers.0.")]
    assert any("layernorm" in n for n in layer0) and len(layer0) == 9
    for name in target:
        expected = source[name] if name in layer0 else target[name]
        assert torch.equal(out[name].view(torch.int16), expected.view(torch.int16)), name


def test_absolute_counts_are_cut_as_the_authors_cut_them():
    spec = EditSpec("direction", top_k=3, tail_k=5)
    assert spec.name == "direction-topk3-tailk5" and spec.absolute
    assert spec.index_set(10).tolist() == [0, 1, 2, 5, 6, 7, 8, 9]
    assert spec.index_set(6).tolist() == list(range(6))  # tail_k cut to what top_k leaves
    assert not spec.copies_whole(6)  # covered, but covering "edit" edits every index
    assert replace(spec, covering="copy").copies_whole(6) and not replace(spec, covering="copy").copies_whole(9)
    assert EditSpec.from_dict(spec.to_dict()) == spec


# TINY: q, o and the MLP have rank 64, k and v (2 KV heads of 16) rank 32
AUTHORS = {"kind": "direction", "top_k": 48, "covering": "copy", "round_trip": "float16"}


@pytest.mark.parametrize("covering", ["copy", "edit"])
def test_a_count_above_a_matrix_rank_copies_it_whole_only_with_covering_copy(tmp_path, pair, covering):
    spec = EditSpec("direction", top_k=48, covering=covering)
    [out] = apply_edits(*pair, [spec], [tmp_path / "out"], SvdCache(device="cpu"))
    source, target, edited = tensors(pair[0]), tensors(pair[1]), tensors(out)
    for name in ModelWeights(pair[1]).analysed():
        s, t, e = source[name].float(), target[name].float(), edited[name].float()
        rank = min(t.shape)
        if rank == 32:  # covered
            if covering == "copy":
                assert torch.equal(edited[name], source[name]), name  # the source's matrix, values included
            else:
                assert torch.allclose(torch.linalg.svdvals(e), torch.linalg.svdvals(t), rtol=1e-2, atol=1e-3)
                assert not torch.equal(edited[name], source[name])
        else:  # rank 64: 48 directions put back, the edit itself
            expected = svd_edit("direction", t, thin_svd(t), thin_svd(s), spec.index_set(rank)).to(torch.bfloat16)
            assert torch.equal(edited[name], expected), name


def test_the_float16_round_trip_rounds_every_tensor_and_keeps_its_svds_apart(tmp_path, pair):
    cache = SvdCache(tmp_path / "svd", device="cpu")
    plain, through = EditSpec("direction", top=0.5), EditSpec("direction", top=0.5, round_trip="float16")
    apply_edits(*pair, [plain, through], [tmp_path / "plain", tmp_path / "through"], cache)
    projections = ModelWeights(pair[1]).analysed()
    assert cache.computed == 2 * 2 * len(projections)  # each model's SVDs with and without the round trip
    target = tensors(pair[1])
    edited = tensors(tmp_path / "through")
    for name, tensor in target.items():
        if name not in projections:  # untouched: the target through float16 and back, in its own dtype
            assert torch.equal(edited[name], tensor.to(torch.float16).to(torch.bfloat16)), name
    assert any(not torch.equal(edited[n], tensors(tmp_path / "plain")[n]) for n in projections)
    assert EditSpec(**AUTHORS).name == "direction-topk48-tailk0"


def test_a_count_above_every_matrix_rank_is_refused_before_any_job():
    from sftrl.roles import restore_pairs

    config = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2}
    pairs = [{"source": "sft_peak", "target": "sft_end", "edits": [{"kind": "direction", "top_k": 65}]}]
    with pytest.raises(EditError, match=r"top_k 65 \+ tail_k 0 is above the rank of every matrix .*hidden size, 64"):
        restore_pairs(pairs, [], "sft-2", 2, config)
    pairs[0]["edits"] = [{"kind": "direction", "top_k": 64}]
    [pair] = restore_pairs(pairs, [], "sft-2", 2, config, {"covering": "copy", "round_trip": "float16"})
    assert (pair.specs[0].covering, pair.specs[0].round_trip) == ("copy", "float16")


def changed(out, target):
    """The tensors of an edited model that differ from T's."""
    edited, original = tensors(out), tensors(target)
    return {name for name in original if not torch.equal(edited[name], original[name])}


@pytest.fixture(scope="module")
def untied(tmp_path_factory):
    """S and T with an LM head of their own, and S's norm weights moved off their initial ones: every
    scope family exists, and every tensor of S differs from T's."""
    root = tmp_path_factory.mktemp("untied")
    cfg = TinyModelConfig(**{**TINY.__dict__, "tie_word_embeddings": False})
    source, target = make_model(root / "s", 3, cfg), make_model(root / "t", 4, cfg)
    weights = tensors(source)
    generator = torch.Generator().manual_seed(0)
    for name, tensor in weights.items():
        if tensor.ndim == 1:
            weights[name] = (tensor.float() + 0.1 * torch.randn(tensor.shape, generator=generator)).to(tensor.dtype)
    save_file(weights, source / SINGLE_FILE, metadata={"format": "pt"})
    assert not any(torch.equal(weights[n], t) for n, t in tensors(target).items())
    return source, target


SCOPES = {  # scope -> the tensors it edits, by a predicate on the name (layer resets: layers [1])
    ("projections",): lambda n: n.endswith("_proj.weight"),
    ("embeddings",): lambda n: n == EMBED,
    ("lm_head",): lambda n: n == "lm_head.weight",
    ("projections", "embeddings", "lm_head"): lambda n: n.endswith("_proj.weight") or n in (EMBED, "lm_head.weight"),
}


@pytest.mark.parametrize("scope", list(SCOPES), ids="+".join)
def test_svd_edit_scope_touches_exactly_its_families(tmp_path, untied, scope):
    out = edit_grid(*untied, [EditSpec("triplet", top=1.0, scope=scope)], tmp_path)[0]
    assert changed(out, untied[1]) == {n for n in tensors(untied[1]) if SCOPES[scope](n)}
    source = tensors(untied[0])
    for name in changed(out, untied[1]):  # a full triplet swap is S again, up to bf16 rounding
        edited = tensors(out)[name].float()
        assert (edited - source[name].float()).norm() / source[name].float().norm() < 5e-3, name


@pytest.mark.parametrize(
    "scope, expected",
    [
        (None, lambda n: n.startswith("model.layers.1.")),  # every tensor of the layer
        (("norms",), lambda n: n.startswith("model.layers.1.") and "norm" in n),
        (
            ("projections", "embeddings", "lm_head"),
            lambda n: (
                (n.startswith("model.layers.1.") and n.endswith("_proj.weight")) or n in (EMBED, "lm_head.weight")
            ),
        ),
    ],
    ids=["default", "norms", "authors"],
)
def test_layer_reset_scope_copies_exactly_its_families(tmp_path, untied, scope, expected):
    out = edit_grid(*untied, [EditSpec("layer", layers=[1], scope=scope)], tmp_path)[0]
    result, source = tensors(out), tensors(untied[0])
    assert changed(out, untied[1]) == {n for n in result if expected(n)}
    assert all(torch.equal(result[n], source[n]) for n in changed(out, untied[1]))  # S's bytes


def test_tied_lm_head_is_refused_and_embeddings_edit_the_shared_matrix(tmp_path, pair):
    with pytest.raises(EditError, match=r"scope lm_head selects no tensor .*tied to the input embedding"):
        edit_grid(*pair, [EditSpec("triplet", top=1.0, scope=["lm_head"])], tmp_path / "head")
    assert_nothing_written(tmp_path / "head")
    out = edit_grid(*pair, [EditSpec("triplet", top=1.0, scope=["embeddings"])], tmp_path)[0]
    edited, source = ModelWeights(out).get(EMBED).float(), ModelWeights(pair[0]).get(EMBED).float()
    assert (edited - source).norm() / source.norm() < 5e-3
    assert changed(out, pair[1]) == {EMBED}


def test_sharded_target_gives_same_edit(tmp_path, pair, grid):
    sharded = shard(pair[1], tmp_path / "sharded")
    out = edit_grid(pair[0], sharded, [GRID[0]], tmp_path / "out")[0]
    assert (out / INDEX_FILE).is_file() and len(ModelWeights(out).files) == 2
    single = tensors(grid[0] / GRID[0].name)
    assert all(torch.equal(t, single[n]) for n, t in tensors(out).items())
    assert AutoModelForCausalLM.from_pretrained(out) is not None


# --- bad input ------------------------------------------------------------------------------------


def assert_nothing_written(root):
    assert not root.exists() or list(root.iterdir()) == []


def test_incompatible_models_leave_no_directory(tmp_path, pair):
    source, target = pair
    wider = make_model(tmp_path / "wider", 5, TinyModelConfig(**{**TINY.__dict__, "intermediate_size": 96}))
    with pytest.raises(EditError, match=r"down_proj.weight. has shape \[64, 96\] in .*wider but \[64, 128\]"):
        edit_grid(wider, target, [GRID[0]], tmp_path / "out")
    assert_nothing_written(tmp_path / "out")

    missing = shutil.copytree(source, tmp_path / "missing", ignore=shutil.ignore_patterns("*.safetensors"))
    kept = {n: t for n, t in tensors(source).items() if n != Q0}
    save_file(kept, missing / SINGLE_FILE, metadata={"format": "pt"})
    with pytest.raises(EditError, match=f"{Q0}.*missing from .*missing"):
        edit_grid(missing, target, [GRID[0]], tmp_path / "out")
    assert_nothing_written(tmp_path / "out")

    with pytest.raises(EditError, match="only 2 decoder layers"):
        edit_grid(source, target, [GRID[0], EditSpec("layer", layers=[1, 7])], tmp_path / "out")
    assert_nothing_written(tmp_path / "out")
    with pytest.raises(EditError, match="is the source or target"):
        apply_edits(source, target, [GRID[0]], [target])
    with pytest.raises(Exception, match="'nothing' matches no tensor"):
        edit_grid(source, target, [EditSpec("value", top=1, patterns=["nothing"])], tmp_path / "out")
    with pytest.raises(Exception, match="'embed' matches no tensor"):  # patterns narrow the layers' tensors
        edit_grid(source, target, [EditSpec("value", top=1, patterns=["embed"])], tmp_path / "out")
    with pytest.raises(EditError, match="scope projections selects no tensor"):
        edit_grid(source, target, [EditSpec("value", top=1, patterns=["*norm*"])], tmp_path / "out")
    assert_nothing_written(tmp_path / "out")


def test_failure_mid_write_leaves_previous_result(tmp_path, pair, monkeypatch):
    out_root = tmp_path / "out"
    previous = out_root / GRID[0].name
    previous.mkdir(parents=True)
    (previous / "marker").write_text("old")
    real, calls = restore.svd_edit, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return real(*args)

    monkeypatch.setattr(restore, "svd_edit", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        edit_grid(*pair, GRID[:2], out_root)
    assert sorted(p.name for p in out_root.iterdir()) == [GRID[0].name]  # no temp dirs, no new result
    assert [p.name for p in previous.iterdir()] == ["marker"]


def test_script(tmp_path, pair, monkeypatch):
    edits = json.dumps([{"kind": "direction", "top": 0.2}, {"kind": "layer", "layers": "0.5:1"}])
    argv = [
        "restore.py",
        "--source",
        str(pair[0]),
        "--target",
        str(pair[1]),
        "--edit",
        edits,
        "--out-root",
        str(tmp_path / "out"),
        "--cache",
        str(tmp_path / "cache"),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "direction-top20-tail0",
        "layer-50to100pct",
    ]
    assert len(list((tmp_path / "cache").glob("*/*.safetensors"))) == 2 * 14


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_edit_matches_cpu(pair, grid, tmp_path):
    spec = GRID[0]
    out = apply_edits(*pair, [spec], [tmp_path / "gpu"], SvdCache(device="cuda"))[0]
    cpu, gpu = tensors(grid[0] / spec.name), tensors(out)
    for name, tensor in cpu.items():
        assert gpu[name].dtype == torch.bfloat16
        assert (gpu[name].float() - tensor.float()).norm() <= 1e-2 * tensor.float().norm() + 1e-6, name
