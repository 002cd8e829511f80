#!/usr/bin/env python
"""Representation similarity of models on the evaluation prompts.

pair: models A (the reference) and B read each split's prompts; writes their pooled final-layer states and
the next-token metrics per prompt to an .npz file.
summary: the pair files against sft_peak as the table representations.csv and its figure.
"""

import argparse
import logging
from dataclasses import asdict
from pathlib import Path

from sftrl import io
from sftrl.cli import add_memory, parse
from sftrl.config import TaskConfig, from_dict, load_json_arg
from sftrl.evaluate import eval_config, first_conversation, load_episodes
from sftrl.provenance import provenance
from sftrl.representations.features import FeatureConfig

log = logging.getLogger("sftrl.representations")


def pair(args: argparse.Namespace) -> None:
    from sftrl.representations.features import pair_features
    from sftrl.representations.table import PairFeatures, write_pair

    cfg = load_json_arg(args.config)
    task = from_dict(TaskConfig, cfg["task"], "task")
    features = from_dict(FeatureConfig, cfg["features"], "representations")
    eval_cfg = eval_config(cfg)
    prompts = {}
    for entry in args.split:
        split, _, path = entry.partition("=")
        records = load_episodes(path)
        prompts[split] = ([str(r["uid"]) for r in records], [first_conversation(r, task) for r in records])

    def progress(split: str, done: int, total: int) -> None:
        log.info("%s: %d/%d prompts", split, done, total)

    splits = pair_features(
        (args.name_a, args.name_b),
        (args.a, args.b),
        prompts,
        features,
        dtype=eval_cfg.dtype,
        device=eval_cfg.device,
        trust_remote_code=eval_cfg.trust_remote_code,
        progress=progress,
    )
    config = {"a": str(args.a), "b": str(args.b), "features": asdict(features), "task": asdict(task)}
    write_pair(args.out, PairFeatures(args.name_a, args.name_b, splits, {"provenance": provenance(config)}))


def summary(args: argparse.Namespace) -> None:
    from sftrl.representations.table import plot_summary, read_pair, summary_rows, write_summary

    roles = io.read_json(args.roles)
    rows = summary_rows([read_pair(p) for p in args.pairs], roles, args.draws, args.seed, args.workers)
    write_summary(rows, args.csv)
    plot_summary(rows, args.figure, reference=roles["roles"]["sft_peak"])
    for row in rows:
        if row["delta"] is not None:
            log.info(
                "%s %s %s: %.4g vs sft_end, delta %.4g [%.4g, %.4g]",
                row["split"],
                row["metric"],
                row["model"],
                row["value"],
                row["delta"],
                row["delta_low"],
                row["delta_high"],
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    one = modes.add_parser("pair", help="features of one pair of models")
    one.add_argument("--config", required=True, help="JSON with task, model, eval and features sections")
    one.add_argument("--a", required=True, help="the reference model's directory (or hub id)")
    one.add_argument("--b", required=True, help="the compared model's directory (or hub id)")
    one.add_argument("--name-a", required=True)
    one.add_argument("--name-b", required=True)
    one.add_argument("--split", required=True, nargs="+", help="SPLIT=eval_SPLIT.jsonl, one per split")
    one.add_argument("--out", required=True, type=Path, help="the .npz file to write")
    add_memory(one)
    many = modes.add_parser("summary", help="the table and figure of every pair")
    many.add_argument("--pairs", required=True, nargs="+", type=Path)
    many.add_argument("--roles", required=True, type=Path)
    many.add_argument("--draws", type=int, required=True, help="bootstrap resamples of the prompts")
    many.add_argument("--seed", type=int, required=True)
    many.add_argument("--workers", type=int, default=1, help="processes sharing the bootstrap (the job's threads)")
    many.add_argument("--csv", required=True, type=Path)
    many.add_argument("--figure", required=True, type=Path)
    args = parse(parser)
    pair(args) if args.mode == "pair" else summary(args)


if __name__ == "__main__":
    main()
