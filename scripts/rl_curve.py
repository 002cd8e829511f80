#!/usr/bin/env python
"""Success over RL updates per run: its start checkpoint, the policies exported along it and its final
policy, per split (rl_curve.csv), and a figure with a panel per start checkpoint and split."""

import argparse
import logging
from pathlib import Path

from sftrl.rl_curve import plot_rl_curve, rl_curve_rows, write_rl_curve_csv

log = logging.getLogger("sftrl.rl_curve")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval-root", required=True, type=Path, help="holds {model}/{split}/metrics.json")
    parser.add_argument("--runs", required=True, nargs="+", help="RL runs (rl-ALGO-fromSTEP-sSEED)")
    parser.add_argument("--updates", nargs="*", type=int, default=[], help="updates exported along each run")
    parser.add_argument("--lengths", required=True, nargs="+", help="ALGO=UPDATES, the updates of a run")
    parser.add_argument("--analysed", default="final", help="the update playing the RL model, or final")
    parser.add_argument("--table", required=True, type=Path, help="output CSV")
    parser.add_argument("--plot", required=True, type=Path, help="output PNG (a PDF is written beside it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    try:
        lengths = {algorithm: int(n) for algorithm, _, n in (entry.partition("=") for entry in args.lengths)}
        analysed = None if args.analysed == "final" else int(args.analysed)
        rows = rl_curve_rows(args.eval_root, args.runs, args.updates, lengths)
    except (ValueError, OSError, KeyError) as err:
        parser.error(str(err))
    write_rl_curve_csv(rows, args.table)
    plot_rl_curve(rows, args.plot, analysed)
    log.info("wrote %d rows to %s and the plot to %s", len(rows), args.table, args.plot)


if __name__ == "__main__":
    main()
