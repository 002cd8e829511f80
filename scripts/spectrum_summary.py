#!/usr/bin/env python
"""Summarise the spectral tables of many pairs: one CSV row per pair, the singular-value drift and the
principal angles against the checkpoints, and a layer-by-module heat map of one pair.

Each --pair is KIND:A:B=TABLE, KIND one of base_to_sft, base_to_rl, peak_to_later, sft_vs_rl.
"""

import argparse
import logging
from pathlib import Path

import pandas as pd

from sftrl.spectral import metrics, plots

log = logging.getLogger("sftrl.spectrum_summary")


def parse_pair(entry: str) -> tuple[str, str, str, Path]:
    spec, sep, path = entry.partition("=")
    parts = spec.split(":")
    if not sep or not path or len(parts) != 3 or not all(parts):
        raise ValueError(f"expected KIND:A:B=TABLE, got {entry!r}")
    return parts[0], parts[1], parts[2], Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", nargs="*", default=[], metavar="KIND:A:B=TABLE")
    parser.add_argument("--csv", required=True, type=Path, help="output table, one row per pair")
    parser.add_argument("--drift", type=Path, help="drift-vs-checkpoint figure (PNG; a PDF beside it)")
    parser.add_argument("--angles", type=Path, help="angle-vs-rank figure (PNG; a PDF beside it)")
    parser.add_argument("--heatmap-table", type=Path, help="the pair table drawn as a layer x module heat map")
    parser.add_argument("--heatmap", type=Path, help="heat-map figure (PNG; a PDF beside it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if bool(args.heatmap) != bool(args.heatmap_table):
        parser.error("--heatmap and --heatmap-table go together")

    try:
        rows = []
        for kind, a, b, path in map(parse_pair, args.pair):
            rows.append(metrics.summary_row(kind, a, b, pd.read_parquet(path)))
        summary = metrics.summary_frame(rows)
    except (ValueError, OSError) as err:
        parser.error(str(err))
    metrics.write_summary(summary, args.csv)
    if args.drift:
        plots.plot_drift_summary(summary, args.drift)
    if args.angles:
        plots.plot_angle_summary(summary, args.angles)
    if args.heatmap:
        meta = metrics.read_meta(args.heatmap_table)
        title = f"rotation share of ΔW: {meta.get('name_b', 'B')} vs {meta.get('name_a', 'A')}"
        plots.plot_heatmap(pd.read_parquet(args.heatmap_table), args.heatmap, title=title)
    log.info("summarised %d pairs into %s", len(summary), args.csv)


if __name__ == "__main__":
    main()
