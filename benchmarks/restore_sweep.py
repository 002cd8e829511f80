#!/usr/bin/env python
"""A grid of N restoration edits in one `apply_edits` pass against N independent edits.

The sweep reads each tensor and computes each SVD once for all N outputs; independent runs (a fresh
SVD cache each, as N separate jobs would have) repeat the SVDs N times. Prints both wall times and
checks that both give bit-identical model directories.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer, save_model
from sftrl.restoration.apply import apply_edits
from sftrl.restoration.spec import EditSpec
from sftrl.spectral.svd import SvdCache
from sftrl.spectral.weights import ModelWeights

GRID = [
    EditSpec("direction", top=0.2),
    EditSpec("direction", tail=0.2),
    EditSpec("direction", top=0.2, tail=0.2),
    EditSpec("direction", top=0.05),
    EditSpec("triplet", top=0.2),
    EditSpec("value", top=1.0),
    EditSpec("layer", layers=0.25),
    EditSpec("layer", layers="0.25:0.5"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--edits", type=int, default=len(GRID), help=f"first N of the {len(GRID)}-edit grid")
    args = parser.parse_args()
    specs = GRID[: args.edits]
    cfg = TinyModelConfig(
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        intermediate_size=3 * args.hidden,
        num_attention_heads=6,
        num_key_value_heads=2,
    )
    tokenizer = build_tokenizer(["a b c"])
    with tempfile.TemporaryDirectory(prefix="restore-sweep-") as tmp:
        root = Path(tmp)
        for name, seed in (("source", 1), ("target", 2)):
            save_model(build_tiny_model(tokenizer, cfg, seed).to(torch.bfloat16), tokenizer, root / name)
        params = sum(torch.Size(i.shape).numel() for i in ModelWeights(root / "target").infos.values())
        print(
            f"pair of {params / 1e6:.1f}M-parameter bf16 models "
            f"(hidden {args.hidden}, {args.layers} layers), {len(specs)} edits"
        )

        start = time.perf_counter()
        sweep_cache = SvdCache()
        apply_edits(root / "source", root / "target", specs, [root / "sweep" / s.name for s in specs], sweep_cache)
        sweep = time.perf_counter() - start

        start = time.perf_counter()
        computed = 0
        for spec in specs:
            cache = SvdCache()
            apply_edits(root / "source", root / "target", [spec], [root / "single" / spec.name], cache)
            computed += cache.computed
        single = time.perf_counter() - start

        for spec in specs:
            a, b = ModelWeights(root / "sweep" / spec.name), ModelWeights(root / "single" / spec.name)
            assert all(torch.equal(a.get(n), b.get(n)) for n in a.names), spec.name
    print(f"sweep (one pass):   {sweep:6.1f}s, {sweep_cache.computed} SVDs")
    per_edit = single / len(specs)
    print(f"{len(specs)} independent runs: {single:6.1f}s, {computed} SVDs ({per_edit:.1f}s per edit)")
    print(f"sweep / independent: {sweep / single:.3f}  (the sweep costs {sweep / per_edit:.2f} single edits)")


if __name__ == "__main__":
    main()
