#!/usr/bin/env python
"""Write a run's results document from its tables: success per SFT step, RL per start and seed, the
restoration edits, the claims' checks and the figures (copied beside the document). For the default run:
    python scripts/results_doc.py --results results/tiny --out docs/default-run.md --figures docs/figures
"""

import argparse
from pathlib import Path

from sftrl import results_doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results/tiny"), help="the run's results/<exp>")
    parser.add_argument("--out", type=Path, default=Path("docs/default-run.md"), help="the document")
    parser.add_argument("--figures", type=Path, default=Path("docs/figures"), help="where its figures are copied")
    args = parser.parse_args()
    for needed in ("tables/sft_curve.csv", "report/claims.json"):
        if not (args.results / needed).is_file():
            parser.error(f"{args.results / needed} is missing: run the workflow to its end first")
    if not args.figures.resolve().is_relative_to(args.out.parent.resolve()):
        parser.error(f"--figures {args.figures} must lie at or below the document's folder {args.out.parent}")
    results_doc.write(args.results, args.out, args.figures)
    print(f"wrote {args.out} and its figures in {args.figures}")


if __name__ == "__main__":
    main()
