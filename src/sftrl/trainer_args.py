"""The trainer arguments SFT and GRPO share: optimiser, schedule, precision and device, all stated.

Transformers' and TRL's own defaults for these moved between releases, so every stage passes them
explicitly, from its own config dataclass, through this one function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.optim.lr_scheduler import LambdaLR


@dataclass(frozen=True)
class OptimiserConfig:
    """AdamW and its learning-rate schedule as the Hugging Face trainers take them: the fields every training
    stage's config (`SftConfig`, `GrpoConfig`, `PpoConfig`) shares, with their bounds (`optimiser_problems`,
    the schema's, which `tests/test_config.py` holds to these); a stage states its own default where it
    differs."""

    learning_rate: float = 1e-4
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float | None = 1.0  # None: no clipping

    def optimiser_problems(self) -> list[str]:
        """What is wrong with these settings, one phrase each (the schema checks a config; this, any caller)."""
        problems = []
        for name in ("learning_rate", "adam_epsilon"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, not {getattr(self, name)}")
        for name in ("warmup_ratio", "adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1), not {getattr(self, name)}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be non-negative, not {self.weight_decay}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm must be positive (or null: no clipping), not {self.max_grad_norm}")
        return problems


def log_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int) -> LambdaLR:
    """DeepSpeed's `WarmupLR` (warmup_type log, from 0), which the authors' SFT ran (their log shows it, not
    the cosine their command line names): after k optimizer steps the learning rate is lr · ln k / ln W up to
    k = W warm-up steps, then lr; the first step takes 0. The trainer logs the rate after each step, so step
    2 of lr 1e-6 and W = 376 logs 1.169e-7. W is at least 2, as DeepSpeed has it."""
    steps = max(2, warmup_steps)
    return LambdaLR(optimizer, lambda k: 0.0 if k == 0 else min(1.0, math.log(k) / math.log(steps)))


# Schedules the Hugging Face trainers do not ship: name -> builder(optimizer, warm-up steps). A trainer
# that meets one of these names builds it in its `create_scheduler` (`sftrl.sft.SftTrainer`).
CUSTOM_SCHEDULES = {"warmup_log": log_warmup}


def optimiser_args(cfg: OptimiserConfig, seed: int, bf16: bool) -> dict:
    """Keyword arguments for a `transformers.TrainingArguments` subclass: the optimiser and schedule of
    `cfg`, the run's seed, and bf16 autocast or none. A schedule of CUSTOM_SCHEDULES is named "constant" to
    the arguments; the trainer replaces it."""
    return {
        "learning_rate": cfg.learning_rate,
        "lr_scheduler_type": "constant" if cfg.lr_scheduler_type in CUSTOM_SCHEDULES else cfg.lr_scheduler_type,
        "warmup_steps": cfg.warmup_ratio,  # a float below 1 is a ratio of max_steps
        "weight_decay": cfg.weight_decay,
        "adam_beta1": cfg.adam_beta1,
        "adam_beta2": cfg.adam_beta2,
        "adam_epsilon": cfg.adam_epsilon,
        "max_grad_norm": cfg.max_grad_norm if cfg.max_grad_norm is not None else 0.0,  # 0: the trainer does not clip
        "optim": "adamw_torch",
        "seed": seed,
        "data_seed": seed,
        "bf16": bf16,
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
