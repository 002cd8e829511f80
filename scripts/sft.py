#!/usr/bin/env python
"""Supervised fine-tuning of a base model with a checkpoint ladder (models-dir/sft-{step}).

Runs as is or under `accelerate launch`; rerun with the same arguments to resume after an interruption.
"""

import argparse
from pathlib import Path

from sftrl import sft, tracking
from sftrl.cli import add_memory, add_tracking, add_training_outputs, parse, script_parser
from sftrl.config import load_json_arg
from sftrl.provenance import provenance


def eval_set(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def main() -> None:
    parser = script_parser(__doc__, "seed, sft and model")
    parser.add_argument("--base", required=True, help="base model directory (or hub id)")
    parser.add_argument("--train", required=True, type=Path, help="SFT records (JSONL)")
    parser.add_argument(
        "--eval-set",
        action="extend",
        nargs="+",
        type=eval_set,
        default=[],
        metavar="NAME=PATH",
        help="records whose loss is logged at every ladder step as eval_NAME_loss",
    )
    parser.add_argument("--models-dir", required=True, type=Path, help="ladder directories go here")
    add_training_outputs(parser)
    add_tracking(parser)
    add_memory(parser)
    args = parse(parser)

    names = [name for name, _ in args.eval_set]
    if len(set(names)) != len(names):
        parser.error(f"--eval-set names must be distinct: {names}")
    config = load_json_arg(args.config)
    with tracking.tracker(args.tracking, "sft", provenance(config, config["seed"])) as run:
        sft.run_sft(config, args.base, args.train, dict(args.eval_set), args.models_dir, args.work_dir, args.log, run)


if __name__ == "__main__":
    main()
