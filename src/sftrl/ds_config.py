"""DeepSpeed JSON configs as PPO runs them (`rl.ppo.deepspeed`): checked at the dry run, resolved at the
start of a run. Torch-free, so the workflow can check a config before any job.

PPO marks the accumulation boundary itself (the last optimizer step of an update may take fewer
minibatches), so DeepSpeed's own accumulation is 1 and its batch one minibatch per process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Keys PPO sets from its own settings; the file must leave them "auto" (or out).
AUTO_KEYS = (
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "train_batch_size",
    "gradient_clipping",
)


def check_for_ppo(path: str | os.PathLike, dtype: str) -> dict:
    """The JSON at `path`, or a ValueError naming what PPO cannot run under: ZeRO-3 (PPO samples its
    rollouts with each process's whole policy), float16 (no loss scaling), a scheduler of its own, or a
    value PPO sets itself."""
    where = f"rl.ppo.deepspeed ({path})"
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{where}: cannot read it as JSON: {err}") from err
    stage = int((config.get("zero_optimization") or {}).get("stage", 0))
    if stage >= 3:
        raise ValueError(
            f"{where}: ZeRO stage 3 partitions the weights across processes, but PPO samples its rollouts "
            "with each process's whole policy (HF generate): use a ZeRO-2 config, e.g. "
            "configs/deepspeed/zero2_offload.json (the authors' setting)"
        )
    if dtype == "float16":
        raise ValueError(f"{where}: float16 needs loss scaling, which PPO does not do; use model.dtype bfloat16")
    if "scheduler" in config:
        raise ValueError(f"{where}: has a scheduler; PPO steps its own (rl.ppo.lr_scheduler_type): remove it")
    fixed = [key for key in AUTO_KEYS if config.get(key, "auto") != "auto"]
    if fixed:
        raise ValueError(f'{where}: {fixed} are set from rl.ppo (minibatch_size, max_grad_norm): write "auto"')
    return config


def resolve_for_ppo(path: str | os.PathLike, cfg, dtype: str, processes: int, hidden_size: int) -> dict:
    """The checked config with every "auto" resolved from `cfg` (a PpoConfig), `dtype`, the number of
    processes and the model's `hidden_size` (the reduce bucket, as transformers sizes it)."""
    config = check_for_ppo(path, dtype)
    config.update(
        train_micro_batch_size_per_gpu=cfg.minibatch_size,
        gradient_accumulation_steps=1,
        train_batch_size=cfg.minibatch_size * processes,
        gradient_clipping=cfg.max_grad_norm if cfg.max_grad_norm is not None else 0.0,  # 0: DeepSpeed does not clip
    )
    config["bf16"] = {**config.get("bf16", {}), "enabled": dtype == "bfloat16"}
    config["fp16"] = {**config.get("fp16", {}), "enabled": False}
    optimizer = config.get("optimizer")
    if optimizer is not None:
        params = optimizer.setdefault("params", {})
        resolved = {
            "lr": cfg.learning_rate,
            "betas": [cfg.adam_beta1, cfg.adam_beta2],
            "eps": cfg.adam_epsilon,
            "weight_decay": cfg.weight_decay,
        }
        for key, value in resolved.items():
            if params.get(key, "auto") == "auto":
                params[key] = value
    zero = config.get("zero_optimization") or {}
    if zero.get("reduce_bucket_size") == "auto":
        zero["reduce_bucket_size"] = hidden_size * hidden_size
    left = sorted(key for key, value in zero.items() if value == "auto")
    if left:
        raise ValueError(f'rl.ppo.deepspeed ({path}): zero_optimization {left} are "auto"; give numbers')
    return config
