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

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from sftrl import cards, io, training_run
from sftrl.checkpoints import mark_complete, model_dir_identity
from sftrl.config import TaskConfig, from_dict
from sftrl.modeling import check_model_dir, load_model
from sftrl.rl import check_prompts
from sftrl.trainer_args import OptimiserConfig, master_dtype, optimiser_args

log = logging.getLogger(__name__)

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo")
SCALE_REWARDS = ("group", "batch", "none")


@dataclass(frozen=True)
class GrpoConfig(OptimiserConfig):
    """GRPO settings; the defaults are the `rl.grpo` section of config.yaml (the tiny CPU run).

    `per_device_train_batch_size` counts completions (TRL >= 0.16), so one optimizer step sees
    `per_device_train_batch_size * gradient_accumulation_steps / num_generations` prompts per process.
    """

    per_device_train_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    num_generations: int = 8  # completions per prompt: the group its rewards are normalised in
    num_iterations: int = 1  # optimiser passes over each batch of completions
    max_steps: int = 30
    max_completion_length: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.0  # KL penalty to the start model; 0 loads no reference model
    epsilon: float = 0.2  # the clip range of the policy ratio
    loss_type: str = "dapo"
    scale_rewards: str = "group"  # advantages divided by the reward std of the group, the batch, or not at all
    save_every: int = 10
    save_total_limit: int = 2
    logging_steps: int = 1
    bf16: bool = False
    seed: int = 0

    def __post_init__(self):
        problems = self.optimiser_problems()
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
        if not self.epsilon > 0:
            problems.append(f"epsilon must be positive, not {self.epsilon}")
        if self.beta < 0:
            problems.append(f"beta must be non-negative, not {self.beta}")
        if problems:
            raise ValueError("rl.grpo: " + "; ".join(problems))


def settings(section: dict, seed: int) -> GrpoConfig:
    """GrpoConfig from the config's `rl.grpo` section; unknown keys are an error, the seed is the run's."""
    return from_dict(GrpoConfig, {**section, "seed": seed}, "rl.grpo")


def reward_function(task: TaskConfig):
    """TRL reward function: the verifier's reward of each completion for its row's hand, rule and target
    (in the task's layout where it is strict).

    `rule` may be a dict or its JSON text (the dataset stores JSON text).
    """
    rewards = task.rewards

    def verifier(completions, hand, rule, target, **_) -> list[float]:
        scores = []
        for completion, row_hand, row_rule, row_target in zip(completions, hand, rule, target, strict=False):
            text = completion[-1]["content"] if isinstance(completion, list) else completion
            row_rule = json.loads(row_rule) if isinstance(row_rule, str) else row_rule
            verdict = cards.verify(text, row_hand, cards.Rule(**row_rule), row_target, rewards, task.layout)
            scores.append(float(verdict.reward))
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


# GrpoConfig fields that TRL's GRPOConfig takes under the same name.
TRL_FIELDS = (
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_generations",
    "num_iterations",
    "max_completion_length",
    "temperature",
    "top_p",
    "beta",
    "epsilon",
    "loss_type",
    "scale_rewards",
    "logging_steps",
    "save_total_limit",
)


def trainer_config(cfg: GrpoConfig, work_dir: Path) -> GRPOConfig:
    """TRL arguments with every value that matters stated; TRL's own defaults moved between releases."""
    return GRPOConfig(
        output_dir=str(work_dir),
        **{name: getattr(cfg, name) for name in TRL_FIELDS},
        top_k=0,
        repetition_penalty=1.0,
        **optimiser_args(cfg, cfg.seed, cfg.bf16),
        activation_checkpointing=False,
        gradient_checkpointing=False,  # TRL's own default for this alias is True
        use_vllm=False,
        shuffle_dataset=True,
        remove_unused_columns=False,
        logging_strategy="steps",
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_every,
        save_only_model=False,
        eval_strategy="no",
        report_to=[],
        log_completions=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def fingerprint(cfg: GrpoConfig, task: TaskConfig, prompts: Sequence[dict], start: str) -> str:
    """Identity of a run: its settings, task, start model and prompts."""
    return training_run.fingerprint(
        {"grpo": asdict(cfg), "task": asdict(task), "start": start},
        ([r["prompt"], r["hand"], r["rule"], r.get("target")] for r in prompts),
    )


def write_log(log_path: str | os.PathLike, history: Sequence[dict]) -> None:
    """One JSONL row per logged step (TRL's entries; the run summary, which has no reward, left out)."""
    io.write_jsonl(log_path, [entry for entry in history if "reward" in entry])


class MarkComplete(TrainerCallback):
    """Marks each checkpoint complete once TRL has written it."""

    def __init__(self, work_dir: Path, run: str):
        self.work_dir, self.run = work_dir, run

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            mark_complete(self.work_dir / f"checkpoint-{state.global_step}", state.global_step, self.run)
        return control


class ExportAlong(TrainerCallback):
    """Exports the policy after each step the run exports (`RunFiles.exports`), in the model's dtype."""

    def __init__(self, tokenizer, files: training_run.RunFiles, run: str, dtype: str):
        self.tokenizer, self.files, self.run, self.dtype = tokenizer, files, run, dtype

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero and model is not None:
            training_run.export_along(model, self.tokenizer, self.files, self.run, state.global_step, self.dtype)
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
    files: training_run.RunFiles,
    dtype: str = "float32",
    trust_remote_code: bool = False,
) -> GrpoResult:
    """GRPO from `start_model_dir`; the final policy goes to `files.out_dir` as a Hugging Face directory."""
    check_prompts(prompts, task)
    start = check_model_dir(start_model_dir)
    run = fingerprint(cfg, task, prompts, model_dir_identity(start))
    main_process = training_run.launched_as_main()
    resume = training_run.resume_point(files.work_dir, run, main_process)
    history = training_run.finished_history(resume, cfg.max_steps)
    if main_process:
        done = int(resume.name.split("-")[1]) if resume is not None else 0
        training_run.publish_exports(files, run, done)
    if history is not None:
        if main_process:
            write_log(files.log_path, history)
            model, tokenizer = load_model(cast(Path, resume), master_dtype(dtype), trust_remote_code=trust_remote_code)
            training_run.export_model(model, tokenizer, files, dtype)
        return GrpoResult(cfg.max_steps, resume, run)
    if resume is not None:
        log.info("resuming from %s", resume)

    # float32 master weights for a half-precision model (`master_dtype`); `bf16` is the compute dtype
    model, tokenizer = load_model(start, master_dtype(dtype), trust_remote_code=trust_remote_code)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward_function(task)],
        args=trainer_config(cfg, files.work_dir),
        train_dataset=prompt_dataset(prompts, task),
        processing_class=tokenizer,
        callbacks=[
            MarkComplete(files.work_dir, run),
            ExportAlong(tokenizer, files, run, dtype),
            training_run.LogCallback(files.log_path, write_log),
            *([training_run.TrackerCallback(files.tracker)] if files.tracker is not None else []),
        ],
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if trainer.is_world_process_zero():
        write_log(files.log_path, trainer.state.log_history)
        training_run.export_model(trainer.model, tokenizer, files, dtype)
    return GrpoResult(trainer.state.global_step, resume, run)
