#!/usr/bin/env python
"""A verdict on each finding of the study (supported / not supported / inconclusive) from the result
tables, with the numbers, the 95% intervals and the test used: claims.md and claims.json."""

import argparse
import logging
from pathlib import Path

from sftrl.claims import ClaimSettings, evaluate_claims, load_inputs, setting_lines, write_claims
from sftrl.claims.reproduction import reproduction_lines, reproduction_rows
from sftrl.config import load_json_arg
from sftrl.provenance import provenance

log = logging.getLogger("sftrl.claims")


def parse_entry(entry: str) -> tuple[str, Path]:
    label, sep, path = entry.partition("=")
    if not sep or not label or not path:
        raise ValueError(f"expected MODEL=PATH, got {entry!r}")
    return label, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--curve", required=True, type=Path, help="tables/sft_curve.csv")
    parser.add_argument("--rl", type=Path, help="tables/rl_from_sft.csv")
    parser.add_argument("--history", type=Path, help="sft/history.jsonl (training and eval losses)")
    parser.add_argument("--spectrum", nargs="*", default=[], metavar="MODEL=TABLE", help="base against MODEL")
    parser.add_argument(
        "--samples",
        nargs="*",
        default=[],
        metavar="MODEL=SAMPLES",
        help="OOD samples.jsonl per model, for tests episode by episode",
    )
    parser.add_argument("--restoration", type=Path, help="tables/restoration.csv")
    parser.add_argument("--roles", type=Path, help="tables/roles.json")
    parser.add_argument("--representations", type=Path, help="tables/representations.csv")
    parser.add_argument("--settings", default="{}", help="the report.claims config section (JSON, or a file)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--paper-table", help="the paper's stage table to compare with (report.paper_table)")
    parser.add_argument(
        "--margin", type=float, default=5.0, help="equivalence margin in points (report.equivalence_margin_pct)"
    )
    parser.add_argument("--title", default="Claims")
    parser.add_argument("--md", required=True, type=Path)
    parser.add_argument("--json", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    try:
        options = load_json_arg(args.settings)
        settings = ClaimSettings(seed=args.seed, **options)
        spectra = dict(parse_entry(entry) for entry in args.spectrum)
        samples = dict(parse_entry(entry) for entry in args.samples)
        inputs = load_inputs(
            args.curve, args.rl, args.history, spectra, args.restoration, args.roles, samples, args.representations
        )
        findings = evaluate_claims(inputs, settings)
        reproduction = reproduction_rows(inputs, args.paper_table, args.margin) if args.paper_table else None
    except (ValueError, TypeError, OSError, KeyError) as err:
        parser.error(str(err))
    files = {k: str(v) for k, v in vars(args).items() if isinstance(v, Path)}
    sources = provenance({**files, "spectrum": args.spectrum, "samples": args.samples})
    lines = setting_lines(inputs)
    extra = {}
    if reproduction is not None:
        lines = [*reproduction_lines(reproduction, args.paper_table), *lines]
        extra = {"reproduction": {"paper_table": args.paper_table, "rows": reproduction}}
    write_claims(findings, args.md, args.json, settings, sources, args.title, lines, extra)
    for finding in findings:
        log.info("%s: %s", finding.id, finding.verdict)


if __name__ == "__main__":
    main()
