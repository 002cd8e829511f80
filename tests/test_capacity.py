"""The memory and disk plan: parameter counts against real models, each memory term by hand, the paper
configs' PPO on four GPUs under ZeRO-2 with offload against one 80 GB GPU, the disk budget."""

import json
from pathlib import Path

import pytest
import yaml
from test_paper_configs import MODELS

from sftrl import capacity
from sftrl.capacity import GIB, ModelShape, Training
from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_TEXTS = ["numbers 1 2 3 ; 1 + 2 = 3 fail"]


def merged(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def paper_config(experiment: str, **overrides) -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config = merged(config, yaml.safe_load((ROOT / "experiments" / f"{experiment}.yaml").read_text()))
    return merged(config, overrides)


def read_json(path: str) -> dict:
    return json.loads((ROOT / path).read_text() if not Path(path).is_absolute() else Path(path).read_text())


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# --- the model's shape ------------------------------------------------------------------------------


@pytest.mark.parametrize(("bias", "tied"), [(False, True), (True, False)], ids=["llama-tied", "qwen-like"])
def test_parameter_count_of_a_llama_layout_decoder_is_exact(bias, tied):
    tokenizer = build_tokenizer(TOKENIZER_TEXTS)
    cfg = TinyModelConfig(64, 2, 4, 2, 96, 64, tie_word_embeddings=tied, attention_bias=bias)
    model = build_tiny_model(tokenizer, cfg, seed=0)
    shape = ModelShape.from_config(model.config.to_dict())
    assert shape.params == shape.trained == parameters(model)
    assert (shape.layers, shape.hidden, shape.kv_width) == (2, 64, 2 * 16)


def test_qwen2_counts_its_attention_biases():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    assert ModelShape.from_config(config.to_dict()).params == parameters(Qwen2ForCausalLM(config))


def test_vision_language_model_trains_its_text_decoder_only(tiny_mllama):
    model = tiny_mllama(build_tokenizer(TOKENIZER_TEXTS))
    shape = ModelShape.from_config(model.config.to_dict())
    text = parameters(model.model.language_model) + parameters(model.lm_head)
    assert shape.trained == pytest.approx(text, rel=0.01)  # cross-attention norms and gates aside
    assert shape.params == pytest.approx(parameters(model), rel=0.1)  # the vision tower approximately


def test_published_model_sizes():
    assert ModelShape.from_config(MODELS["qwen2.5-7b"]).params == pytest.approx(7.62e9, rel=0.005)
    assert ModelShape.from_config(MODELS["llama3.2-11b-vision"]).params == pytest.approx(10.67e9, rel=0.02)
    with pytest.raises(ValueError, match=r"lacks \['vocab_size'\]"):
        ModelShape.from_config(
            {"hidden_size": 8, "num_hidden_layers": 1, "intermediate_size": 8, "num_attention_heads": 2}
        )


# --- memory terms ------------------------------------------------------------------------------------

SHAPE = ModelShape(params=1000, trained=800, layers=2, hidden=4, intermediate=8, kv_width=2, vocab=10)
PER_LAYER = 8 * 4 + 2 * 2 + 4 * 8  # values saved per token and layer


def bytes_of(terms: dict) -> dict:
    return {name: round(gib * GIB, 6) for name, gib in terms.items() if name != "context"}


def test_training_terms_by_hand():
    activations = 3 * 5 * (2 * PER_LAYER * 2 + 10 * 12)  # bf16 values, float32 logits with grad
    plain = capacity.training_gib(SHAPE, "bfloat16", Training(), batch=3, tokens=5)
    assert bytes_of(plain) == {"weights": 4000, "gradients": 3200, "optimizer": 6400, "activations": activations}
    zero2 = capacity.training_gib(SHAPE, "bfloat16", Training(4, 2, offload=True), 3, 5)
    assert bytes_of(zero2) == {"weights": 2000, "gradients": 400, "optimizer": 0, "activations": activations}
    zero1 = capacity.training_gib(SHAPE, "bfloat16", Training(4, 1), 3, 5)
    assert (bytes_of(zero1)["gradients"], bytes_of(zero1)["optimizer"]) == (1600, 2400)
    assert bytes_of(capacity.training_gib(SHAPE, "bfloat16", Training(4, 3), 3, 5))["weights"] == 500
    recomputed = capacity.training_gib(SHAPE, "bfloat16", Training(), 3, 5, checkpointing=True)
    assert bytes_of(recomputed)["activations"] == 3 * 5 * ((2 * 4 + PER_LAYER) * 2 + 10 * 12)
    generation = capacity.generation_gib(SHAPE, "bfloat16", batch=3, tokens=5)
    kv_cache, logits, prefill = 3 * 5 * 2 * 2 * 2 * 2, 3 * 10 * 4, 3 * 5 * PER_LAYER * 2
    assert bytes_of(generation) == {"weights": 2000, "kv_cache": kv_cache, "activations": logits + prefill}


# --- the paper configs --------------------------------------------------------------------------------


@pytest.mark.parametrize("experiment", list(MODELS))
def test_paper_configs_fit_and_ppo_on_one_gpu_does_not(experiment):
    """As configured (PPO on 4 GPUs, ZeRO-2, optimizer in CPU memory) every job fits an 80 GB GPU; PPO on
    one GPU with float32 masters, gradients and Adam states (16 bytes a parameter) does not."""
    shape = ModelShape.from_config(MODELS[experiment])
    rows = capacity.memory_plan(paper_config(experiment), shape, read_json, ["ppo"])
    assert [row.stage for row in rows] == ["sft", "rl", "evaluate", "evaluate"]
    assert rows[3].job.startswith("representations: two models")
    assert rows[3].terms["weights"] == pytest.approx(2 * rows[2].terms["weights"])  # both models at once
    assert all(row.fits for row in rows), capacity.render(rows, {})
    capacity.check_memory(rows)
    alone = paper_config(experiment, resources={"rl": {"gpus": 1}}, rl={"ppo": {"deepspeed": None}})
    rows = capacity.memory_plan(alone, shape, read_json, ["ppo"])
    assert rows[1].terms["optimizer"] + rows[1].terms["gradients"] == pytest.approx(12 * shape.trained / GIB)
    with pytest.raises(ValueError, match=r"PPO update.*more than resources.rl.gpu_mem_gb = 80.*zero2_offload"):
        capacity.check_memory(rows)


def test_disk_plan_and_budget():
    config = paper_config("qwen2.5-7b")
    counts = {"ladder": 80, "rl": 80, "edits": 20, "analysed": 161, "in_flight": 4}
    plan = capacity.disk_plan(config, SHAPE, counts)
    assert {kind: round(gib * GIB) for kind, gib in plan.items()} == {
        "ladder": 80 * 2000,
        "rl_models": 80 * 2000,
        "edited_models": 20 * 2000,
        "sft_checkpoints": 2 * 1000 * (2 + 12),  # DeepSpeed: 16-bit weights, float32 masters and moments
        "rl_checkpoints": 80 * 2 * 1000 * (2 + 12),
        "svd_cache": 0,
    }
    capacity.check_disk(plan, budget=None)
    with pytest.raises(ValueError, match=r"rl_checkpoints.*more than plan.disk_budget_gb = 0.001: keep only"):
        capacity.check_disk(plan, budget=0.001)
    real = capacity.disk_plan(config, ModelShape.from_config(MODELS["qwen2.5-7b"]), counts)
    assert real["ladder"] == pytest.approx(80 * 7.62e9 * 2 / GIB, rel=0.01)  # 80 bf16 checkpoints: 1.1 TiB


def test_keeping_only_the_ladder_holds_the_rl_runs_in_flight():
    """keep_models: ladder deletes an RL run's checkpoints when it ends and its model once analysed: the
    disk holds those of the runs in flight (Snakemake's job limit), the ladder and edits as before."""
    counts = {"ladder": 80, "rl": 80, "edits": 20, "analysed": 161, "in_flight": 4}
    everything = capacity.disk_plan(paper_config("qwen2.5-7b"), SHAPE, counts)
    ladder = capacity.disk_plan(paper_config("qwen2.5-7b", keep_models="ladder"), SHAPE, counts)
    assert ladder["rl_models"] == pytest.approx(everything["rl_models"] * 4 / 80)
    assert ladder["rl_checkpoints"] == pytest.approx(everything["rl_checkpoints"] * 4 / 80)
    for kind in ("ladder", "edited_models", "sft_checkpoints", "svd_cache"):
        assert ladder[kind] == everything[kind]
    few_runs = capacity.disk_plan(paper_config("qwen2.5-7b", keep_models="ladder"), SHAPE, {**counts, "rl": 2})
    assert few_runs["rl_models"] == pytest.approx(everything["rl_models"] * 2 / 80)
