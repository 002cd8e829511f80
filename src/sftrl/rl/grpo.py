"""GRPO through TRL's GRPOTrainer, with the GeneralPoints verifier as the reward function.

Single-turn: each prompt is the episode's first attempt only (no feedback turn, no retry); the reward of a
completion is `cards.verify(completion, hand, rule, target, rewards).reward`, and TRL normalises it within
the group of `num_generations` completions of the same prompt. Every GRPO setting whose TRL default has
moved between releases is stated in `GrpoConfig` and passed explicitly.

Resumable like the SFT stage: TRL writes `work_dir/checkpoint-{step}` every `save_every` steps, a callback
marks each complete once TRL has finished it (`sftrl.checkpoints.COMPLETE_MARKER`), and a rerun resumes from the
newest complete checkpoint of the same run; half-written ones are removed first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from sftrl import cards, io
from sftrl.checkpoints import discard_unusable, last_complete, mark_complete, model_dir_identity
from sftrl.config import TaskConfig, from_dict
from sftrl.modeling import check_model_dir, load_model
from sftrl.rl import check_prompts
from sftrl.rl.ppo import export
from sftrl.trainer_args import master_dtype, optimiser_args

log = logging.getLogger(__name__)

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo")
SCALE_REWARDS = ("group", "batch", "none")


@dataclass(frozen=True)
class GrpoConfig:
    """GRPO settings; defaults size the tiny CPU run.

    `per_device_train_batch_size` counts completions (TRL >= 0.16), so one optimizer step sees
    `per_device_train_batch_size * gradient_accumulation_steps / num_generations` prompts per process.
    """

    learning_rate: float = 1e-4
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    per_device_train_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    num_generations: int = 8
    num_iterations: int = 1
    max_steps: int = 50
    max_completion_length: int = 40
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.0
    epsilon: float = 0.2
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    save_every: int = 25
    save_total_limit: int = 2
    logging_steps: int = 1
    bf16: bool = False
    seed: int = 0

    def __post_init__(self):
        problems = []
        for name in (
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "num_iterations",
            "max_steps",
            "max_completion_length",
            "save_every",
            "logging_steps",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.num_generations < 2:
            problems.append(
                f"num_generations must be at least 2 (a group needs a baseline), not {self.num_generations}"
            )
        world = int(os.environ.get("WORLD_SIZE", "1"))
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps * world
        if self.num_generations >= 2 and batch % self.num_generations:
            problems.append(
                f"the batch of completions per step (per_device_train_batch_size {self.per_device_train_batch_size}"
                f" x gradient_accumulation_steps {self.gradient_accumulation_steps} x {world} processes = {batch})"
                f" must be a multiple of num_generations ({self.num_generations})"
            )
        if self.save_total_limit < 2:
            problems.append("save_total_limit must be at least 2 so a complete checkpoint always exists")
        if not self.temperature > 0:
            problems.append(f"temperature must be positive (GRPO samples a group), not {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], not {self.top_p}")
        if self.loss_type not in LOSS_TYPES:
            problems.append(f"loss_type must be one of {LOSS_TYPES}, not {self.loss_type!r}")
        if self.scale_rewards not in SCALE_REWARDS:
            problems.append(f"scale_rewards must be one of {SCALE_REWARDS}, not {self.scale_rewards!r}")
        for name in ("learning_rate", "epsilon"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, not {getattr(self, name)}")
        if self.beta < 0:
            problems.append(f"beta must be non-negative, not {self.beta}")
        if problems:
            raise ValueError("rl.grpo: " + "; ".join(problems))


def settings(section: dict, seed: int) -> GrpoConfig:
    """GrpoConfig from the config's `rl.grpo` section; unknown keys are an error, the seed is the run's."""
    return from_dict(GrpoConfig, {**section, "seed": seed}, "rl.grpo")


def reward_function(task: TaskConfig):
    """TRL reward function: the verifier's reward of each completion for its row's hand, rule and target.

    `rule` may be a dict or its JSON text (the dataset stores JSON text).
    """
    rewards = task.rewards

    def verifier(completions, hand, rule, target, **_) -> list[float]:
        scores = []
        for completion, row_hand, row_rule, row_target in zip(completions, hand, rule, target, strict=False):
            text = completion[-1]["content"] if isinstance(completion, list) else completion
            row_rule = json.loads(row_rule) if isinstance(row_rule, str) else row_rule
            scores.append(float(cards.verify(text, row_hand, cards.Rule(**row_rule), row_target, rewards).reward))
        return scores

    return verifier


def prompt_dataset(prompts: Sequence[dict], task: TaskConfig) -> Dataset:
    """The conversational `prompt` column plus what the reward function needs, one row per RL prompt."""
    return Dataset.from_list(
        [
            {
                "prompt": record["prompt"],
                "hand": list(record["hand"]),
                "rule": io.dumps(record["rule"]),
                "target": record.get("target", task.target),
            }
            for record in prompts
        ]
    )


def trainer_config(cfg: GrpoConfig, work_dir: Path) -> GRPOConfig:
    """TRL arguments with every value that matters stated; TRL's own defaults moved between releases."""
    return GRPOConfig(
        output_dir=str(work_dir),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_generations=cfg.num_generations,
        num_iterations=cfg.num_iterations,
        max_completion_length=cfg.max_completion_length,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=0,
        repetition_penalty=1.0,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        **optimiser_args(cfg),
        activation_checkpointing=False,
        gradient_checkpointing=False,  # TRL's own default for this alias is True
        use_vllm=False,
        shuffle_dataset=True,
        remove_unused_columns=False,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_every,
        save_total_limit=cfg.save_total_limit,
        save_only_model=False,
        eval_strategy="no",
        report_to=[],
        log_completions=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def fingerprint(cfg: GrpoConfig, task: TaskConfig, prompts: Sequence[dict], start: str) -> str:
    """Identity of a run: what a checkpoint must share with the run that resumes from it."""
    digest = hashlib.sha256(io.dumps({"grpo": asdict(cfg), "task": asdict(task), "start": start}).encode())
    for record in prompts:
        digest.update(io.dumps([record["prompt"], record["hand"], record["rule"], record.get("target")]).encode())
    return digest.hexdigest()[:16]


def write_log(log_path: str | os.PathLike, history: Sequence[dict]) -> None:
    """One JSONL row per logged step (TRL's entries; the run summary, which has no reward, left out)."""
    io.write_jsonl(log_path, [entry for entry in history if "reward" in entry])


class Bookkeeping(TrainerCallback):
    """Marks each checkpoint complete after TRL has written it, and rewrites the log at every logging event."""

    def __init__(self, work_dir: Path, run: str, log_path: Path):
        self.work_dir, self.run, self.log_path = work_dir, run, log_path

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            mark_complete(self.work_dir / f"checkpoint-{state.global_step}", state.global_step, self.run)
        return control

    def on_log(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            write_log(self.log_path, state.log_history)
        return control


@dataclass
class GrpoResult:
    steps: int
    resumed_from: Path | None
    fingerprint: str


def train_grpo(
    start_model_dir: str | os.PathLike,
    prompts: Sequence[dict],
    task: TaskConfig,
    cfg: GrpoConfig,
    out_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    log_path: str | os.PathLike,
    provenance: dict | None = None,
    dtype: str = "float32",
    trust_remote_code: bool = False,
) -> GrpoResult:
    """GRPO from `start_model_dir`; the final policy goes to `out_dir` as a Hugging Face directory."""
    check_prompts(prompts, task)
    start = check_model_dir(start_model_dir)
    work_dir, log_path = Path(work_dir), Path(log_path)
    run = fingerprint(cfg, task, prompts, model_dir_identity(start))
    main_process = int(os.environ.get("RANK", "0")) == 0
    if main_process:
        discard_unusable(work_dir, run)
    resume = last_complete(work_dir, run)
    if resume is not None and resume.name == f"checkpoint-{cfg.max_steps}":
        # TRL would take one more step when resumed at max_steps; the run is done: export it.
        log.info("training already complete in %s", resume)
        if main_process:
            write_log(log_path, io.read_json(resume / "trainer_state.json")["log_history"])
            model, tokenizer = load_model(resume, master_dtype(dtype), trust_remote_code=trust_remote_code)
            export(model, tokenizer, out_dir, provenance, dtype)
        return GrpoResult(cfg.max_steps, resume, run)
    if resume is not None:
        log.info("resuming from %s", resume)

    # float32 master weights for a half-precision model (`master_dtype`); `bf16` is the compute dtype
    model, tokenizer = load_model(start, master_dtype(dtype), trust_remote_code=trust_remote_code)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward_function(task)],
        args=trainer_config(cfg, work_dir),
        train_dataset=prompt_dataset(prompts, task),
        processing_class=tokenizer,
        callbacks=[Bookkeeping(work_dir, run, log_path)],
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if trainer.is_world_process_zero():
        write_log(log_path, trainer.state.log_history)
        export(trainer.model, tokenizer, out_dir, provenance, dtype)
    return GrpoResult(trainer.state.global_step, resume, run)
