#!/usr/bin/env python
"""One round of the tiny base's self-play refinement: `play` (the model plays pretraining-style hands to
the end) or `refine` (it trains on its own failed attempts; rerun with the same arguments to resume)."""

import logging
from pathlib import Path

from sftrl import selfplay
from sftrl.cli import add_training_outputs, parse, script_parser
from sftrl.config import load_json_arg

log = logging.getLogger("sftrl.selfplay")


def main() -> None:
    parser = script_parser(__doc__, "seed, task, data, model and eval")
    parser.add_argument("what", choices=["play", "refine"])
    parser.add_argument("--model", required=True, type=Path, help="the model of the round before")
    parser.add_argument("--round", required=True, type=int, help="the round, from 1")
    parser.add_argument("--played", type=Path, help="play: the episodes to write; refine: to read (JSONL)")
    parser.add_argument("--corpus", type=Path, help="refine: the pretraining corpus (JSONL), for replay")
    parser.add_argument("--out", type=Path, help="refine: the model directory to write")
    add_training_outputs(parser, when="refine")
    args = parse(parser)
    cfg = load_json_arg(args.config)

    if args.what == "play":
        log.info(
            "round %d played by %s: %s",
            args.round,
            args.model,
            selfplay.run_play(cfg, args.model, args.round, args.played),
        )
        return
    missing = [name for name in ("played", "corpus", "out", "work_dir", "log") if getattr(args, name) is None]
    if missing:
        parser.error("refine needs " + ", ".join("--" + name.replace("_", "-") for name in missing))
    selfplay.run_refine(cfg, args.model, args.played, args.corpus, args.round, args.out, args.work_dir, args.log)


if __name__ == "__main__":
    main()
