"""Resumable training checkpoints shared by SFT and RL.

A trainer writes `work_dir/checkpoint-{step}`; the checkpoint counts only once a completion marker, written
last, names its step and the run's fingerprint. A checkpoint killed mid-save, or one of another run (other
config, data or start model), is never resumed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from sftrl import io
from sftrl.modeling import check_model_dir

log = logging.getLogger(__name__)

COMPLETE_MARKER = "sftrl-complete.json"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def model_dir_identity(path: str | os.PathLike) -> str:
    """A cheap identity of a model directory: its config and the names, sizes and times of its weights."""
    path = check_model_dir(path)
    files = sorted(p for p in path.iterdir() if p.suffix in {".safetensors", ".bin"})
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return io.dumps({"config": (path / "config.json").read_text(), "weights": stats})


def numbered_dirs(parent: str | os.PathLike, pattern: re.Pattern) -> list[tuple[int, Path]]:
    """The directories in `parent` whose names `pattern` matches, by the number it captures, lowest first."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in parent.iterdir() if (m := pattern.match(p.name)) and p.is_dir())


def checkpoints(work_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """`checkpoint-N` directories, oldest first (hidden `.checkpoint-N.*.tmp` ones never match)."""
    return numbered_dirs(work_dir, CHECKPOINT_RE)


def stamped(stamp_path: Path, step: int, run: str) -> bool:
    """Whether the JSON file at `stamp_path` (a completion marker, an export's provenance) names this step
    of this run; a missing or torn file does not."""
    try:
        stamp = io.read_json(stamp_path)
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("step") == step and stamp.get("fingerprint") == run


def mark_complete(checkpoint: Path, step: int, run: str) -> None:
    io.write_json(checkpoint / COMPLETE_MARKER, {"step": step, "fingerprint": run})


def is_complete(checkpoint: Path, step: int, run: str) -> bool:
    return stamped(checkpoint / COMPLETE_MARKER, step, run)


def discard_unusable(work_dir: str | os.PathLike, run: str) -> None:
    """Remove half-written checkpoints, those of another run, and temporaries of a killed atomic write."""
    work_dir = Path(work_dir)
    for step, path in checkpoints(work_dir):
        if not is_complete(path, step, run):
            log.warning("removing checkpoint %s: incomplete or from a different run", path)
            shutil.rmtree(path)
    if work_dir.is_dir():
        for path in work_dir.glob(".checkpoint-*.tmp"):
            shutil.rmtree(path, ignore_errors=True)


def last_complete(work_dir: str | os.PathLike, run: str) -> Path | None:
    complete = [path for step, path in checkpoints(work_dir) if is_complete(path, step, run)]
    return complete[-1] if complete else None


def keep_newest(work_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (for a trainer that rotates its own, once the newest is
    marked complete)."""
    for _, path in checkpoints(work_dir)[:-keep]:
        shutil.rmtree(path)
