#!/usr/bin/env python
"""Throughput of the batched evaluation engine against one-prompt-at-a-time generation.

Batched: all live episodes advance one turn per call, each keeping its KV cache between turns (the
default `eval` settings). One at a time: `model.generate` on one conversation per call, re-encoding it
every turn (the reference implementation's way). Both play the same episodes with greedy decoding on the
same model; the script checks that their replies and verdicts are identical, then prints the median wall
time of each and the speed ratio.
A random-weight model never emits eos, so every reply runs to --max-new-tokens in both paths (a fair
comparison; pass --model with a trained directory for realistic reply lengths and early successes).

    PYTHONPATH=src python benchmarks/eval_throughput.py [--model DIR] [--episodes 64] [--threads 2]
"""

import argparse
import random
import statistics
import sys
import time
from dataclasses import replace

import torch

from sftrl import cards, data
from sftrl.config import TaskConfig
from sftrl.evaluate import EvalConfig, run_episodes, run_episodes_sequential
from sftrl.evaluate.backends import HFBackend
from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer, load_model


def eval_records(n: int, rule: str, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        data.episode_record(f"{rule}-{i:05d}", tuple(cards.deal(rng, cards.RULES[rule], 24)), cards.RULES[rule], 24)
        for i in range(n)
    ]


def random_model(records: list[dict], style: str, seed: int, shape: TinyModelConfig):
    """A tiny model with random weights, its vocabulary covering the prompts and answers."""
    texts = []
    for r in records:
        rule = cards.Rule(**r["rule"])
        texts.append(cards.prompt(r["hand"], rule, 24, style))
        texts.append(cards.answer(r["hand"], rule, cards.solutions(r["hand"], rule, 24)[0], 24, style))
    tokenizer = build_tokenizer(texts)
    model = build_tiny_model(tokenizer, shape, seed=seed).eval()
    return model, tokenizer


def timed(run, backend, records, task) -> tuple[float, list[dict], int]:
    tokens = backend.tokens_generated
    start = time.perf_counter()
    results = run(backend, records, task, progress=False)
    return time.perf_counter() - start, [r.to_record() for r in results], backend.tokens_generated - tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained model directory (default: random-weight tiny model)")
    parser.add_argument("--episodes", type=int, default=128)
    parser.add_argument("--rule", choices=sorted(cards.RULES), default="ood")
    parser.add_argument("--style", choices=cards.STYLES, default="compact")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="the compact answer is ~25 tokens")
    parser.add_argument("--batch-size", type=int, default=512, help="the default eval.batch_size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, help="random model only (default: TinyModelConfig's)")
    parser.add_argument("--layers", type=int, help="random model only (default: TinyModelConfig's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    records = eval_records(args.episodes, args.rule, args.seed)
    if args.model:
        model, tokenizer = load_model(args.model, dtype="float32", device="cpu")
    else:
        shape = TinyModelConfig()
        if args.hidden_size:
            shape = replace(shape, hidden_size=args.hidden_size, intermediate_size=3 * args.hidden_size)
        if args.layers:
            shape = replace(shape, num_hidden_layers=args.layers)
        model, tokenizer = random_model(records, args.style, args.seed, shape)
    task = TaskConfig(style=args.style)
    cfg = EvalConfig(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, seed=args.seed)
    backend = HFBackend(model, tokenizer, cfg)
    timed(run_episodes, HFBackend(model, tokenizer, replace(cfg, max_new_tokens=2)), records[:2], task)  # warm-up

    times: dict[str, list[float]] = {"batched": [], "sequential": []}
    tokens = {}
    for repeat in range(args.repeats):
        wall_b, out_b, tokens["batched"] = timed(run_episodes, backend, records, task)
        wall_s, out_s, tokens["sequential"] = timed(run_episodes_sequential, backend, records, task)
        if out_b != out_s:
            sys.exit(f"repeat {repeat}: batched and sequential greedy replies differ")
        times["batched"].append(wall_b)
        times["sequential"].append(wall_s)
        print(f"repeat {repeat + 1}: batched {wall_b:.2f}s, sequential {wall_s:.2f}s", flush=True)

    params = sum(p.numel() for p in model.parameters())
    attempts = sum(r["attempts"] for r in out_b)
    print(
        f"\nmodel: {args.model or 'random tiny'}, {params / 1e6:.2f}M parameters; "
        f"{args.episodes} {args.style} {args.rule} episodes, {attempts} attempts, max_new_tokens "
        f"{args.max_new_tokens}, batch_size {args.batch_size}, {args.threads} thread(s); replies identical"
    )
    for path in ("batched", "sequential"):
        median = statistics.median(times[path])
        print(
            f"{path:>10}: median {median:7.2f}s over {args.repeats} runs, "
            f"{tokens[path]} tokens, {tokens[path] / median:7.0f} generated tokens/s"
        )
    ratio = statistics.median(times["sequential"]) / statistics.median(times["batched"])
    print(f"speed-up (sequential / batched median): {ratio:.1f}x")


if __name__ == "__main__":
    main()
