#!/usr/bin/env python
"""One round of the tiny base's self-play refinement: `play` (the model plays pretraining-style hands to
the end) or `refine` (it trains on its own failed attempts; rerun with the same arguments to resume)."""

import argparse
import logging
from pathlib import Path

from sftrl import selfplay
from sftrl.config import load_json_arg

log = logging.getLogger("sftrl.selfplay")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["play", "refine"])
    parser.add_argument("--config", required=True, help="JSON with seed, task, data, model and eval sections")
    parser.add_argument("--model", required=True, type=Path, help="the model of the round before")
    parser.add_argument("--round", required=True, type=int, help="the round, from 1")
    parser.add_argument("--played", type=Path, help="play: the episodes to write; refine: to read (JSONL)")
    parser.add_argument("--corpus", type=Path, help="refine: the pretraining corpus (JSONL), for replay")
    parser.add_argument("--out", type=Path, help="refine: the model directory to write")
    parser.add_argument("--work-dir", type=Path, help="refine: resumable trainer checkpoints")
    parser.add_argument("--log", type=Path, help="refine: training log (JSONL, one row per step)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_json_arg(args.config)

    if args.what == "play":
        log.info("round %d played by %s: %s", args.round, args.model, selfplay.run_play(cfg, args.model, args.round, args.played))
        return
    missing = [name for name in ("played", "corpus", "out", "work_dir", "log") if getattr(args, name) is None]
    if missing:
        parser.error("refine needs " + ", ".join("--" + name.replace("_", "-") for name in missing))
    selfplay.run_refine(cfg, args.model, args.played, args.corpus, args.round, args.out, args.work_dir, args.log)


if __name__ == "__main__":
    main()
