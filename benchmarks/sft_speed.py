#!/usr/bin/env python
"""SFT throughput of the tiny model: optimizer steps per second with the workflow's trainer settings.

Times steps after a warm-up inside the training loop (a callback clocks each step end), so dataset
preparation and checkpointing are not counted; prints the median over repeated runs.
"""

import argparse
import random
import statistics
import tempfile
import time
from dataclasses import replace

import torch
from transformers import TrainerCallback
from transformers.utils import logging as hf_logging
from trl import SFTTrainer

from sftrl import cards, data, sft
from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer


class StepClock(TrainerCallback):
    def __init__(self):
        self.times = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def compact_records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rule = cards.RULES["id"]
    records = []
    for i in range(n):
        hand = tuple(cards.deal(rng, rule, 24))
        formula = rng.choice(cards.solutions(hand, rule, 24))
        records.append(data.example(f"b{i}", hand, rule, 24, formula, "compact"))
    return records


def steps_per_second(records, batch_size: int, steps: int, warmup: int, seed: int) -> float:
    tokenizer = build_tokenizer(sft.record_texts(records))
    model = build_tiny_model(tokenizer, TinyModelConfig(), seed)
    cfg = replace(
        sft.SftConfig(),
        per_device_batch_size=batch_size,
        max_steps=warmup + steps,
        save_every=warmup + steps,
        extra_steps=(),
        logging_steps=10**6,
        seed=seed,
    )
    clock = StepClock()
    with tempfile.TemporaryDirectory() as work:
        args = replace(sft.trainer_config(cfg, work), disable_tqdm=True, logging_first_step=False)
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=sft.prompt_completion_dataset(records),
            processing_class=tokenizer,
            callbacks=[clock],
        )
        trainer.train()
    return steps / (clock.times[-1] - clock.times[warmup - 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=900)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)

    records = compact_records(args.examples, seed=0)
    rates = [steps_per_second(records, args.batch_size, args.steps, args.warmup, seed) for seed in range(args.repeats)]
    median = statistics.median(rates)
    print(f"runs (steps/s): {', '.join(f'{r:.2f}' for r in rates)}")
    print(f"tiny model SFT, batch {args.batch_size}, {args.threads} thread(s): {median:.2f} steps/s (median)")


if __name__ == "__main__":
    main()
