#!/usr/bin/env python
"""The report's own figures and the tables behind them (CSV with a Parquet copy).

curves:      success vs SFT step per split with RL arrows; SFT loss beside OOD success; the recoverable
             window (RL recovery % vs start step)
restoration: recovery % per restoration edit, with the cheapest planned edit (predicted and measured)
"""

import argparse
import logging
from pathlib import Path

from sftrl import io, report
from sftrl.claims import read_csv
from sftrl.outputs import write_table

log = logging.getLogger("sftrl.report")


def curves(args) -> None:
    curve = read_csv(args.curve)
    rl = read_csv(args.rl) if args.rl else []
    report.plot_success_panels(curve, rl, args.success_figure)
    rows = report.loss_rows(io.read_jsonl(args.history), curve)
    write_table(rows, report.LOSS_COLUMNS, args.loss_table)
    report.plot_loss_vs_ood(rows, args.loss_figure)
    peak_step = io.read_json(args.roles)["steps"]["sft_peak"] if args.roles else None
    window = report.window_rows(curve, rl, args.bootstrap_draws, args.seed, peak_step)
    write_table(window, report.WINDOW_COLUMNS, args.window_table)
    report.plot_recovery_window(window, args.window_figure, args.most_pct)
    log.info("%d loss rows, %d RL recoveries", len(rows), len(window))


def restoration(args) -> None:
    plan = io.read_json(args.plan) if args.plan else None
    planned = io.read_json(args.planned_metrics) if args.planned_metrics else None
    rows = report.restoration_recovery_rows(
        read_csv(args.restoration), plan, planned, "ood", args.bootstrap_draws, args.seed
    )
    write_table(rows, report.RESTORE_COLUMNS, args.table)
    report.plot_restoration_recovery(rows, args.figure, args.threshold_pct)
    log.info("%d restoration recoveries", len(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-draws", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    cv = sub.add_parser("curves")
    cv.add_argument("--curve", required=True, type=Path, help="tables/sft_curve.csv")
    cv.add_argument("--rl", type=Path, help="tables/rl_from_sft.csv")
    cv.add_argument("--history", required=True, type=Path, help="sft/history.jsonl")
    cv.add_argument("--roles", type=Path, help="tables/roles.json (sft_peak); default: the curve's best OOD step")
    cv.add_argument("--most-pct", type=float, default=50.0, help="the 'most' line of the window figure")
    for name in ("success-figure", "loss-figure", "loss-table", "window-figure", "window-table"):
        cv.add_argument(f"--{name}", required=True, type=Path)

    rs = sub.add_parser("restoration")
    rs.add_argument("--restoration", required=True, type=Path, help="tables/restoration.csv")
    rs.add_argument("--plan", type=Path, help="plan/restoration.json")
    rs.add_argument("--planned-metrics", type=Path, help="OOD metrics.json of the planned edit, where it was built")
    rs.add_argument("--threshold-pct", type=float, default=70.0)
    rs.add_argument("--table", required=True, type=Path)
    rs.add_argument("--figure", required=True, type=Path)

    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        curves(args) if args.command == "curves" else restoration(args)
    except (ValueError, OSError, KeyError) as err:
        parser.exit(1, f"{parser.prog} {args.command}: error: {err}\n")


if __name__ == "__main__":
    main()
