#!/usr/bin/env python
"""RL fine-tuning of one SFT checkpoint (PPO in the multi-turn game, or GRPO through TRL) with one seed.

Writes the final policy to --out (a Hugging Face model directory with provenance.json) and one log row per
update/step to --log; rerun with the same arguments to resume from the last complete checkpoint in
--work-dir after an interruption.
"""

from dataclasses import asdict
from pathlib import Path

from sftrl import rl, tracking
from sftrl.cli import add_memory, add_tracking, add_training_outputs, parse, script_parser
from sftrl.config import load_json_arg
from sftrl.provenance import provenance
from sftrl.training_run import RunFiles

SECTIONS = {"seed", "task", "model", "rl"}


def main() -> None:
    parser = script_parser(__doc__, "seed, task, model and rl")
    parser.add_argument("--algorithm", required=True, help=f"one of {', '.join(rl.ALGORITHMS)}")
    parser.add_argument("--seed", required=True, type=int, help="this run's seed (one of rl.seeds)")
    parser.add_argument("--start", required=True, type=Path, help="the SFT checkpoint (Hugging Face model dir)")
    parser.add_argument("--prompts", required=True, type=Path, help="RL prompts, JSON lines (rl_prompts.jsonl)")
    parser.add_argument("--out", required=True, type=Path, help="final model directory")
    parser.add_argument(
        "--export",
        nargs="*",
        default=[],
        metavar="UPDATE=DIR",
        help="model directories of the policy after these updates (PPO updates, GRPO steps)",
    )
    add_training_outputs(parser, row="update or step")
    add_tracking(parser)
    add_memory(parser)
    parser.add_argument(
        "--discard-checkpoints",
        action="store_true",
        help="remove --work-dir once the model is written (a finished run is not resumed)",
    )
    args = parse(parser)

    # Everything that can be wrong with the inputs is reported here, before a model is loaded.
    try:
        if args.algorithm not in rl.ALGORITHMS:
            raise ValueError(f"unknown --algorithm {args.algorithm!r}; known: {', '.join(rl.ALGORITHMS)}")
        cfg = load_json_arg(args.config)
        unknown = sorted(set(cfg) - SECTIONS)
        if unknown or "seed" not in cfg or "task" not in cfg:
            raise ValueError(f"--config needs sections seed and task (model, rl optional); unknown: {unknown}")
        if not args.prompts.is_file():
            raise ValueError(f"--prompts {args.prompts} is not a file")
        inputs = rl.check_inputs(args.algorithm, cfg, args.seed, args.start, args.prompts)
        exports = {int(update): Path(path) for update, _, path in (entry.partition("=") for entry in args.export)}
    except (ValueError, OSError) as err:
        parser.error(str(err))

    resolved = {**cfg, "rl": {**cfg.get("rl", {}), args.algorithm: asdict(inputs.cfg)}}
    record = {
        **provenance(resolved, args.seed),
        "algorithm": args.algorithm,
        "start": str(args.start),
        "update": getattr(inputs.cfg, rl.ALGORITHMS[args.algorithm].length),
    }
    with tracking.tracker(args.tracking, args.out.name, record) as run:
        rl.run_rl(inputs, RunFiles(args.out, args.work_dir, args.log, record, exports, run))
    if args.discard_checkpoints:
        rl.discard_checkpoints(args.work_dir)


if __name__ == "__main__":
    main()
