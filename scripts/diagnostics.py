#!/usr/bin/env python
"""The revision's diagnostics (sftrl.diagnostics).

format-errors: the format-error share of the base and every SFT checkpoint per split, table and figure.
advantages: PPO's normalised advantages per start checkpoint from the runs' logs, table and figure.
"""

import argparse
import logging
from pathlib import Path

from sftrl import diagnostics, io
from sftrl.outputs import write_table


def pairs(entries: list[str]) -> list[tuple[str, Path]]:
    return [(key, Path(path)) for key, _, path in (entry.partition("=") for entry in entries)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    errors = modes.add_parser("format-errors")
    errors.add_argument("--metrics", nargs="+", required=True, metavar="STEP:SPLIT=metrics.json")
    advantages = modes.add_parser("advantages")
    advantages.add_argument("--history", nargs="+", required=True, metavar="MODEL=history.jsonl")
    for mode in (errors, advantages):
        mode.add_argument("--csv", required=True, type=Path)
        mode.add_argument("--figure", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    if args.mode == "format-errors":
        rows = []
        for key, path in pairs(args.metrics):
            step, _, split = key.partition(":")
            rows.append(diagnostics.format_error_row(int(step), split, io.read_json(path)))
        write_table(rows, diagnostics.FORMAT_COLUMNS, args.csv)
        diagnostics.plot_format_errors(rows, args.figure)
    else:
        pooled = diagnostics.advantages_by_start({model: io.read_jsonl(path) for model, path in pairs(args.history)})
        rows = diagnostics.advantage_rows(pooled)
        write_table(rows, diagnostics.ADVANTAGE_COLUMNS, args.csv)
        diagnostics.plot_advantages(pooled, args.figure)
    for row in rows:
        logging.info("%s", row)


if __name__ == "__main__":
    main()
