#!/usr/bin/env python
"""Evaluate one model directory on eval splits: writes OUT/samples.jsonl and OUT/metrics.json per split.

Several splits share one model load: --split id ood --episodes eval_id.jsonl eval_ood.jsonl
--out results/x/eval/sft-10/{split}
"""

import logging
from dataclasses import asdict
from pathlib import Path

from sftrl import tracking
from sftrl.cli import add_memory, add_tracking, parse, script_parser
from sftrl.config import TaskConfig, from_dict, load_json_arg
from sftrl.evaluate import check_inputs, eval_config, evaluate_splits
from sftrl.names import EVAL_SPLITS
from sftrl.provenance import provenance

log = logging.getLogger("sftrl.evaluate")
SECTIONS = {"seed", "task", "model", "eval"}


def main() -> None:
    parser = script_parser(__doc__, "seed, task, model and eval")
    parser.add_argument("--model", required=True, type=Path, help="Hugging Face model directory (or hub id)")
    parser.add_argument("--episodes", required=True, nargs="+", type=Path, help="eval sets (eval_{split}.jsonl)")
    parser.add_argument("--split", required=True, nargs="+", choices=EVAL_SPLITS, help="one split per eval set")
    parser.add_argument("--out", required=True, help="output directory; '{split}' in it is the split's name")
    parser.add_argument("--quiet", action="store_true", help="no per-turn progress lines on stderr")
    parser.add_argument("--name", help="the model's name in the study (the tracker's run); default: its directory's")
    add_tracking(parser)
    add_memory(parser)
    args = parse(parser)

    # Everything that can be wrong with the inputs is reported here, before a model is loaded.
    try:
        cfg = load_json_arg(args.config)
        unknown = sorted(set(cfg) - SECTIONS)
        if unknown or "seed" not in cfg or "task" not in cfg:
            raise ValueError(f"--config needs sections seed and task (model, eval optional); unknown: {unknown}")
        task = from_dict(TaskConfig, cfg["task"], "task")
        eval_cfg = eval_config(cfg)
        if len(args.split) != len(args.episodes):
            raise ValueError(f"{len(args.split)} --split names for {len(args.episodes)} --episodes files")
        if len(args.split) > 1 and "{split}" not in args.out:
            raise ValueError("several splits need '{split}' in --out")
        for split, episodes in zip(args.split, args.episodes, strict=False):
            check_inputs(args.model, episodes, split)
    except (ValueError, OSError) as err:
        parser.error(str(err))

    resolved = {"seed": cfg["seed"], "task": asdict(task), "eval": asdict(eval_cfg)}
    sets = [
        (split, episodes, Path(args.out.replace("{split}", split)))
        for split, episodes in zip(args.split, args.episodes, strict=False)
    ]
    run_name, step = tracking.evaluation_run(args.model, args.name)
    with tracking.tracker(args.tracking, run_name, provenance(resolved, cfg["seed"])) as run:
        for metrics in evaluate_splits(args.model, sets, task, eval_cfg, config=resolved, progress=not args.quiet):
            success = metrics["success"]
            log.info(
                "%s on %s: success %.4f [%.4f, %.4f] over %d episodes",
                args.model,
                metrics["split"],
                success["rate"],
                success["ci_low"],
                success["ci_high"],
                success["n"],
            )
            run.log(tracking.evaluation_scalars(metrics), step=step)


if __name__ == "__main__":
    main()
