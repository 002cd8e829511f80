#!/usr/bin/env python
"""Spectral comparison of checkpoints, streamed tensor by tensor, as a tidy Parquet table.

pair mode (default): model B against model A, e.g. an SFT checkpoint against the base model.
delta mode: the update base→mid against the update mid→end, e.g. ΔW_sft against ΔW_rl.
"""

import argparse
import logging
from pathlib import Path

from sftrl.provenance import provenance
from sftrl.spectral import metrics, plots
from sftrl.spectral.svd import SvdCache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["pair", "delta"], default="pair")
    parser.add_argument("--a", type=Path, help="pair mode: model A (the reference)")
    parser.add_argument("--b", type=Path, help="pair mode: model B")
    parser.add_argument("--name-a", default="A", help="label of model A, recorded in the table's metadata")
    parser.add_argument("--name-b", default="B", help="label of model B")
    parser.add_argument("--base", type=Path, help="delta mode: the model the first update starts from")
    parser.add_argument("--mid", type=Path, help="delta mode: end of the first update, start of the second")
    parser.add_argument("--end", type=Path, help="delta mode: end of the second update")
    parser.add_argument("--out", required=True, type=Path, help="the Parquet table to write")
    parser.add_argument("--patterns", nargs="+", help="tensor-name patterns (regex, or glob with * or ?)")
    parser.add_argument("--k-fractions", nargs="+", type=float, default=list(metrics.DEFAULT_K_FRACTIONS))
    parser.add_argument("--cache", type=Path, help="SVD cache directory shared with restoration")
    parser.add_argument("--plots", type=Path, help="also write angle and heat-map figures with this path stem")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.mode == "pair":
        if not (args.a and args.b):
            parser.error("pair mode needs --a and --b")
        inputs = {"a": str(args.a), "b": str(args.b), "name_a": args.name_a, "name_b": args.name_b}
        table = metrics.analyse_pair(args.a, args.b, args.patterns, args.k_fractions, SvdCache(args.cache))
    else:
        if not (args.base and args.mid and args.end):
            parser.error("delta mode needs --base, --mid and --end")
        inputs = {"base": str(args.base), "mid": str(args.mid), "end": str(args.end)}
        table = metrics.compare_updates(args.base, args.mid, args.end, args.patterns, args.k_fractions)
    config = {"mode": args.mode, **inputs, "patterns": args.patterns, "k_fractions": args.k_fractions}
    metrics.write_table(table, args.out, {**config, "provenance": provenance(config)})
    if args.plots:
        title = f"{args.name_b} vs {args.name_a}" if args.mode == "pair" else "update 1 vs update 2"
        plots.plot_angles(table, f"{args.plots}-angles", title=f"Principal angles: {title}")
        metric = "energy_rotation_share" if args.mode == "pair" else "angle_left_mean_deg"
        plots.plot_heatmap(table, f"{args.plots}-heatmap", metric, None if args.mode == "pair" else 0.2)
    logging.info("summary: %s", metrics.summarize(table))


if __name__ == "__main__":
    main()
