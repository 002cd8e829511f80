"""Command-line plumbing the stage scripts (scripts/*.py) share, so each script states only its own inputs.

Every stage script takes `--config`: the experiment's sections it reads, as the file the rules name
(`sftrl.job_config`) or inline JSON (`sftrl.config.load_json_arg`); a training stage also takes its
resumable checkpoints' directory and its log, and the jobs the memory plan estimates `--memory`; all log
to stderr in one format.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def script_parser(description: str | None, sections: str) -> argparse.ArgumentParser:
    """A script's parser with its `--config`, which holds the config `sections` (for the help)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help=f"JSON with {sections} sections (or a file)")
    return parser


def add_training_outputs(parser: argparse.ArgumentParser, row: str = "step", when: str = "") -> None:
    """`--work-dir` (resumable checkpoints) and `--log` (JSONL, one row per `row`); `when` names the
    command that needs them, where only one does (they are then optional to the parser)."""
    prefix = f"{when}: " if when else ""
    parser.add_argument("--work-dir", required=not when, type=Path, help=f"{prefix}resumable trainer checkpoints")
    parser.add_argument("--log", required=not when, type=Path, help=f"{prefix}training log (JSONL, one row per {row})")


def add_tracking(parser: argparse.ArgumentParser) -> None:
    """`--tracking`: the resolved `tracking` section (a JSON file, `sftrl.tracking`); absent: no tracker."""
    parser.add_argument("--tracking", type=Path, help="tracker settings (JSON file); absent: none")


def add_memory(parser: argparse.ArgumentParser) -> None:
    """`--memory`: where the job records its peak memory as it exits (`sftrl.memory`)."""
    parser.add_argument("--memory", type=Path, help="record of the peak memory (JSON), beside the benchmark")


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed command line, with INFO logging set up for the run and, where asked, the job's peak memory
    recorded as it exits."""
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if getattr(args, "memory", None) is not None:
        from sftrl.memory import record_at_exit

        record_at_exit(args.memory)
    return args
