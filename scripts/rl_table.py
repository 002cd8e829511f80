#!/usr/bin/env python
"""Tabulate success before and after RL per start checkpoint, algorithm, seed and split, with the recovery
against the SFT checkpoint with the best OOD score; plot the SFT OOD curve with an arrow per RL run."""

import argparse
import logging
from pathlib import Path

from sftrl.curves import RL_COLUMNS, curve_rows, plot_rl_from_sft, rl_rows
from sftrl.names import BASE, OOD, metrics_path, model_step
from sftrl.outputs import write_rows_csv

log = logging.getLogger("sftrl.rl_table")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval-root", required=True, type=Path, help="holds {model}/{split}/metrics.json")
    parser.add_argument("--sft", required=True, nargs="+", help="SFT checkpoint names (sft-STEP)")
    parser.add_argument("--rl", required=True, nargs="+", help="RL model names (rl-ALGO-fromSTEP-sSEED)")
    parser.add_argument("--table", required=True, type=Path, help="output CSV")
    parser.add_argument("--plot", required=True, type=Path, help="output PNG (a PDF is written beside it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    try:
        rows = rl_rows(args.eval_root, args.sft, args.rl)
        models = [BASE, *args.sft]
        curve = curve_rows({OOD: [(model_step(m), metrics_path(args.eval_root, m, OOD)) for m in models]})
    except (ValueError, OSError) as err:
        parser.error(str(err))
    write_rows_csv(rows, RL_COLUMNS, args.table)
    plot_rl_from_sft(curve, rows, args.plot)
    log.info("wrote %d rows to %s and the plot to %s", len(rows), args.table, args.plot)


if __name__ == "__main__":
    main()
