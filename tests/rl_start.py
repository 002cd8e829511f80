"""What the PPO and GRPO tests train from: the task, small data sets, and a weak tiny start model."""

from pathlib import Path

import torch

from sftrl.config import (
    DataConfig,
    EvalDataConfig,
    PretrainDataConfig,
    RlDataConfig,
    SftDataConfig,
    TaskConfig,
)
from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer, save_model
from sftrl.sft import plain_sft
from sftrl.training_run import RunFiles

TASK = TaskConfig(
    target=24, style="compact", max_attempts=2, strict_layout=False
)  # any layout: the weak start gains by its numbers
DATA = DataConfig(
    id_unseen_share=0.2,
    sft=SftDataConfig(hands=200, solutions_per_hand=3),
    eval=EvalDataConfig(id=4, id_unseen=4, ood=4, loss_examples=2),
    rl=RlDataConfig(prompts=64),
    pretrain=PretrainDataConfig(examples=4),
)

TINY = TinyModelConfig(hidden_size=64, num_hidden_layers=2, intermediate_size=192, max_position_embeddings=256)


def make_start_dir(parent, sets, steps=60):
    """The tiny model (hidden 64, 2 layers; 0.13M parameters with this vocabulary) after 60 SFT steps:
    right format, mostly wrong answers (episode reward about -5 of -6..+5 at two attempts)."""
    torch.set_num_threads(1)
    texts = [m["content"] for r in sets["sft"] for m in r["prompt"] + r["completion"]]
    tokenizer = build_tokenizer([*texts, "fail ; no answer value not wrong numbers illegal"])
    model = plain_sft(build_tiny_model(tokenizer, TINY, seed=0), tokenizer, sets["sft"], steps, lr=3e-3)
    save_model(model, tokenizer, parent / f"sft-{steps}")
    return parent / f"sft-{steps}"


def run_files(root: Path) -> RunFiles:
    """A training run's output model, checkpoints and log, all under `root`."""
    return RunFiles(root / "out", root / "work", root / "log")
