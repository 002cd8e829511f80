"""The representation pairs a config names, and the refusal of a model directory that cannot be compared."""

import pytest

from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer, save_model
from sftrl.representations import pairs
from sftrl.representations.features import IncomparableModels

RL = ["rl-ppo-from600-s0", "rl-ppo-from50-s0", "rl-grpo-from600-s0"]
MODELS = ["base", "sft-5", "sft-50", "sft-600", *RL]


def section(models=("sft_end", "rl_from_end"), extra=()):
    return {"models": list(models), "pairs": list(extra)}


def test_the_default_compares_sft_peak_with_sft_end_and_the_rl_runs_from_it():
    assert pairs.configured_pairs(section(), RL, "sft-600", MODELS) == [
        ("sft_peak", "sft_end"),
        ("sft_peak", "rl-ppo-from600-s0"),
        ("sft_peak", "rl-grpo-from600-s0"),
    ]


def test_extra_pairs_take_roles_model_names_and_directories(tmp_path):
    other = tmp_path / "other model"
    other.mkdir()
    (other / "config.json").write_text("{}")
    extra = [{"a": "sft_peak", "b": "base"}, {"a": "sft-50", "b": str(other)}, {"a": "sft_end", "b": "sft_end"}]
    assert pairs.configured_pairs(section(models=[], extra=extra), RL, "sft-600", MODELS) == [
        ("sft_peak", "base"),
        ("sft-50", "ext-other_model"),
    ]
    assert pairs.external_models(section(extra=extra)) == {"ext-other_model": other.resolve()}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (section(models=["sft_peak"]), "sft_peak is the reference"),
        (section(models=["nonsense"]), "unknown role"),
        (section(models=[], extra=[{"a": "sft_peak", "b": "sft-7"}]), "neither a role"),
    ],
)
def test_bad_pairs_are_refused(config, message):
    with pytest.raises(ValueError, match=message):
        pairs.configured_pairs(config, RL, "sft-600", MODELS)


def test_a_directory_with_another_hidden_size_is_refused_before_any_job(tmp_path):
    tokenizer = build_tokenizer(["a few words"])
    small = TinyModelConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64
    )
    save_model(build_tiny_model(tokenizer, small, seed=0), tokenizer, tmp_path / "base")
    wide = TinyModelConfig(**{**small.__dict__, "hidden_size": 64})
    save_model(build_tiny_model(tokenizer, wide, seed=0), tokenizer, tmp_path / "wide")
    config = section(models=[], extra=[{"a": "sft_end", "b": str(tmp_path / "wide")}])
    named = pairs.configured_pairs(config, RL, "sft-600", MODELS)
    with pytest.raises(IncomparableModels, match=r"sft_end and ext-wide \(.*wide\).*hidden size: 32 vs 64"):
        pairs.check_pairs(named, pairs.external_models(config), lambda: tmp_path / "base")
    pairs.check_pairs(named, pairs.external_models(config), lambda: None)  # base not on disk: the job checks
    same = section(models=[], extra=[{"a": "sft_end", "b": str(tmp_path / "base")}])
    pairs.check_pairs(
        pairs.configured_pairs(same, RL, "sft-600", MODELS), pairs.external_models(same), lambda: tmp_path / "base"
    )
