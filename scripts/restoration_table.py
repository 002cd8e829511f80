#!/usr/bin/env python
"""Tabulate the evaluated restoration edits with their recovery between source and target, and draw one
bar figure per family of edits (FIGURE_STEM_{kind}.png and .pdf)."""

import argparse
import logging
from pathlib import Path

from sftrl.config import load_json_arg
from sftrl.restoration.table import kinds_in, plot_family, restoration_rows, write_restoration_csv
from sftrl.roles import RestorePair, read_roles

log = logging.getLogger("sftrl.restoration")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval-root", required=True, type=Path, help="holds {model}/{split}/metrics.json")
    parser.add_argument("--roles", required=True, type=Path, help="roles.json of the experiment")
    parser.add_argument("--pairs", required=True, help="the grid: a list of {source, target, edits} (JSON, or a file)")
    parser.add_argument("--table", required=True, type=Path, help="output CSV")
    parser.add_argument("--figure-stem", required=True, type=Path, help="figures go to STEM_{kind}.png/.pdf")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    try:
        pairs = [RestorePair.from_dict(item) for item in load_json_arg(args.pairs)]
        roles = read_roles(args.roles)
        rows = restoration_rows(args.eval_root, roles, pairs)
    except (ValueError, OSError, KeyError) as err:
        parser.error(str(err))
    write_restoration_csv(rows, args.table)
    for kind in kinds_in(pairs):
        png = args.figure_stem.with_name(f"{args.figure_stem.name}_{kind}.png")
        plot_family(args.eval_root, roles, pairs, kind, png)
    log.info("wrote %d rows to %s", len(rows), args.table)


if __name__ == "__main__":
    main()
