"""RL fine-tuning from an SFT checkpoint: PPO as the paper ran it (`ppo`), GRPO through TRL (`grpo`).

Both write resumable checkpoints by the convention of `sftrl.checkpoints` (the SFT stage's too) and both
export the final policy as a plain Hugging Face directory. `ALGORITHMS` is the registry the rules, the
scripts and the figures read. Kept light: importing this package loads neither torch nor TRL.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sftrl import io
from sftrl.config import TaskConfig, from_dict

if TYPE_CHECKING:
    from sftrl.training_run import RunFiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Algorithm:
    """An RL algorithm as the workflow runs it. Its module gives `settings(section, seed)` (the parsed
    `rl.<name>` config section) and the trainer named here, called as `run_rl` does; the module is
    imported only when a run needs it."""

    name: str
    module: str
    trainer: str
    multi_process: bool  # one process per GPU under `accelerate launch`
    colour: str  # in figures
    length: str  # the key of its `rl.<name>` section that counts its updates


# The registry: a new algorithm is its module, its `rl.<name>` config section and one line here.
ALGORITHMS = {
    algorithm.name: algorithm
    for algorithm in (
        Algorithm("ppo", "sftrl.rl.ppo", "train_ppo", multi_process=True, colour="tab:purple", length="updates"),
        Algorithm("grpo", "sftrl.rl.grpo", "train_grpo", multi_process=True, colour="tab:orange", length="max_steps"),
    )
}


def run_length(config: Mapping[str, Any], algorithm: str) -> int:
    """The updates of one run of `algorithm` (PPO updates, GRPO steps) in an experiment's config."""
    return int(config["rl"][algorithm][ALGORITHMS[algorithm].length])


def check_exported_updates(config: Mapping[str, Any], algorithms: Sequence[str]) -> None:
    """Refuse, before any job, an update to export (rl.eval_updates, rl.analysed_update) that a run of some
    configured algorithm never reaches, or reaches only at its end (its final policy is the run's model)."""
    rl = config["rl"]
    asked = {u: "rl.eval_updates" for u in rl["eval_updates"]}
    if rl["analysed_update"] is not None:
        asked[rl["analysed_update"]] = "rl.analysed_update"
    for algorithm in algorithms:
        length = run_length(config, algorithm)
        key = f"rl.{algorithm}.{ALGORITHMS[algorithm].length}"
        for update, where in sorted(asked.items()):
            if update > length:
                raise ValueError(
                    f"{where} holds update {update}, beyond the {length} updates of a {algorithm} run ({key})"
                )
            if update == length:
                raise ValueError(
                    f"{where} holds update {update}, the last of a {algorithm} run ({key}): that policy is the "
                    f"run's own model; leave it out{' (analysed_update: null)' if where == 'rl.analysed_update' else ''}"
                )


def algorithm_colour(name: str) -> str:
    """An algorithm's colour in figures (black for one the registry does not know)."""
    return ALGORITHMS[name].colour if name in ALGORITHMS else "black"


def check_prompts(prompts: Sequence[dict], task) -> None:
    """RL prompt records (`data/rl_prompts.jsonl`) fit for `task`, or a ValueError naming the first bad one."""
    if not prompts:
        raise ValueError("the RL prompt set is empty")
    for record in prompts:
        missing = {"hand", "rule", "prompt"} - set(record)
        if missing:
            raise ValueError(f"RL prompt {record.get('uid')!r} lacks {sorted(missing)}")
        if record.get("target", task.target) != task.target:
            raise ValueError(
                f"RL prompt {record.get('uid')!r} has target {record['target']} but the task says {task.target}: "
                "the prompt set was built for another task"
            )


def _module(algorithm: str) -> ModuleType:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown RL algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    return importlib.import_module(ALGORITHMS[algorithm].module)


@dataclass(frozen=True)
class Inputs:
    """Everything an RL run needs, checked: the parsed configs, the start directory, the prompts."""

    algorithm: str
    task: TaskConfig
    cfg: object  # PpoConfig or GrpoConfig
    start: Path
    prompts: list[dict]
    dtype: str
    trust_remote_code: bool


def check_inputs(
    algorithm: str, config: dict, seed: int, start: str | os.PathLike, prompts_path: str | os.PathLike
) -> Inputs:
    """Parse and check every input before any model is loaded; a ValueError or OSError names the problem.

    `config` holds the `seed`, `task`, `model` and `rl` sections; of `rl` only the sub-section of the
    algorithm is read (`rl.ppo` or `rl.grpo`). `seed` is the run's seed (one of `rl.seeds`); a `seed` key
    in the sub-section must agree with it.
    """
    from sftrl.modeling import check_model_dir

    module = _module(algorithm)
    task = from_dict(TaskConfig, config.get("task", {}), "task")
    section = dict((config.get("rl") or {}).get(algorithm) or {})
    if section.get("seed", seed) != seed:
        raise ValueError(f"rl.{algorithm}.seed is {section['seed']} but this run's seed is {seed}")
    cfg = module.settings(section, seed)
    model = config.get("model") or {}
    start = check_model_dir(Path(start))
    prompts = io.read_jsonl(prompts_path)
    check_prompts(prompts, task)
    return Inputs(
        algorithm,
        task,
        cfg,
        start,
        prompts,
        model.get("dtype", "float32"),
        bool(model.get("trust_remote_code", False)),
    )


def run_rl(inputs: Inputs, files: RunFiles):
    """Train with checked inputs; `files.provenance` goes into the output directory as provenance.json."""
    train = getattr(_module(inputs.algorithm), ALGORITHMS[inputs.algorithm].trainer)
    return train(
        inputs.start,
        inputs.prompts,
        inputs.task,
        inputs.cfg,
        files,
        dtype=inputs.dtype,
        trust_remote_code=inputs.trust_remote_code,
    )


def discard_checkpoints(work_dir: str | os.PathLike) -> None:
    """Remove a finished run's resumable checkpoints (the main process, once its model is written): a
    finished run is never resumed, and at the paper's scale they are most of the experiment's disk."""
    from sftrl.training_run import launched_as_main

    if launched_as_main():
        shutil.rmtree(work_dir, ignore_errors=True)
        log.info("removed the resumable checkpoints in %s", work_dir)
