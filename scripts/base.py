#!/usr/bin/env python
"""Pretrain the tiny base model (tokenizer and Llama weights built here) on the pretraining corpus.

Runs as is or under `accelerate launch`; rerun with the same arguments to resume after an interruption.
"""

from pathlib import Path

from sftrl import sft, tracking
from sftrl.cli import add_memory, add_tracking, add_training_outputs, parse, script_parser
from sftrl.config import load_json_arg
from sftrl.provenance import provenance


def main() -> None:
    parser = script_parser(__doc__, "seed, task and model")
    parser.add_argument("--corpus", required=True, type=Path, help="pretraining records (JSONL)")
    parser.add_argument(
        "--extra-texts",
        nargs="*",
        type=Path,
        default=[],
        help="JSONL records whose prompt/completion words join the vocabulary",
    )
    parser.add_argument("--out", required=True, type=Path, help="the base model directory to write")
    add_training_outputs(parser)
    add_tracking(parser)
    add_memory(parser)
    args = parse(parser)

    config = load_json_arg(args.config)
    with tracking.tracker(args.tracking, "pretrain", provenance(config, config.get("seed"))) as run:
        sft.run_pretrain(config, args.corpus, args.extra_texts, args.out, args.work_dir, args.log, run)


if __name__ == "__main__":
    main()
