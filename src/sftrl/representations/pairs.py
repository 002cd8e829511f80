"""Which pairs of models the representations stage compares, known from the config before any job.

`representations.models` are role tokens compared with sft_peak (by default sft_end and the RL runs that
start from it: the revision's three roles). `representations.pairs` adds any pair: each side a role token,
a model of this experiment (`sft-50`) or a model directory outside the workflow, named `ext-<folder>`.
A directory is checked against the other side before any job: tokenizer and hidden size must agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sftrl.representations.features import IncomparableModels, check_comparable, model_shape
from sftrl.roles import GROUP_ROLES, SINGLE_ROLES, expand_role

REFERENCE = "sft_peak"
EXTERNAL_PREFIX = "ext-"


def external_name(directory: str | Path) -> str:
    """The name a model directory outside the workflow has in file names: `ext-<folder name>`."""
    return EXTERNAL_PREFIX + re.sub(r"[^A-Za-z0-9._-]+", "_", Path(directory).resolve().name)


def _side(value: str, rl_models: Sequence[str], sft_end: str, models: Sequence[str]) -> list[str]:
    """The model tokens one side of a configured pair stands for."""
    if value in SINGLE_ROLES or value in GROUP_ROLES or value in rl_models:
        return expand_role(value, rl_models, sft_end)
    if value in models:
        return [value]
    if (Path(value) / "config.json").is_file():
        return [external_name(value)]
    raise ValueError(
        f"representations.pairs: {value!r} is neither a role ({[*SINGLE_ROLES, *GROUP_ROLES]}), a model of this "
        f"experiment ({list(models)}) nor a model directory with a config.json"
    )


def configured_pairs(
    section: Mapping[str, Any], rl_models: Sequence[str], sft_end: str, models: Sequence[str]
) -> list[tuple[str, str]]:
    """(reference, compared) tokens of every comparison: sft_peak against `models`, then `pairs`."""
    pairs = []
    for role in section["models"]:
        if role == REFERENCE:
            raise ValueError("representations.models: sft_peak is the reference; list the models compared with it")
        pairs += [(REFERENCE, token) for token in expand_role(role, rl_models, sft_end)]
    for entry in section["pairs"]:
        sides = [_side(str(entry[key]), rl_models, sft_end, models) for key in ("a", "b")]
        pairs += [(a, b) for a in sides[0] for b in sides[1] if a != b]
    return list(dict.fromkeys(pairs))


def external_models(section: Mapping[str, Any]) -> dict[str, Path]:
    """ext-name -> directory of every model directory the pairs name; two directories may not share a name."""
    directories: dict[str, Path] = {}
    for entry in section["pairs"]:
        for key in ("a", "b"):
            path = Path(str(entry[key]))
            if (path / "config.json").is_file():
                name = external_name(path)
                if directories.setdefault(name, path.resolve()) != path.resolve():
                    raise ValueError(f"representations.pairs: two model directories are both named {name}; rename one")
    return directories


def check_pairs(
    pairs: Sequence[tuple[str, str]], external: Mapping[str, Path], workflow_model_dir: Callable[[], Path | None]
) -> None:
    """Refuse, before any job, a pair whose sides have different tokenizers or hidden sizes.

    Every model the workflow trains has its base's shape, so a workflow model is checked through the base
    directory (`workflow_model_dir`, None where the base is not on disk yet or is a hub id: the job checks).
    """
    base = None
    for a, b in pairs:
        if a not in external and b not in external:
            continue
        shapes = []
        for name in (a, b):
            if name in external:
                shapes.append((f"{name} ({external[name]})", model_shape(external[name])))
                continue
            base = base or workflow_model_dir()
            if base is None:
                break
            shapes.append((name, model_shape(base)))
        if len(shapes) == 2:
            try:
                check_comparable(*shapes)
            except IncomparableModels as error:
                raise IncomparableModels(f"representations.pairs: {error}") from None
