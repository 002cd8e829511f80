#!/usr/bin/env python
"""Plans under a budget (integer programs, PuLP with its bundled CBC solver), written as JSON.

rl-starts:   the SFT checkpoints to start RL from, within a budget of GPU-hours
restoration: the cheapest set of weight blocks predicted to recover a target share of OOD success
build-edit:  the model directory of a restoration plan (the edit restricted to the chosen blocks)
"""

import argparse
import logging
from pathlib import Path

from sftrl import io, plan
from sftrl.config import load_json_arg
from sftrl.provenance import provenance

log = logging.getLogger("sftrl.plan")


def rl_starts(args) -> dict:
    options = {
        "budget": args.budget,
        "configured_starts": args.configured_starts,
        "run_cost": args.run_cost,
        "gpus_per_run": args.gpus_per_run,
        "min_spacing": args.min_spacing,
        "coverage_radius": args.coverage_radius,
        "required": args.required,
    }
    try:
        result = plan.plan_rl_from_files(
            args.curve, args.algorithms, args.seeds, benchmark_dir=args.benchmark_dir, **options
        )
    except plan.PlanInfeasible as error:
        if args.on_infeasible == "error":
            raise
        result = plan.infeasible_record("rl_starts", error)
    log.info("RL starts: %s (%s)", result.get("steps"), result["status"])
    return {**result, "provenance": provenance({"curve": str(args.curve), **options})}


def restoration(args) -> dict:
    spectrum = None if args.spectrum == "none" else args.spectrum
    try:
        result = plan.plan_restoration_from_files(spectrum, args.restoration, args.edit, args.model, args.target)
    except plan.PlanInfeasible as error:
        result = plan.infeasible_record("cheapest_restoration", error, target=args.target, edit=args.edit, tensors=[])
    log.info("restoration plan: %s, %d tensors", result["status"], len(result.get("tensors", [])))
    inputs = {"spectrum": str(spectrum), "restoration": str(args.restoration), "edit": args.edit, "target": args.target}
    return {**result, "provenance": provenance(inputs)}


def build_edit(args) -> None:
    from sftrl.restoration.apply import apply_edits
    from sftrl.restoration.spec import EditSpec
    from sftrl.spectral.svd import SvdCache

    record = io.read_json(args.plan)
    base = load_json_arg(args.edit_spec)
    spec = EditSpec.from_dict(plan.planned_edit(record, base))
    apply_edits(args.source, args.target, [spec], [args.out], SvdCache(args.cache))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    rl = sub.add_parser("rl-starts", help="the SFT checkpoints to start RL from")
    rl.add_argument("--curve", required=True, type=Path, help="tables/sft_curve.csv")
    rl.add_argument("--algorithms", required=True, nargs="+", help="RL algorithms run from each start")
    rl.add_argument("--seeds", required=True, type=int, help="seeds per algorithm")
    rl.add_argument("--budget", type=float, help="GPU-hours; default: what --configured-starts starts cost")
    rl.add_argument("--configured-starts", type=int, help="starts of the configured RL runs (the default budget)")
    rl.add_argument("--run-cost", type=float, help="GPU-hours per RL run; default: mean of the benchmark files")
    rl.add_argument(
        "--benchmark-dir", type=Path, help="Snakemake benchmark files of RL runs done (rl-ALGO-fromSTEP-sSEED.tsv)"
    )
    rl.add_argument("--gpus-per-run", type=float, default=1.0)
    rl.add_argument("--min-spacing", type=int, default=0, help="least distance in steps between two starts")
    rl.add_argument("--coverage-radius", type=int, help="how far in steps a start covers the curve (default: spacing)")
    rl.add_argument("--required", nargs="*", type=int, default=[], help="steps that must be starts")
    rl.add_argument("--on-infeasible", choices=["error", "record"], default="error")
    rl.add_argument("--out", required=True, type=Path)

    rs = sub.add_parser("restoration", help="the cheapest weight blocks to restore")
    rs.add_argument("--spectrum", required=True, help="spectral table of sft_peak against sft_end, or none")
    rs.add_argument("--restoration", required=True, type=Path, help="tables/restoration.csv")
    rs.add_argument("--edit", required=True, help="the measured edit whose recovery is spread over the blocks")
    rs.add_argument("--model", required=True, type=Path, help="the target model (parameter counts)")
    rs.add_argument("--target", type=float, default=0.7, help="recovery share to reach")
    rs.add_argument("--out", required=True, type=Path)

    be = sub.add_parser("build-edit", help="the model directory of a restoration plan")
    be.add_argument("--plan", required=True, type=Path)
    be.add_argument("--edit-spec", required=True, help="the measured edit (kind, top, tail): JSON, or a file")
    be.add_argument("--source", required=True, type=Path)
    be.add_argument("--target", required=True, type=Path)
    be.add_argument("--cache", type=Path, help="SVD cache directory")
    be.add_argument("--out", required=True, type=Path)

    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.command == "build-edit":
            build_edit(args)
            return
        result = rl_starts(args) if args.command == "rl-starts" else restoration(args)
    except (plan.PlanError, OSError, ValueError) as error:
        parser.exit(1, f"{parser.prog} {args.command}: error: {error}\n")
    io.write_json(args.out, result)


if __name__ == "__main__":
    main()
