#!/usr/bin/env python
"""Choose the roles of the spectral and restoration stages from the evaluation results.

sft_peak is the SFT checkpoint with the best OOD success (a tie goes to the earliest step), sft_end the
checkpoint given with --sft-end; writes them with the OOD numbers the choice was made from, as JSON.
"""

import argparse
import logging
from pathlib import Path

from sftrl import io
from sftrl.provenance import provenance
from sftrl.roles import choose_roles

log = logging.getLogger("sftrl.roles")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval-root", required=True, type=Path, help="holds {model}/ood/metrics.json")
    parser.add_argument("--sft", required=True, nargs="+", help="SFT checkpoint names (sft-STEP)")
    parser.add_argument("--rl", nargs="*", default=[], help="RL model names (rl-ALGO-fromSTEP-sSEED)")
    parser.add_argument("--sft-end", required=True, help="the checkpoint playing sft_end")
    parser.add_argument(
        "--peak-rule", default="selection_half", help="the rule that picks sft_peak (restore.peak_rule)"
    )
    parser.add_argument("--out", required=True, type=Path, help="output JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    try:
        roles = choose_roles(args.eval_root, args.sft, args.rl, args.sft_end, args.peak_rule)
    except (ValueError, OSError, KeyError) as err:
        parser.error(str(err))
    inputs = {
        "eval_root": str(args.eval_root),
        "sft": args.sft,
        "rl": args.rl,
        "sft_end": args.sft_end,
        "peak_rule": args.peak_rule,
    }
    io.write_json(args.out, {**roles, "provenance": provenance(inputs)})
    log.info("roles: %s (%s)", roles["roles"], roles["rule"])


if __name__ == "__main__":
    main()
