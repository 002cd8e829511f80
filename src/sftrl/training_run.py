"""What SFT, PPO and GRPO do alike around their own training loops: name the run, pick up its newest
complete checkpoint, keep the log on disk while training runs, and export the final model.

A run is named by a fingerprint of what defines it (settings, start model, training records). Its
resumable checkpoints follow `sftrl.checkpoints`: a rerun resumes from the newest complete checkpoint of
the same run, and checkpoints of any other run, or half-written ones, are removed first. A stage that
runs under `accelerate launch` leaves removing and writing to the main process.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from sftrl import exports, io, tracking
from sftrl.checkpoints import discard_unusable, last_complete
from sftrl.modeling import DTYPES, save_model

log = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"  # a Hugging Face trainer's checkpoint: global step and log history


@dataclass(frozen=True)
class RunFiles:
    """Where a training run writes: the final model (`out_dir`, with `provenance` as its provenance.json),
    the resumable checkpoints (`work_dir`), the log (`log_path`) and the policies it exports along the way
    (`exports`: update -> model directory), and the tracker its curves go to live (`sftrl.tracking`).
    None of it enters the run's fingerprint, so the same run resumes wherever its work directory is."""

    out_dir: Path
    work_dir: Path
    log_path: Path
    provenance: dict | None = None
    exports: Mapping[int, Path] = field(default_factory=dict)
    tracker: tracking.Tracker | None = None


EXPORT_STORE = "exports"  # work_dir/exports/step-N: the policies exported along an RL run (sftrl.exports)


def export_along(model, tokenizer, files: RunFiles, run: str, update: int, dtype: str) -> None:
    """Where the run exports the policy after `update`: write it (in `dtype`, the model left as it is) and
    put it in place. The main process calls it."""
    if update in files.exports:
        store = exports.stored(files.work_dir, update, EXPORT_STORE)
        record = {**(files.provenance or {}), "update": update}
        exports.export_policy(model, tokenizer, store, update, run, record, dtype)
        exports.publish(store, files.exports[update], update, run)


def publish_exports(files: RunFiles, run: str, done: int) -> None:
    """Put back every export of an update the run has passed (`done`): Snakemake deleted a rerun job's outputs,
    and a resumed run does not train those updates again. The main process calls it."""
    exports.discard_foreign(files.work_dir, run, EXPORT_STORE)
    for update, target in sorted(files.exports.items()):
        if update > done:
            continue
        store = exports.stored(files.work_dir, update, EXPORT_STORE)
        if not exports.holds(store, update, run):
            raise RuntimeError(
                f"the policy after update {update} is not in {store}, and the run resumes after it: remove "
                f"{files.work_dir} to train the run again from its start"
            )
        exports.publish(store, target, update, run)


def launched_as_main() -> bool:
    """Whether this is the main process of its launch (RANK, set by accelerate and torchrun; plain python:
    the only one), readable before a trainer or a process group exists."""
    return int(os.environ.get("RANK", "0")) == 0


def fingerprint(settings: object, records: Iterable[object], start: str = "") -> str:
    """Identity of a run: what a checkpoint must share with the run that resumes from it. `settings` and
    each record (the part of a training record that training reads) enter as canonical JSON, `start` (the
    start model's identity, where `settings` does not hold it) as it is."""
    digest = hashlib.sha256(io.dumps(settings).encode())
    digest.update(start.encode())
    for record in records:
        digest.update(io.dumps(record).encode())
    return digest.hexdigest()[:16]


def resume_point(
    work_dir: str | os.PathLike, run: str, main: bool, barrier: Callable[[], None] | None = None
) -> Path | None:
    """The newest complete checkpoint of this run in `work_dir`, or None; the main process first removes
    the unusable ones, and `barrier` (several processes) keeps the others from looking before it has."""
    if main:
        discard_unusable(work_dir, run)
    if barrier is not None:
        barrier()
    return last_complete(work_dir, run)


def finished_history(resume: Path | None, last_step: int) -> list[dict] | None:
    """The log history of a Hugging Face trainer's checkpoint at the run's last step, or None for any other
    resume point: resumed there, the trainer would take one more step, so a finished run is only reported."""
    if resume is None or resume.name != f"checkpoint-{last_step}":
        return None
    log.info("training already complete in %s", resume)
    return io.read_json(resume / TRAINER_STATE)["log_history"]


def export_model(model, tokenizer, files: RunFiles, dtype: str = "auto") -> None:
    """The final model as a plain Hugging Face directory, with provenance.json, atomically; in `dtype` (the
    model's configured one, which float32 master weights were trained for), or as it is."""
    if dtype != "auto":
        model.to(DTYPES[dtype])  # training is over
    save_model(model, tokenizer, files.out_dir, files.provenance)


class LogCallback(TrainerCallback):
    """Rewrites the training log at every logging event, so it can be read while training runs; `write`
    turns the trainer's log history into the stage's JSONL rows."""

    def __init__(self, log_path: str | os.PathLike, write: Callable[[str | os.PathLike, Sequence[dict]], None]):
        self.log_path, self.write = Path(log_path), write

    def on_log(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.write(self.log_path, state.log_history)
        return control


class TrackerCallback(TrainerCallback):
    """Sends every log row of a Hugging Face trainer to the job's tracker, at the trainer's global step,
    named as the stage's own log names it (`rename`)."""

    def __init__(self, run: tracking.Tracker, rename: Callable[[Mapping[str, Any]], Mapping[str, Any]] = dict):
        self.run, self.rename = run, rename

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            self.run.log(tracking.trainer_logs(self.rename(logs)), step=state.global_step)
        return control
