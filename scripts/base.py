#!/usr/bin/env python
"""Pretrain the tiny base model (tokenizer and Llama weights built here) on the pretraining corpus.

Runs as is or under `accelerate launch`; rerun with the same arguments to resume after an interruption.
"""

import argparse
import logging
from pathlib import Path

from sftrl import sft
from sftrl.config import load_json_arg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--config",
        required=True,
        help='JSON {"seed": ..., "model": {"tiny": {...}, "pretrain": {...}}} (or a file)',
    )
    parser.add_argument("--corpus", required=True, type=Path, help="pretraining records (JSONL)")
    parser.add_argument(
        "--extra-texts",
        nargs="*",
        type=Path,
        default=[],
        help="JSONL records whose prompt/completion words join the vocabulary",
    )
    parser.add_argument("--out", required=True, type=Path, help="the base model directory to write")
    parser.add_argument("--work-dir", required=True, type=Path, help="resumable trainer checkpoints")
    parser.add_argument("--log", required=True, type=Path, help="training log (JSONL, one row per step)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    sft.run_pretrain(
        load_json_arg(args.config), args.corpus, args.extra_texts, args.out, args.work_dir, args.log
    )


if __name__ == "__main__":
    main()
