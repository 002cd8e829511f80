"""Model directories a training run hands out along the way: the SFT ladder, and RL policies at the updates
the config names. Each export is written once into the run's work directory (`{work_dir}/{store}/step-N`,
stamped with its step and the run's fingerprint) and put in place under its final name by hard links.
Snakemake deletes a job's outputs before it reruns the job, so a resumed run puts the exports of steps
before its resume point back from the store instead of recomputing them.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from sftrl import io
from sftrl.checkpoints import numbered_dirs, stamped

log = logging.getLogger(__name__)

STORED_RE = re.compile(r"^step-(\d+)$")


def stored(work_dir: str | os.PathLike, step: int, store: str) -> Path:
    """Where the export of a step is kept in the work directory."""
    return Path(work_dir) / store / f"step-{step}"


def holds(model_dir: Path, step: int, run: str) -> bool:
    """Whether a directory is the export of this step of this run (its provenance says so)."""
    return stamped(model_dir / "provenance.json", step, run)


def discard_foreign(work_dir: str | os.PathLike, run: str, store: str) -> None:
    """Remove stored exports of another run, so none is put in place for this one."""
    for step, path in numbered_dirs(Path(work_dir) / store, STORED_RE):
        if not holds(path, step, run):
            log.warning("removing stored export %s: from a different run", path)
            shutil.rmtree(path)


def publish(source: Path, target: Path, step: int, run: str) -> None:
    """Put the stored export of a step in place under its final name, atomically; hard links (the files are
    never modified in place) keep a large model from taking the disk twice."""
    if holds(target, step, run):
        log.info("%s already holds step %d; kept", target, step)
        return
    with io.atomic_path(target) as tmp:
        tmp.mkdir()
        for item in source.iterdir():
            try:
                os.link(item, tmp / item.name)
            except OSError:  # another file system, or no hard links there
                shutil.copy2(item, tmp / item.name)
    log.info("step %d in place at %s", step, target)


def export_policy(model, tokenizer, store: Path, step: int, run: str, provenance: dict, dtype: str) -> None:
    """Write a training model's current weights as a Hugging Face directory in `dtype` (or as they are for
    "auto") into the store, stamped with the step and run, without changing the model being trained."""
    from sftrl.modeling import DTYPES, check_model_dir

    if holds(store, step, run):
        return
    state = model.state_dict()
    if dtype != "auto":
        state = {name: tensor.to(DTYPES[dtype]) for name, tensor in state.items()}
    with io.atomic_path(store) as tmp:
        model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
        if dtype != "auto":  # the config states the dtype the weights are written in
            config = io.read_json(tmp / "config.json")
            config["dtype"] = dtype
            io.write_json(tmp / "config.json", config)
        tokenizer.save_pretrained(tmp)
        io.write_json(tmp / "provenance.json", {**provenance, "step": step, "fingerprint": run})
        check_model_dir(tmp)
