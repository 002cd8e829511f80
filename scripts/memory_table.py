#!/usr/bin/env python
"""The memory plan beside what every job used: one row per job that recorded its peak memory."""

import argparse
import logging
from pathlib import Path

from sftrl.config import load_json_arg
from sftrl.memory import measured_jobs, plan_vs_measured, write_table

log = logging.getLogger("sftrl.memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plan", required=True, help="the memory plan (JSON file with its rows)")
    parser.add_argument("--benchmarks", required=True, type=Path, help="the benchmark records' directory")
    parser.add_argument("--table", required=True, type=Path, help="output CSV")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    rows = plan_vs_measured(load_json_arg(args.plan)["rows"], measured_jobs(args.benchmarks))
    write_table(rows, args.table)
    log.info("wrote %d jobs' memory beside the plan to %s", len(rows), args.table)


if __name__ == "__main__":
    main()
