"""Model families: each registered text family, built tiny with random weights, goes through SFT and an
evaluation, and has every 2-D weight of every decoder layer analysed by the spectra and edited by a
direction edit and a layer reset; an unknown family and a partial match are refused."""

import json
from dataclasses import replace

import pytest
import torch
from rl_start import TASK
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)

from sftrl import capacity, io, sft
from sftrl.evaluate import EvalConfig, evaluate_model
from sftrl.families import DECODER_LAYER, FAMILIES, UnknownFamily, check_coverage, family_of, tied_embeddings
from sftrl.modeling import build_tokenizer, load_model, save_model
from sftrl.restoration.apply import apply_edits
from sftrl.restoration.spec import EditSpec
from sftrl.spectral.metrics import analyse_pair
from sftrl.spectral.svd import SvdCache
from sftrl.spectral.weights import ModelWeights

pytestmark = pytest.mark.usefixtures("one_thread")
LAYERS = 2
# The rehearsed text families; Llama 3.2 Vision (mllama) is rehearsed with the paper configs.
CONFIGS = {
    "llama": LlamaConfig,
    "mistral": MistralConfig,
    "qwen2": Qwen2Config,
    "qwen3": Qwen3Config,
    "gemma2": Gemma2Config,
    "phi3": Phi3Config,
}
# 2-D weights a decoder layer stores: Phi-3 fuses q, k, v and gate, up
MATRICES = {"phi3": 4}


def test_every_text_family_is_rehearsed():
    assert set(CONFIGS) == {name for name, family in FAMILIES.items() if not family.vision}


def build(family: str, path, seed: int, tokenizer=None):
    tokenizer = tokenizer or build_tokenizer(["a b c d"], max_number=20)
    config = CONFIGS[family](
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    save_model(AutoModelForCausalLM.from_config(config), tokenizer, path)
    return path


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def family_pair(request, tmp_path_factory, rl_sets):
    """(family, its random base, the base after 4 SFT steps), the ladder exported as the workflow does."""
    family, root = request.param, tmp_path_factory.mktemp(request.param)
    texts = [m["content"] for r in rl_sets["sft"] for m in r["prompt"] + r["completion"]]
    base = build(family, root / "base", 1, build_tokenizer([*texts, "fail ; no answer value not wrong numbers"]))
    cfg = sft.SftConfig(max_steps=4, save_every=4, extra_steps=(), per_device_batch_size=4, max_length=128)
    torch.manual_seed(0)
    sft.train(
        base,
        None,
        rl_sets["sft"][:16],
        {"train": rl_sets["sft"][:4]},
        cfg,
        root / "work",
        lambda step: root / f"sft-{step}",
        root / "log.jsonl",
    )
    return family, base, root / "sft-4"


def test_sft_and_evaluation_run(family_pair, rl_sets, tmp_path):
    family, _, tuned = family_pair
    assert load_model(tuned)[0].config.model_type == family
    episodes = tmp_path / "eval_id.jsonl"
    io.write_jsonl(episodes, rl_sets["eval_id"])
    cfg = EvalConfig(batch_size=4, max_new_tokens=8)
    metrics = evaluate_model(tuned, episodes, TASK, cfg, tmp_path / "eval", split="id", progress=False)
    assert metrics["n_episodes"] == len(rl_sets["eval_id"])
    assert len(io.read_jsonl(tmp_path / "eval" / "samples.jsonl")) == len(rl_sets["eval_id"])


def layer_matrices(weights: ModelWeights) -> set[str]:
    return {n for n, info in weights.infos.items() if len(info.shape) == 2 and DECODER_LAYER.match(n)}


def test_spectra_analyse_every_matrix_of_every_layer(family_pair):
    family, a, b = family_pair
    weights = ModelWeights(a)
    matrices = layer_matrices(weights)
    assert len(matrices) == LAYERS * MATRICES.get(family, 7)
    assert set(weights.analysed()) == matrices
    table = analyse_pair(a, b, cache=SvdCache(device="cpu"))
    assert set(table["name"]) == matrices


def test_edits_touch_every_matrix_of_every_layer(family_pair, tmp_path):
    family, source, target = family_pair
    out = apply_edits(
        source,
        target,
        [EditSpec("direction", top=0.5), EditSpec("layer", layers=1.0)],
        [tmp_path / "direction", tmp_path / "layer"],
        SvdCache(device="cpu"),
    )
    before, matrices = ModelWeights(target), layer_matrices(ModelWeights(target))
    for path in out:
        after = ModelWeights(path)
        changed = {n for n in matrices if not torch.equal(after.get(n), before.get(n))}
        assert changed == matrices, (path.name, sorted(matrices - changed))
    model = load_model(out[0])[0]  # an edited model loads in its family's class
    assert model.config.model_type == family


def test_the_memory_plan_counts_every_parameter(family_pair):
    family, a, _ = family_pair
    config = json.loads((a / "config.json").read_text())
    model = load_model(a)[0]
    counted = sum(p.numel() for p in model.parameters())
    shape = capacity.ModelShape.from_config(config)
    # Gemma 2 has two more norms a layer than the Llama layout the formula counts, Qwen3 two head norms
    extra = {"gemma2": 2 * 32, "qwen3": 2 * 8}.get(family, 0) * LAYERS
    assert shape.params + extra == counted


def test_fused_matrices_are_analysed_as_stored():
    phi3 = FAMILIES["phi3"]
    assert phi3.logical_parts("qkv_proj") == ("q_proj", "k_proj", "v_proj")
    assert phi3.logical_parts("o_proj") == ("o_proj",)


def test_a_family_that_misses_a_matrix_is_an_error(tmp_path):
    """Phi-3 read with Llama's projection names would analyse only o_proj and down_proj."""
    weights = ModelWeights(build("phi3", tmp_path / "phi3", 0))
    as_llama = replace(FAMILIES["phi3"], attention=FAMILIES["llama"].attention, mlp=FAMILIES["llama"].mlp)
    partial = [n for n in weights.names if n.endswith(("o_proj.weight", "down_proj.weight"))]
    with pytest.raises(UnknownFamily, match=r"4 2-D weight\(s\).*qkv_proj"):
        check_coverage({n: i.shape for n, i in weights.infos.items()}, partial, as_llama, "phi3")
    weights.__dict__["family"] = as_llama  # as if the registry said so
    with pytest.raises(UnknownFamily, match="match none of its family's projections"):
        weights.analysed()


def test_an_unknown_family_is_refused_naming_it(tmp_path):
    with pytest.raises(UnknownFamily, match=r"model family 'made_up'.*src/sftrl/families.py"):
        family_of({"model_type": "made_up"})
    path = build("llama", tmp_path / "made_up", 0)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": "made_up"}))
    with pytest.raises(UnknownFamily, match="made_up"):
        ModelWeights(path).analysed()


def test_a_tied_head_follows_config_else_the_family():
    assert tied_embeddings({"model_type": "gemma2"})
    assert not tied_embeddings({"model_type": "llama"})
    assert tied_embeddings({"model_type": "llama", "tie_word_embeddings": True})
    assert not tied_embeddings({"model_type": "mllama", "text_config": {"tie_word_embeddings": False}})


def test_the_vision_familys_text_decoder_is_analysed_but_its_cross_attention(tmp_path, tiny_mllama):
    """Llama 3.2 Vision: every 2-D weight of the text decoder's layers but the cross-attention ones, which
    attend to image states only, and nothing of the vision tower."""
    tokenizer = build_tokenizer(["a b c d"], max_number=20)
    save_model(tiny_mllama(tokenizer), tokenizer, tmp_path / "mllama")
    weights = ModelWeights(tmp_path / "mllama")
    analysed = set(weights.analysed())
    cross = {n for n in layer_matrices(weights) if ".cross_attn." in n}
    assert len(cross) == 4 and analysed == layer_matrices(weights) - cross
    assert not any("vision" in n for n in analysed)
