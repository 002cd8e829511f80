#!/usr/bin/env python
"""Seconds per PPO update and per GRPO step on the tiny model (TinyModelConfig defaults, compact style),
with the default `rl.ppo` / `rl.grpo` settings of the tiny run; prints the median of several. PPO runs
twice on the same rollouts: scoring each minibatch in groups of turns of similar length, as it does, and in
one batch padded to its longest turn (`rollout.length_groups` with calls priced above any padding).

Reply length drives the cost, so the model is first given 150 steps of plain SFT (or pass
--start to time a checkpoint of your own); a freshly initialised model would write `max_new_tokens`
of noise every turn.
"""

import argparse
import logging
import statistics
import tempfile
from pathlib import Path

import torch

from sftrl import data
from sftrl.config import DataConfig, EvalDataConfig, TaskConfig
from sftrl.io import read_jsonl
from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer, save_model
from sftrl.rl import ppo as ppo_module
from sftrl.rl.grpo import GrpoConfig, train_grpo
from sftrl.rl.ppo import PpoConfig, train_ppo
from sftrl.sft import plain_sft
from sftrl.training_run import RunFiles


def sft_start(records: list[dict], path: Path, steps: int, seed: int) -> Path:
    """The tiny model after `steps` of completion-only SFT (batch 32, lr 2e-3): answers in format."""
    texts = [m["content"] for r in records for m in r["prompt"] + r["completion"]]
    tokenizer = build_tokenizer(texts)
    model = build_tiny_model(tokenizer, TinyModelConfig(), seed)
    save_model(plain_sft(model, tokenizer, records, steps, lr=2e-3, batch=32, seed=seed), tokenizer, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--start", type=Path, help="a model directory to time (default: the tiny model after SFT)")
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3, help="PPO updates / GRPO steps timed")
    parser.add_argument("--max-attempts", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small ops: 1 is often fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)

    task = TaskConfig(style="compact", max_attempts=args.max_attempts)
    sets = data.build_datasets(
        args.seed, task, DataConfig(eval=EvalDataConfig(id=4, id_unseen=4, ood=4, loss_examples=2))
    )
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        start = args.start or sft_start(sets["sft"], tmp / "start", args.sft_steps, args.seed)
        ppo = PpoConfig(updates=args.repeats, save_every=args.repeats, seed=args.seed)
        runs = {}
        for name, call_tokens in (("one batch", 10**9), ("grouped", ppo_module.CALL_TOKENS)):
            ppo_module.CALL_TOKENS, kept = call_tokens, ppo_module.CALL_TOKENS
            files = RunFiles(tmp / name, tmp / f"{name}-work", tmp / f"{name}.jsonl")
            runs[name] = train_ppo(start, sets["rl_prompts"], task, ppo, files).log
            ppo_module.CALL_TOKENS = kept
        rows, padded = runs["grouped"], runs["one batch"]
        if [r["episode_reward"] for r in rows] != [r["episode_reward"] for r in padded]:
            print("note: the two PPO runs played different episodes (float rounding moved a sample)")
        grpo = GrpoConfig(max_steps=args.repeats, save_every=args.repeats, seed=args.seed)
        single = TaskConfig(style="compact", max_attempts=1)
        train_grpo(
            start, sets["rl_prompts"], single, grpo, RunFiles(tmp / "grpo", tmp / "grpo-work", tmp / "grpo.jsonl")
        )
        steps = [row["step_time"] for row in read_jsonl(tmp / "grpo.jsonl")]

    print(f"threads {torch.get_num_threads()}, start {'given' if args.start else f'tiny + {args.sft_steps} SFT steps'}")
    print(
        f"PPO  ({ppo.episodes_per_update} episodes x up to {task.max_attempts} turns, {ppo.ppo_epochs} epochs): "
        f"{statistics.median(r['seconds'] for r in rows):.2f} s/update (median of {len(rows)}), "
        f"rollout {statistics.median(r['rollout_seconds'] for r in rows):.2f} s, "
        f"{statistics.median(r['mean_turns'] for r in rows):.2f} turns/episode, "
        f"{statistics.median(r['tokens_per_s'] for r in rows):.0f} generated tokens/s; "
        f"a {PpoConfig().updates}-update run ~{PpoConfig().updates * statistics.median(r['seconds'] for r in rows):.0f} s"
    )
    grouped, whole = (statistics.median(r["seconds"] - r["rollout_seconds"] for r in log) for log in (rows, padded))
    print(
        f"PPO scoring and training: {grouped:.2f} s/update in length groups, {whole:.2f} s in one padded batch "
        f"per minibatch ({whole / grouped:.2f}x)"
    )
    print(
        f"GRPO ({grpo.per_device_train_batch_size} completions = {grpo.per_device_train_batch_size // grpo.num_generations}"
        f" prompts x {grpo.num_generations}): {statistics.median(steps):.2f} s/step (median of {len(steps)}); "
        f"a {GrpoConfig().max_steps}-step run ~{GrpoConfig().max_steps * statistics.median(steps):.0f} s"
    )


if __name__ == "__main__":
    main()
