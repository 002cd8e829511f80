"""The result tables the claims read (`ClaimInputs`, `load_inputs`) and what the checks take from them
besides the SFT curve (`sftrl.curves.ood_curve`): the RL starts with their seeds and the OOD split's size."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sftrl import io
from sftrl.curves import CurvePoint
from sftrl.names import OOD, rl_model, sft_model
from sftrl.stats import Outcomes


@dataclass
class ClaimInputs:
    """The result tables the claims are read from (rows as read from CSV: strings are fine).

    curve: tables/sft_curve.csv; rl: tables/rl_from_sft.csv; history: sft/history.jsonl (train loss and
    eval losses per step); spectra: model → tidy spectral table of that model against the base (sft_end
    and the RL models started from it); restoration: tables/restoration.csv, or None when the stage was
    not run; roles: tables/roles.json; representations: tables/representations.csv, or None; outcomes: model → per-episode OOD outcomes (samples.jsonl). With
    outcomes, every model a check compares must have them (paired tests); without any, the checks fall
    back to unpaired tests on the tables' rates.
    """

    curve: Sequence[Mapping[str, Any]]
    rl: Sequence[Mapping[str, Any]] = field(default_factory=list)
    history: Sequence[Mapping[str, Any]] = field(default_factory=list)
    spectra: Mapping[str, Any] = field(default_factory=dict)
    restoration: Sequence[Mapping[str, Any]] | None = None
    roles: Mapping[str, Any] | None = None
    outcomes: Mapping[str, Outcomes] = field(default_factory=dict)
    representations: Sequence[Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class RlStart:
    """One start checkpoint of one algorithm: OOD before (the checkpoint) and after RL, per seed (`afters`,
    in the order of `models`) and as their mean (`after`)."""

    algorithm: str
    step: int
    models: tuple[str, ...]
    before: float
    afters: tuple[float, ...]

    @property
    def after(self) -> float:
        return float(np.mean(self.afters))

    @property
    def seeds(self) -> int:
        return len(self.models)

    @property
    def start_model(self) -> str:
        return sft_model(self.step)

    @property
    def label(self) -> str:
        return f"{self.algorithm} from {self.step}"

    def seeds_text(self) -> str:
        """Each seed's OOD success after RL, in %."""
        return " / ".join(f"{100 * a:.1f}" for a in self.afters)


def rl_starts(
    rows: Iterable[Mapping[str, Any]], algorithms: Sequence[str] | None = None, update: int | None = None
) -> dict[str, list[RlStart]]:
    """OOD before and after RL per algorithm and start step, each seed's in order of seed; `update`: the
    update whose policy the table's RL rows are (None: each run's final policy)."""
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["split"] == OOD and (algorithms is None or row["algorithm"] in algorithms):
            groups[row["algorithm"], int(row["start_step"])].append(row)
    result: dict[str, list[RlStart]] = defaultdict(list)
    for (algorithm, step), group in sorted(groups.items()):
        group = sorted(group, key=lambda row: int(row["seed"]))
        models = tuple(rl_model(algorithm, step, row["seed"], update) for row in group)
        afters = tuple(float(row["after"]) for row in group)
        result[algorithm].append(RlStart(algorithm, step, models, float(group[0]["before"]), afters))
    return dict(result)


def ood_episodes(points: Sequence[CurvePoint]) -> int:
    """The number of OOD episodes, which every checkpoint must share for the tests to pair them."""
    sizes = {p.ood.n for p in points}
    if len(sizes) != 1:
        raise ValueError(f"the OOD split has different sizes across checkpoints: {sorted(sizes)}")
    return sizes.pop()


def read_csv(path: str | Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def load_inputs(
    curve: str | Path,
    rl: str | Path | None = None,
    history: str | Path | None = None,
    spectra: Mapping[str, str | Path] | None = None,
    restoration: str | Path | None = None,
    roles: str | Path | None = None,
    samples: Mapping[str, str | Path] | None = None,
    representations: str | Path | None = None,
) -> ClaimInputs:
    """The result tables from their files (see `ClaimInputs`); a None path is a stage not run. `samples`:
    model → its OOD samples.jsonl, for the paired tests."""
    import pandas as pd

    return ClaimInputs(
        curve=read_csv(curve),
        rl=read_csv(rl) if rl else [],
        history=io.read_jsonl(history) if history else [],
        spectra={label: pd.read_parquet(path) for label, path in (spectra or {}).items()},
        restoration=read_csv(restoration) if restoration else None,
        roles=io.read_json(roles) if roles else None,
        outcomes={model: Outcomes.read(path, model) for model, path in (samples or {}).items()},
        representations=read_csv(representations) if representations else None,
    )
