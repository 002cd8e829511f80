#!/usr/bin/env python
"""The memory plan (`sftrl.capacity`) against measured peaks, on the CPU: a random Llama-layout model of
19M parameters (hidden 256, 4 layers, vocabulary 32,000, untied), each case in a fresh process.

- train: one AdamW step (forward, backward, step) in float32 on `--batch` x `--tokens` tokens: the plan's
  weights, gradients, Adam states and activations;
- generate: greedy generation of `--new-tokens` tokens for `--gen-batch` prompts of `--prompt-tokens`:
  weights, KV cache and one step's logits.
Measured: the growth of the process's peak resident memory (ru_maxrss) over its resident memory before the
model is built; planned: the plan's terms without its CUDA context. Prints both and measured / planned.
The CPU allocator is not CUDA's, so this checks the terms, not a GPU's reserve; `gpu_check.py` compares
the plan with torch.cuda's peak on a GPU.
"""

import argparse
import json
import resource
import subprocess
import sys

MODEL = dict(
    vocab_size=32000,
    hidden_size=256,
    intermediate_size=704,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=1,
    tie_word_embeddings=False,
)


def resident_kib() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() // 1024


def measure(case: str, args) -> dict:
    """Run in the child: build, measure, return GiB measured and planned."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from sftrl import capacity

    torch.set_num_threads(1)
    torch.manual_seed(0)
    before = resident_kib()
    config = LlamaConfig(**MODEL)  # type: ignore[arg-type]
    model = LlamaForCausalLM(config)
    shape = capacity.ModelShape.from_config(config.to_dict())
    if case == "train":
        ids = torch.randint(MODEL["vocab_size"], (args.batch, args.tokens))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        planned = capacity.training_gib(shape, "float32", capacity.Training(), args.batch, args.tokens)
    else:
        ids = torch.randint(MODEL["vocab_size"], (args.gen_batch, args.prompt_tokens))
        model.eval()
        with torch.no_grad():
            model.generate(  # type: ignore[misc]
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                use_cache=True,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                pad_token_id=0,
            )
        planned = capacity.generation_gib(shape, "float32", args.gen_batch, args.prompt_tokens + args.new_tokens)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    planned.pop("context")
    return {
        "case": case,
        "params": shape.params,
        "measured_gib": (peak - before) / 2**20,
        "planned_gib": sum(planned.values()),
        "terms": planned,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--gen-batch", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=448)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--child", choices=["train", "generate"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return
    for case in ("train", "generate"):
        out = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--child", case], capture_output=True, text=True, check=True
        ).stdout
        row = json.loads(out.splitlines()[-1])
        terms = ", ".join(f"{name} {gib:.3f}" for name, gib in row["terms"].items())
        print(
            f"{case:<9} {row['params'] / 1e6:.1f}M parameters: measured {row['measured_gib']:.3f} GiB, planned "
            f"{row['planned_gib']:.3f} GiB ({terms}); measured / planned = {row['measured_gib'] / row['planned_gib']:.2f}"
        )


if __name__ == "__main__":
    main()
