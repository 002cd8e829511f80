"""Each stage's configuration as a file its jobs' command lines name, instead of inline JSON.

A stage's file is named by a digest of its content (`sft-3f2a9c0d1e4b.json`), so the command line changes
exactly when the configuration does: Snakemake's params trigger still reruns the jobs a config edit
concerns, and only those. Settings that must rerun nothing when they change (which tracker draws the
curves) go to a file of a fixed name instead.

The files are named while the workflow builds its DAG but written only when a run starts (Snakemake's
`onstart`, after every check before the first job has passed): a dry run, a lint or a refused run writes
nothing. A file asked for after the start (a job added by a checkpoint) is written at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sftrl import io

DIGEST_CHARS = 12


def render(content: Mapping[str, Any] | list) -> str:
    """The file's text: sorted keys, indented, so a person can read it and a diff shows what changed."""
    return json.dumps(content, sort_keys=True, indent=1) + "\n"


class ConfigFiles:
    """The config files of one experiment, under `directory`."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.pending: dict[Path, str] = {}
        self.started = False

    def stage(self, stage: str, content: Mapping[str, Any] | list) -> Path:
        """The path of `stage`'s file holding `content`, named by its digest."""
        text = render(content)
        return self._add(f"{stage}-{hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]}.json", text)

    def fixed(self, name: str, content: Mapping[str, Any] | list) -> Path:
        """The path of the file `name` holding `content` (its name never changes with it)."""
        return self._add(name, render(content))

    def write(self) -> None:
        """Write every file named so far (the run starts); later ones are written as they are named."""
        self.started = True
        for path, text in self.pending.items():
            _write(path, text)
        self.pending.clear()

    def _add(self, name: str, text: str) -> Path:
        path = self.directory / name
        if self.started:
            _write(path, text)
        else:
            self.pending[path] = text
        return path


def _write(path: Path, text: str) -> None:
    """`text` at `path`, atomically, unless it is there already."""
    if not path.is_file() or path.read_text() != text:
        io.write_text(path, text)
