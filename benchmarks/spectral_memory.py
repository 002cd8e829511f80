#!/usr/bin/env python
"""Peak memory and time of streaming spectral analysis against loading both models whole.

Builds two Qwen2-shaped models of ~190M parameters (float32, written tensor by tensor so that building
needs little memory), then analyses the pair twice, each in its own subprocess:
- stream: `sftrl.spectral.metrics.analyse_pair`, one tensor of each model in memory at a time;
- whole: `safetensors.torch.load_file` of both models into memory, then the same per-matrix loop.
Only a few matrices are analysed (see --patterns), so the run takes minutes on 2 cores; memory depends
on the largest matrix and on what is held, not on how many matrices are analysed.

Memory is the peak of RssAnon, sampled from /proc/self/status every 2 ms by a thread in the child.
Not ru_maxrss/VmHWM: safetensors memory-maps the weight files, and the file pages it touches count in
those (as RssFile) though they are page cache the kernel can drop at will; what an analysis really
allocates is anonymous memory. The child also reports its RssAnon after imports (the baseline).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from sftrl.spectral import metrics
from sftrl.spectral.svd import thin_svd
from sftrl.spectral.weights import DTYPE_CODES, SINGLE_FILE, SafetensorsWriter, TensorInfo, select


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class PeakSampler(threading.Thread):
    def __init__(self, interval: float = 0.002):
        super().__init__(daemon=True)
        self.interval, self.peak, self.running = interval, rss_anon_mb(), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_anon_mb())
            time.sleep(self.interval)

    def stop(self) -> float:
        self.running = False
        self.join()
        return max(self.peak, rss_anon_mb())


def qwen2_shapes(hidden: int, layers: int, intermediate: int, vocab: int, kv: int) -> list[tuple[str, tuple[int, ...]]]:
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("model.embed_tokens.weight", (vocab, hidden)),
        ("lm_head.weight", (vocab, hidden)),
    ]
    shapes.append(("model.norm.weight", (hidden,)))
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [
            (p + "self_attn.q_proj.weight", (hidden, hidden)),
            (p + "self_attn.q_proj.bias", (hidden,)),
            (p + "self_attn.k_proj.weight", (kv, hidden)),
            (p + "self_attn.k_proj.bias", (kv,)),
            (p + "self_attn.v_proj.weight", (kv, hidden)),
            (p + "self_attn.v_proj.bias", (kv,)),
            (p + "self_attn.o_proj.weight", (hidden, hidden)),
            (p + "mlp.gate_proj.weight", (intermediate, hidden)),
            (p + "mlp.up_proj.weight", (intermediate, hidden)),
            (p + "mlp.down_proj.weight", (hidden, intermediate)),
            (p + "input_layernorm.weight", (hidden,)),
            (p + "post_attention_layernorm.weight", (hidden,)),
        ]
    return sorted(shapes)


def build_pair(root: Path, args) -> tuple[Path, Path, int]:
    """Model A with random weights and B = A plus a 1% perturbation, one tensor in memory at a time."""
    shapes = qwen2_shapes(args.hidden, args.layers, args.intermediate, args.vocab, args.kv)
    entries = [TensorInfo(name, shape, DTYPE_CODES[torch.float32], SINGLE_FILE) for name, shape in shapes]
    config = {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": args.hidden,
        "num_hidden_layers": args.layers,
        "intermediate_size": args.intermediate,
        "vocab_size": args.vocab,
        "tie_word_embeddings": False,
    }
    paths = [root / "a", root / "b"]
    for path in paths:
        path.mkdir()
        (path / "config.json").write_text(json.dumps(config))
    generator = torch.Generator().manual_seed(0)
    with (
        SafetensorsWriter(paths[0] / SINGLE_FILE, entries) as wa,
        SafetensorsWriter(paths[1] / SINGLE_FILE, entries) as wb,
    ):
        for name, shape in shapes:
            a = torch.randn(shape, generator=generator) / shape[-1] ** 0.5
            wa.write(name, a)
            wb.write(name, a + 0.01 * torch.randn(shape, generator=generator) * a.abs().mean())
    params = sum(int(torch.Size(shape).numel()) for _, shape in shapes)
    return paths[0], paths[1], params


def child(mode: str, a: Path, b: Path, patterns: list[str], fractions: list[float]) -> None:
    baseline = rss_anon_mb()
    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    if mode == "stream":
        table = metrics.analyse_pair(a, b, patterns, fractions)
    else:
        from safetensors.torch import load_file

        # load_file maps the file (zero-copy since safetensors 0.6); materialise every tensor, as
        # from_pretrained does when it fills a model's parameters.
        model_a, model_b = ({k: v.clone() for k, v in load_file(m / SINGLE_FILE).items()} for m in (a, b))
        rows = metrics.TidyRows()
        for name in select(list(model_a), patterns):
            wa, wb = model_a[name].float(), model_b[name].float()
            metrics.compare_matrices(rows, name, wa, wb, thin_svd(wa), thin_svd(wb), fractions)
        table = rows.frame()
    seconds = time.perf_counter() - start
    peak = sampler.stop()
    print(
        json.dumps(
            {
                "mode": mode,
                "baseline_mb": baseline,
                "peak_mb": peak,
                "seconds": seconds,
                "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rows": len(table),
                "drift_median": metrics.summarize(table)["drift_median"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--intermediate", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--kv", type=int, default=256, help="k/v projection rows (GQA)")
    parser.add_argument(
        "--patterns",
        nargs="+",
        default=["re:layers\\.[07]\\.(self_attn\\.q|mlp\\.down)_proj\\.weight$"],
        help="analysed matrices (default: q and down of the first and last layer, to keep the "
        "run short; the models stay whole)",
    )
    parser.add_argument("--k-fractions", nargs="+", type=float, default=[0.05, 0.2, 1.0])
    parser.add_argument("--child", nargs=3, metavar=("MODE", "A", "B"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, a, b = args.child
        child(mode, Path(a), Path(b), args.patterns, args.k_fractions)
        return

    with tempfile.TemporaryDirectory(prefix="spectral-memory-") as tmp:
        start = time.perf_counter()
        a, b, params = build_pair(Path(tmp), args)
        size_mb = (a / SINGLE_FILE).stat().st_size / 2**20
        print(
            f"built 2 models of {params / 1e6:.0f}M parameters ({size_mb:.0f} MiB each, float32) "
            f"in {time.perf_counter() - start:.0f}s"
        )
        results = {}
        for mode in ("stream", "whole"):
            command = [
                sys.executable,
                __file__,
                "--child",
                mode,
                str(a),
                str(b),
                "--patterns",
                *args.patterns,
                "--k-fractions",
                *map(str, args.k_fractions),
            ]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])
            r = results[mode]
            print(
                f"{mode:>6}: peak RssAnon {r['peak_mb']:7.0f} MiB (after imports {r['baseline_mb']:.0f}, "
                f"extra {r['peak_mb'] - r['baseline_mb']:.0f}; "
                f"ru_maxrss {r['maxrss_mb']:.0f} with file pages), "
                f"{r['seconds']:.1f}s, {r['rows']} rows"
            )
    stream, whole = results["stream"], results["whole"]
    assert stream["drift_median"] == whole["drift_median"], "the two modes must compute the same table"
    ratio = stream["peak_mb"] / whole["peak_mb"]
    extra = (stream["peak_mb"] - stream["baseline_mb"]) / (whole["peak_mb"] - whole["baseline_mb"])
    print(
        f"peak RssAnon stream/whole: {ratio:.3f} (extra over imports: {extra:.3f}); "
        f"wall time stream/whole: {stream['seconds'] / whole['seconds']:.2f}"
    )
    if ratio > 0.25:
        sys.exit(f"streaming used more than a quarter of whole-model memory ({ratio:.2f})")


if __name__ == "__main__":
    main()
