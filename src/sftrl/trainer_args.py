"""The trainer arguments SFT and GRPO share: optimiser, schedule, precision and device, all stated.

Transformers' and TRL's own defaults for these moved between releases, so every stage passes them
explicitly, from its own config dataclass, through this one function.
"""

from __future__ import annotations

import torch


def optimiser_args(cfg) -> dict:
    """Keyword arguments for a `transformers.TrainingArguments` subclass, from a stage config that has
    learning_rate, lr_scheduler_type, warmup_ratio, weight_decay, adam_beta1/2, adam_epsilon,
    max_grad_norm, seed and bf16."""
    return {
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "warmup_steps": cfg.warmup_ratio,  # a float below 1 is a ratio of max_steps
        "weight_decay": cfg.weight_decay,
        "adam_beta1": cfg.adam_beta1,
        "adam_beta2": cfg.adam_beta2,
        "adam_epsilon": cfg.adam_epsilon,
        "max_grad_norm": cfg.max_grad_norm,
        "optim": "adamw_torch",
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": cfg.bf16,
        "fp16": False,
        "use_cpu": not torch.cuda.is_available(),
    }


HALF_PRECISION = ("bfloat16", "float16")


def master_dtype(dtype: str) -> str:
    """The dtype a trainer holds the weights it updates in, for a model configured in `dtype`.

    A bf16 weight near 0.02 has a rounding step near 1e-4, so an update of lr 1e-6 rounds away: trained
    weights stay float32 (the master copy, with float32 optimizer states), the half-precision dtype is
    the compute dtype (autocast) and the dtype the trained model is exported in.
    """
    return "float32" if dtype in HALF_PRECISION else dtype
