#!/usr/bin/env python
"""What only a CUDA machine can show, in one run of a few minutes: the paper-scale code paths on a GPU.

A random model with Qwen2.5-0.5B's shapes (hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864, q/k/v
biases, vocabulary 151,936; the Llama layout, so the word-level tokenizer loads as it is), stored in bf16
as the paper's models are, goes through the workflow's own functions:
  1. bf16 SFT steps (`sft.train`: float32 masters under bf16 autocast): seconds per step, peak memory
     against the memory plan's estimate (`sftrl.capacity`), the loss must fall;
  2. one PPO update with float32 masters (`train_ppo`, dtype bfloat16) at lr 1e-6: peak memory against
     the plan, and the share of weights it moved (plain bf16 weights would round almost every such
     update away);
  3. greedy evaluation through the HF backend, and through vLLM where it is installed: the same replies;
  4. SVD on the GPU against scipy's on the CPU: singular values and reconstruction.
Prints each figure; exits 1 on a mismatch. `--small --device cpu` runs the same checks on a tiny model
(the test suite does, so the script cannot rot on machines without a GPU).
"""

import argparse
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file

from sftrl import capacity, data, io
from sftrl.config import DataConfig, EvalDataConfig, RlDataConfig, SftDataConfig, TaskConfig
from sftrl.evaluate.backends import make_backend
from sftrl.evaluate.engine import EvalConfig, run_episodes
from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer, cast_weights, save_model
from sftrl.rl.ppo import PpoConfig, train_ppo
from sftrl.sft import SftConfig, train, vocabulary_texts
from sftrl.spectral.svd import thin_svd
from sftrl.training_run import RunFiles

# Llama layout with Qwen2's q/k/v biases, so the word-level tokenizer loads as it is
QWEN_05B = TinyModelConfig(
    hidden_size=896,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    intermediate_size=4864,
    max_position_embeddings=2048,
    rope_theta=1e6,
    attention_bias=True,
    vocab_size=151936,
)
SMALL = TinyModelConfig(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    attention_bias=True,
)
TASK = TaskConfig(target=24, style="compact")
SETS = DataConfig(
    sft=SftDataConfig(hands=200, solutions_per_hand=2),
    eval=EvalDataConfig(id=16, id_unseen=16, ood=32, loss_examples=8),
    rl=RlDataConfig(prompts=64),
)


class Check:
    """Figures as they come, and the mismatches that make the run fail."""

    def __init__(self, device: torch.device):
        self.device = device
        self.failures: list[str] = []

    def figure(self, name: str, value) -> None:
        print(f"{name}: {value}", flush=True)

    def expect(self, ok: bool, what: str) -> None:
        print(f"{'ok' if ok else 'MISMATCH'}: {what}", flush=True)
        if not ok:
            self.failures.append(what)

    @contextlib.contextmanager
    def peak(self, name: str, planned: dict[str, float]):
        """Peak GPU memory allocated inside the block (CUDA only), against the memory plan's terms
        (sftrl.capacity; its CUDA context is not allocated memory, so it is left out)."""
        plan = sum(gib for term, gib in planned.items() if term != "context")
        self.figure(
            f"{name} planned memory",
            f"{plan:.2f} GiB ("
            + ", ".join(f"{term} {gib:.2f}" for term, gib in planned.items() if term != "context")
            + ")",
        )
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        yield
        if cuda:
            torch.cuda.synchronize()
            measured = torch.cuda.max_memory_allocated() / 2**30
            self.figure(f"{name} peak memory", f"{measured:.2f} GiB; measured / planned = {measured / plan:.2f}")


def random_model(shapes: TinyModelConfig, records: list[dict], path: Path, seed: int) -> int:
    """The random model in bf16 at `path`; returns its parameter count."""
    tokenizer = build_tokenizer(list(vocabulary_texts(records, TASK.style)))
    model = build_tiny_model(tokenizer, shapes, seed)
    save_model(model, tokenizer, path)
    cast_weights(path, "bfloat16")
    return sum(p.numel() for p in model.parameters())


def shape_of(model: Path) -> capacity.ModelShape:
    return capacity.ModelShape.from_config(json.loads((model / "config.json").read_text()))


def check_sft(check: Check, base: Path, records: list[dict], work: Path, steps: int, batch: int, lr: float) -> Path:
    cfg = SftConfig(
        learning_rate=lr,
        warmup_ratio=0.0,
        per_device_batch_size=batch,
        max_steps=steps,
        save_every=steps,
        extra_steps=(),
        logging_steps=1,
        max_length=128,
        bf16=True,
    )
    tokens = capacity.sft_tokens({"task": asdict(TASK), "sft": {"max_length": cfg.max_length}})
    planned = capacity.training_gib(shape_of(base), "bfloat16", capacity.Training(), batch, tokens)
    start = time.perf_counter()
    with check.peak("bf16 SFT", planned):
        train(
            str(base),
            None,
            records,
            {},
            cfg,
            work / "sft-work",
            lambda s: work / "sft" if s == steps else None,
            work / "sft.jsonl",
            dtype="bfloat16",
        )
    seconds = time.perf_counter() - start
    losses = [row["loss"] for row in io.read_jsonl(work / "sft.jsonl") if "loss" in row]
    check.figure(
        "bf16 SFT",
        f"{steps} steps x {batch}: {seconds / steps:.2f} s a step (loading included); loss {losses[0]:.3f} -> {losses[-1]:.3f}",
    )
    check.expect(losses[-1] < losses[0], "bf16 SFT lowers the loss")
    return work / "sft"


def check_ppo(check: Check, start: Path, prompts: list[dict], work: Path) -> None:
    cfg = PpoConfig(
        learning_rate=1e-6,
        updates=1,
        episodes_per_update=8,
        minibatch_size=8,
        ppo_epochs=1,
        max_new_tokens=32,
        generation_batch_size=8,
        save_every=1,
        seed=0,
    )
    tokens = capacity.text_tokens({"task": asdict(TASK)}, cfg.max_new_tokens)
    planned = capacity.ppo_gib(
        shape_of(start), "bfloat16", capacity.Training(), cfg.minibatch_size, cfg.generation_batch_size, tokens
    )
    with check.peak("PPO update (fp32 masters)", planned):
        train_ppo(
            start,
            prompts,
            TASK,
            cfg,
            RunFiles(work / "ppo", work / "ppo-work", work / "ppo.jsonl"),
            dtype="bfloat16",
            device=str(check.device),
        )
    # the export is bf16 again; the checkpoint keeps the float32 masters the update moved
    before = load_file(str(start / "model.safetensors"))
    after = load_file(str(next((work / "ppo-work").glob("checkpoint-*")) / "model" / "model.safetensors"))
    moved = sum(int((after[n].float() != before[n].float()).sum()) for n in before if before[n].is_floating_point())
    total = sum(before[n].numel() for n in before if before[n].is_floating_point())
    check.figure("PPO update at lr 1e-6", f"moved {moved:,} of {total:,} weights ({100 * moved / total:.1f}%)")
    check.expect(moved > 0.9 * total, "float32 masters keep a 1e-6 update (over 90% of the weights move)")


def play(model: Path, episodes: list[dict], backend: str, device: torch.device) -> list[list[str]]:
    cfg = EvalConfig(batch_size=64, max_new_tokens=32, backend=backend, dtype="float32", device=str(device))
    return [[t.reply for t in r.turns] for r in run_episodes(make_backend(model, cfg), episodes, TASK, progress=False)]


def check_eval(check: Check, model: Path, episodes: list[dict]) -> None:
    start = time.perf_counter()
    hf = play(model, episodes, "hf", check.device)
    check.figure(
        "HF greedy evaluation",
        f"{len(episodes)} episodes, {sum(map(len, hf))} replies in {time.perf_counter() - start:.1f} s",
    )
    try:
        import vllm  # noqa: F401
    except ImportError:
        check.figure("vLLM", "not installed: comparison skipped")
        return
    vl = play(model, episodes, "vllm", check.device)
    same = sum(a == b for a, b in zip(hf, vl, strict=False))
    check.figure("HF vs vLLM", f"{same} of {len(hf)} episodes with the same replies")
    check.expect(same >= 0.95 * len(hf), "vLLM replies as the HF backend does (95% of episodes or more)")


def check_svd(check: Check, model: Path) -> None:
    weights = load_file(str(model / "model.safetensors"))
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight"):
        w = weights[name].float()
        cpu = thin_svd(w)
        start = time.perf_counter()
        gpu = thin_svd(w.to(check.device)).to("cpu")
        seconds = time.perf_counter() - start
        rel = float(((gpu.s - cpu.s).abs() / cpu.s.max()).max())
        rebuilt = float(((gpu.u * gpu.s) @ gpu.vh - w).norm() / w.norm())
        check.figure(
            f"SVD {name} {tuple(w.shape)}",
            f"{check.device.type} {seconds:.2f} s; singular values vs CPU max rel. diff {rel:.1e}; reconstruction {rebuilt:.1e}",
        )
        check.expect(rel < 1e-4 and rebuilt < 1e-4, f"{check.device.type} SVD of {name} agrees with scipy's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--device", default="cuda", help="cuda (the check) or cpu (with --small: a dry run of the script)"
    )
    parser.add_argument("--small", action="store_true", help="a tiny model instead of the 0.5B one")
    parser.add_argument("--sft-steps", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "no CUDA device: run on a GPU machine, or pass --device cpu --small\n")
    check = Check(device)
    check.figure("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    sets = data.build_datasets(0, TASK, SETS)
    records = sets["sft"]
    episodes = [*sets["eval_id"], *sets["eval_ood"]]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params = random_model(SMALL if args.small else QWEN_05B, [*records, *episodes], work / "base", 0)
        check.figure("model", f"{params / 1e6:.1f}M parameters, bf16")
        batch, lr = (8, 1e-3) if args.small else (16, 1e-4)
        trained = check_sft(check, work / "base", records, work, args.sft_steps, batch, lr)
        check_ppo(check, trained, sets["rl_prompts"], work)
        check_eval(check, trained, episodes)
        check_svd(check, trained)
    if check.failures:
        print(f"{len(check.failures)} mismatch(es): " + "; ".join(check.failures), file=sys.stderr)
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
