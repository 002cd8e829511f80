#!/usr/bin/env python
"""Tabulate and plot success vs SFT step per eval split (step 0 = the base model).

Example: sft_curve.py --id 0=base/id.json 100=sft-100/id.json --ood 0=base/ood.json 100=sft-100/ood.json
         --csv sft_curve.csv --plot sft_curve.png   (the PDF is written beside the PNG)
"""

import argparse
import logging
from pathlib import Path

from sftrl.curves import curve_rows, parse_entry, plot_curve, write_curve_csv
from sftrl.names import EVAL_SPLITS

log = logging.getLogger("sftrl.sft_curve")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for split in EVAL_SPLITS:
        parser.add_argument(f"--{split}", nargs="+", default=[], metavar="STEP=METRICS_JSON")
    parser.add_argument("--csv", required=True, type=Path, help="output table")
    parser.add_argument("--plot", required=True, type=Path, help="output PNG (a PDF is written beside it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    try:
        entries = {split: [parse_entry(e) for e in getattr(args, split)] for split in EVAL_SPLITS}
        entries = {split: items for split, items in entries.items() if items}
        if not entries:
            raise ValueError(f"give at least one of {', '.join('--' + s for s in EVAL_SPLITS)}")
        rows = curve_rows(entries)
    except (ValueError, OSError) as err:
        parser.error(str(err))

    write_curve_csv(rows, args.csv)
    written = plot_curve(rows, args.plot)
    log.info("wrote %d rows to %s and the plot to %s", len(rows), args.csv, ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
