#!/usr/bin/env python
"""Build the experiment's datasets (`sets`) or the tiny model's pretraining corpus (`pretrain`)."""

import logging
from pathlib import Path

from sftrl import data, io
from sftrl.cli import parse, script_parser
from sftrl.config import DataConfig, TaskConfig, from_dict, load_json_arg
from sftrl.provenance import provenance

log = logging.getLogger("sftrl.data")


def main() -> None:
    parser = script_parser(__doc__, "seed, task and data")
    parser.add_argument("what", choices=["sets", "pretrain"])
    parser.add_argument("--out", required=True, type=Path, help="directory (sets) or JSONL file (pretrain)")
    args = parse(parser)

    cfg = load_json_arg(args.config)
    seed = cfg["seed"]
    task = from_dict(TaskConfig, cfg["task"], "task")
    data_cfg = from_dict(DataConfig, cfg["data"], "data")

    if args.what == "pretrain":
        n = io.write_jsonl(args.out, data.build_pretrain_corpus(seed, task, data_cfg))
        log.info("wrote %d pretraining examples to %s", n, args.out)
        return

    counts = {}
    for name, records in data.build_datasets(seed, task, data_cfg).items():
        counts[name] = io.write_jsonl(args.out / f"{name}.jsonl", records)
        log.info("wrote %d records to %s", counts[name], args.out / f"{name}.jsonl")
    io.write_json(args.out / "manifest.json", {"counts": counts, "provenance": provenance(cfg, seed)})


if __name__ == "__main__":
    main()
