"""Roles of the models in the spectral and restoration stages, and the restoration grid as pairs of roles.

A role names a model by what it is in the study, not by its step, so a config and the DAG built from it
stay the same whatever the evaluation finds:

- `base`: the base model;
- `sft_peak`: the SFT checkpoint with the best OOD success on the selection half of the OOD episodes
  (`sftrl.peak`; ties go to the earliest step), so that the other half measures it without the bias of
  having been chosen. It is the only role that depends on data, so the workflow resolves it in a
  checkpoint rule that writes `roles.json`, with the rates on both halves;
- `sft_end`: the last ladder checkpoint, or the step `restore.sft_end` names (the paper's "end" is the
  later checkpoint RL started from);
- an RL model by its name (`rl-ppo-from600-s0`), and two groups that expand to several: `rl` (every RL
  run) and `rl_from_end` (the RL runs that start from `sft_end`).

An edited model is named by its pair and its edit: `edits/{source}__{target}/{edit}`, e.g.
`edits/sft_peak__sft_end/direction-top20-tail0`, so it is known before any job runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftrl import io, peak
from sftrl.names import BASE, OOD, is_rl_model, model_step, read_metrics, rl_run, sft_model
from sftrl.restoration.spec import EditError, EditSpec, check_counts, check_scope, dedupe_layer_edits, parse_edits

SINGLE_ROLES = ("base", "sft_peak", "sft_end")
GROUP_ROLES = ("rl", "rl_from_end")
DATA_ROLES = ("sft_peak",)  # known only once the SFT checkpoints are evaluated
EDITS_DIR = "edits"


class RoleError(ValueError):
    """An unknown role, or a role that names no model of this experiment."""


def rl_start(model: str) -> str:
    """The SFT checkpoint an RL model starts from."""
    try:
        return rl_run(model).start
    except ValueError as error:
        raise RoleError(str(error)) from None


def sft_end_model(sft_steps: Sequence[int], configured: int | None = None) -> str:
    """The checkpoint playing sft_end: the configured step, which must be on the ladder, or the last one."""
    if not sft_steps:
        raise RoleError("the SFT ladder has no checkpoints")
    if configured is None:
        return sft_model(max(sft_steps))
    if configured not in sft_steps:
        raise RoleError(f"restore.sft_end = {configured} is not on the SFT ladder {sorted(sft_steps)}")
    return sft_model(configured)


def expand_role(role: str, rl_models: Sequence[str], sft_end: str) -> list[str]:
    """The role tokens a config role stands for: itself, or the RL models of a group."""
    if role in SINGLE_ROLES:
        return [role]
    if role == "rl":
        if not rl_models:
            raise RoleError("role 'rl' names no model: the experiment has no RL runs")
        return list(rl_models)
    if role == "rl_from_end":
        chosen = [m for m in rl_models if rl_start(m) == sft_end]
        if not chosen:
            starts = sorted({rl_run(m).step for m in rl_models})
            raise RoleError(
                f"role 'rl_from_end' names no model: no RL run starts from sft_end ({sft_end}); "
                f"RL starts from steps {starts} (set rl.from_steps or restore.sft_end)"
            )
        return chosen
    if is_rl_model(role):
        if role not in rl_models:
            raise RoleError(f"role {role!r} is not among the RL runs of this experiment {list(rl_models)}")
        return [role]
    raise RoleError(f"unknown role {role!r}; expected one of {[*SINGLE_ROLES, *GROUP_ROLES]} or an RL model name")


def static_model(token: str, sft_end: str) -> str | None:
    """The model a role token names when that is known without evaluation results, else None."""
    if token == "base":
        return BASE
    if token == "sft_end":
        return sft_end
    if token in DATA_ROLES:
        return None
    if is_rl_model(token):
        return token
    raise RoleError(f"unknown role {token!r}")


def choose_roles(
    eval_root: str | Path,
    sft_models: Iterable[str],
    rl_models: Iterable[str],
    sft_end: str,
    peak_rule: str = "selection_half",
) -> dict[str, Any]:
    """The roles of an experiment with the OOD numbers sft_peak was chosen from (see the module docstring);
    `peak_rule` (`sftrl.peak.PEAK_RULES`) picks sft_peak, and the peak of every rule is recorded."""
    eval_root = Path(eval_root)
    sft_models = sorted(sft_models, key=model_step)
    rl_models = list(rl_models)
    if peak_rule not in peak.PEAK_RULES:
        raise RoleError(f"unknown peak rule {peak_rule!r}; expected one of {list(peak.PEAK_RULES)}")
    if sft_end not in sft_models:
        raise RoleError(f"sft_end {sft_end!r} is not among the SFT checkpoints {sft_models}")
    split = peak.ood_halves(eval_root, sft_models)
    peaks = {rule: peak.ood_peak(eval_root, sft_models, split, rule) for rule in peak.PEAK_RULES}
    sft_peak = peaks[peak_rule]
    ood = []
    for model in sft_models:
        success = read_metrics(eval_root, model, OOD)["success"]
        ood.append(
            {
                "model": model,
                "step": model_step(model),
                **{k: success[k] for k in ("rate", "ci_low", "ci_high", "n")},
                **split[model],
            }
        )
    return {
        "roles": {"base": "base", "sft_peak": sft_peak, "sft_end": sft_end},
        "steps": {"base": 0, "sft_peak": model_step(sft_peak), "sft_end": model_step(sft_end)},
        "rl": rl_models,
        "rl_from_end": [m for m in rl_models if rl_start(m) == sft_end],
        "rule": peak.PEAK_RULES[peak_rule][1],
        "peak_rule": peak_rule,
        "peaks": {rule: {"model": model, "step": model_step(model)} for rule, model in peaks.items()},
        "selection": {
            "split": peak.SELECTION_SPLIT,
            "chosen_on": "selection half (even item positions)",
            "measured_on": "report half (odd item positions)",
        },
        "ood": ood,
    }


def resolve(roles: Mapping[str, Any], token: str) -> str:
    """The model name of a role token, given a `choose_roles` result (roles.json)."""
    if token in roles["roles"]:
        return roles["roles"][token]
    if token in roles.get("rl", []):
        return token
    raise RoleError(f"unknown role {token!r}; roles.json knows {sorted(roles['roles'])} and {roles.get('rl', [])}")


def read_roles(path: str | Path) -> dict[str, Any]:
    return io.read_json(path)


@dataclass(frozen=True)
class RestorePair:
    """The edits of one target with one source (role tokens), applied in one job."""

    source: str
    target: str
    specs: tuple[EditSpec, ...]

    @property
    def group(self) -> str:
        return f"{self.source}__{self.target}"

    @property
    def directory(self) -> str:
        """The directory, relative to the models directory, holding one model per edit."""
        return f"{EDITS_DIR}/{self.group}"

    def model(self, spec: EditSpec) -> str:
        return f"{self.directory}/{spec.name}"

    @property
    def models(self) -> list[str]:
        return [self.model(spec) for spec in self.specs]

    def edits_json(self) -> str:
        return json.dumps([spec.to_dict() for spec in self.specs], sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "edits": [s.to_dict() for s in self.specs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RestorePair:
        return cls(data["source"], data["target"], tuple(EditSpec.from_dict(e) for e in data["edits"]))


def restore_pairs(
    pairs: Iterable[Mapping[str, Any]],
    rl_models: Sequence[str],
    sft_end: str,
    num_layers: int | None = None,
    model_config: Mapping[str, Any] | None = None,
    grid: Mapping[str, Any] | None = None,
) -> list[RestorePair]:
    """The restoration grid of the config (`restore.pairs`), with group roles expanded into models.

    Each entry is {source, target, edits}. Errors name the entry: an unknown role, a group that names no
    model, a source equal to its target, a pair given twice, a bad edit. Layer resets that copy the same
    layers of a `num_layers`-layer model are kept once (the first in the list). With the base's
    `model_config` (config.json), a scope that names no parameter of the model, or an edit count above every
    matrix's rank, is refused. `grid` sets what applies to every edit (`covering`, `round_trip`).
    """
    result: list[RestorePair] = []
    seen: dict[tuple[str, str], int] = {}
    for position, entry in enumerate(pairs):
        where = f"restore.pairs[{position}]"
        unknown = sorted(set(entry) - {"source", "target", "edits"})
        if unknown:
            raise RoleError(f"{where}: unknown key(s) {unknown}; expected source, target, edits")
        try:
            sources = expand_role(entry["source"], rl_models, sft_end)
            targets = expand_role(entry["target"], rl_models, sft_end)
        except RoleError as error:
            raise RoleError(f"{where}: {error}") from None
        specs = parse_edits([{**(grid or {}), **edit} for edit in entry["edits"]], f"{where}.edits")
        check_scope(specs, model_config, f"{where}.edits")
        check_counts(specs, model_config, f"{where}.edits")
        try:
            specs, _ = dedupe_layer_edits(specs, num_layers)
        except EditError as error:
            raise EditError(f"{where}.edits: {error}") from None
        for source in sources:
            for target in targets:
                if source == target:
                    raise RoleError(f"{where}: source and target are both {source!r}")
                if (source, target) in seen:
                    raise RoleError(
                        f"{where}: the pair {source} -> {target} is also in restore.pairs[{seen[source, target]}]; "
                        "give each pair's edits in one entry"
                    )
                seen[source, target] = position
                result.append(RestorePair(source, target, tuple(specs)))
    return result
