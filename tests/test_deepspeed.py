"""The DeepSpeed configs in configs/deepspeed/ as the SFT trainer and PPO read them, validated by DeepSpeed's own
config classes (no GPU: DeepSpeed validates a config without building an engine)."""

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("deepspeed")
from deepspeed.runtime.config import DeepSpeedConfig

from sftrl.ds_config import check_for_ppo, resolve_for_ppo
from sftrl.rl.ppo import PpoConfig
from sftrl.sft import SftConfig, trainer_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs" / "deepspeed").glob("*.json"))
# Values the Hugging Face trainer fills from its own arguments: written "auto" so they cannot disagree.
TRAINER_VALUES = [
    ("train_micro_batch_size_per_gpu",),
    ("gradient_accumulation_steps",),
    ("train_batch_size",),
    ("gradient_clipping",),
    ("bf16", "enabled"),
    ("optimizer", "params", "lr"),
    ("optimizer", "params", "betas"),
    ("optimizer", "params", "eps"),
    ("optimizer", "params", "weight_decay"),
]


def autos(tree: dict, prefix: str = "") -> list[str]:
    found = []
    for key, value in tree.items():
        if isinstance(value, dict):
            found += autos(value, f"{prefix}{key}.")
        elif value == "auto":
            found.append(prefix + key)
    return found


def resolved(path: Path, tmp_path: Path, hidden_size: int = 3584) -> dict:
    """The config as the SFT trainer resolves it (sftrl.sft.trainer_config, then the model's hidden size,
    Qwen2.5-7B's by default, for the bucket sizes), with the paper's batch: 16 per GPU, accumulation 4."""
    cfg = SftConfig(
        deepspeed=str(path), bf16=True, per_device_batch_size=16, gradient_accumulation_steps=4, max_steps=100
    )
    args = trainer_config(cfg, tmp_path)
    config = args.hf_deepspeed_config
    config.trainer_config_finalize(args, SimpleNamespace(config=SimpleNamespace(hidden_size=hidden_size)), 100)
    return copy.deepcopy(config.config)


def test_zero2_zero3_with_and_without_offload_are_there():
    assert [p.stem for p in CONFIGS] == ["zero2", "zero2_offload", "zero3", "zero3_offload"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_trainer_values_are_auto(path):
    config = json.loads(path.read_text())
    for keys in TRAINER_VALUES:
        value = config
        for key in keys:
            value = value[key]
        assert value == "auto", ".".join(keys)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_deepspeed_accepts_the_resolved_config(path, tmp_path):
    config = resolved(path, tmp_path)
    assert autos(config) == []
    assert config["optimizer"]["params"]["lr"] == SftConfig().learning_rate
    assert config["optimizer"]["params"]["betas"] == [0.9, 0.98]
    ds = DeepSpeedConfig(config)  # one process: world size 1
    stage = 3 if path.stem.startswith("zero3") else 2
    assert ds.zero_optimization_stage == stage
    assert ds.train_batch_size == 16 * 4
    assert (ds.zero_config.offload_optimizer is not None) == path.stem.endswith("_offload")
    if stage == 3:
        # checkpoints are gathered into plain 16-bit weights: ladder directories stay Hugging Face models
        assert ds.zero_config.gather_16bit_weights_on_model_save
        assert (ds.zero_config.offload_param is not None) == path.stem.endswith("_offload")
        assert config["zero_optimization"]["stage3_param_persistence_threshold"] == 10 * 3584


def test_deepspeed_rejects_a_misspelt_key(tmp_path):
    config = resolved(ROOT / "configs" / "deepspeed" / "zero3.json", tmp_path)
    config["zero_optimization"]["stage3_gather_16bit_weights_on_save"] = True
    with pytest.raises(Exception, match="stage3_gather_16bit_weights_on_save"):
        DeepSpeedConfig(config)


# --- as PPO runs them (sftrl.ds_config) ------------------------------------------------------------


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.stem.startswith("zero2")], ids=lambda p: p.stem)
def test_ppo_resolves_zero2_as_deepspeed_accepts(path):
    """Every "auto" filled from rl.ppo: the batch is one minibatch per process (PPO marks the accumulation
    boundary itself), clipping is PPO's, the reduce bucket the model's hidden size squared."""
    cfg = PpoConfig(learning_rate=1e-6, minibatch_size=2, gradient_accumulation_steps=128, max_grad_norm=0.01)
    config = resolve_for_ppo(path, cfg, "bfloat16", processes=4, hidden_size=3584)
    assert autos(config) == []
    assert config["optimizer"]["params"]["lr"] == 1e-6 and config["gradient_clipping"] == 0.01
    assert config["bf16"]["enabled"] is True and config["fp16"]["enabled"] is False
    assert config["zero_optimization"]["reduce_bucket_size"] == 3584 * 3584
    assert config["train_batch_size"] == 2 * 4 and config["gradient_accumulation_steps"] == 1
    single = resolve_for_ppo(path, cfg, "float32", processes=1, hidden_size=64)
    assert single["bf16"]["enabled"] is False
    ds = DeepSpeedConfig(single)  # DeepSpeed checks the batch arithmetic against its world size: 1 here
    assert ds.zero_optimization_stage == 2 and ds.gradient_accumulation_steps == 1
    assert ds.train_micro_batch_size_per_gpu == 2 and ds.train_batch_size == 2


def test_ppo_refuses_what_it_cannot_run_under(tmp_path):
    zero2 = json.loads((ROOT / "configs" / "deepspeed" / "zero2.json").read_text())

    def written(config: dict) -> Path:
        path = tmp_path / "ds.json"
        path.write_text(json.dumps(config))
        return path

    with pytest.raises(ValueError, match="ZeRO stage 3 partitions the weights"):
        check_for_ppo(ROOT / "configs" / "deepspeed" / "zero3_offload.json", "bfloat16")
    with pytest.raises(ValueError, match="float16 needs loss scaling"):
        check_for_ppo(written(zero2), "float16")
    with pytest.raises(ValueError, match="has a scheduler"):
        check_for_ppo(written({**zero2, "scheduler": {"type": "WarmupLR"}}), "bfloat16")
    with pytest.raises(ValueError, match=r"\['gradient_clipping'\] are set from rl.ppo"):
        check_for_ppo(written({**zero2, "gradient_clipping": 1.0}), "bfloat16")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="cannot read it as JSON"):
        check_for_ppo(tmp_path / "broken.json", "bfloat16")
