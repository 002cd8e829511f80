"""Typed views of the experiment config, one dataclass per section.

The JSON schema (schemas/config.schema.yaml) is the contract the Snakefile validates; these classes give
scripts and library code named, typed fields and fail loudly on a key the code does not know.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sftrl.cards.verify import Rewards

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass `cls` from `data`, recursing into dataclass fields; unknown keys are an error."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        kind = known[name].type
        sub = _DATACLASSES.get(kind) if isinstance(kind, str) else None
        kwargs[name] = from_dict(sub, value, f"{where}.{name}") if sub and isinstance(value, dict) else value
    return cls(**kwargs)


def load_json_arg(text_or_path: str) -> dict[str, Any]:
    """A `--config` argument: inline JSON (what the rules pass) or a path to a JSON/YAML file."""
    if text_or_path.lstrip().startswith("{"):
        return json.loads(text_or_path)
    path = Path(text_or_path)
    if path.suffix in {".yaml", ".yml"}:
        import yaml

        return yaml.safe_load(path.read_text())
    return json.loads(path.read_text())


@dataclass(frozen=True)
class TaskConfig:
    target: int = 24
    style: str = "paper"
    max_attempts: int = 5
    rewards: Rewards = field(default_factory=Rewards)  # the verifier's own rewards, read from task.rewards


@dataclass(frozen=True)
class SftDataConfig:
    hands: int = 300
    solutions_per_hand: int = 3
    orders_per_solution: int = 1


@dataclass(frozen=True)
class EvalDataConfig:
    id: int = 234
    id_unseen: int = 234
    ood: int = 234
    loss_examples: int = 200


@dataclass(frozen=True)
class RlDataConfig:
    prompts: int = 2000


@dataclass(frozen=True)
class PretrainDataConfig:
    examples: int = 40000
    targets: tuple[int, int] = (12, 36)
    exclude_targets: tuple[int, ...] = (22, 23, 24, 25, 26)
    retry_share: float = 0.0
    failed_attempts: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class DataConfig:
    id_unseen_share: float = 0.2
    sft: SftDataConfig = field(default_factory=SftDataConfig)
    eval: EvalDataConfig = field(default_factory=EvalDataConfig)
    rl: RlDataConfig = field(default_factory=RlDataConfig)
    pretrain: PretrainDataConfig = field(default_factory=PretrainDataConfig)


_DATACLASSES = {
    cls.__name__: cls
    for cls in (
        Rewards,
        TaskConfig,
        SftDataConfig,
        EvalDataConfig,
        RlDataConfig,
        PretrainDataConfig,
        DataConfig,
    )
}


def ladder_steps(max_steps: int, save_every: int, extra_steps: list[int] | tuple[int, ...] = ()) -> list[int]:
    """The SFT checkpoint ladder: every `save_every` steps, the extra (early, dense) steps, and the end."""
    if max_steps < 1 or save_every < 1:
        raise ValueError(f"sft: max_steps ({max_steps}) and save_every ({save_every}) must be positive")
    outside = sorted(s for s in extra_steps if not 1 <= s <= max_steps)
    if outside:
        raise ValueError(f"sft.extra_steps {outside} lie outside the ladder 1..{max_steps}")
    return sorted({*range(save_every, max_steps + 1, save_every), *extra_steps, max_steps})


def check_schedule(max_steps: int, schedule_steps: int | None, where: str = "sft") -> None:
    """The learning-rate schedule may span more steps than are trained (the paper's cosine spans one
    epoch, its ladder stops long before), never fewer: the last steps would run past the schedule."""
    if schedule_steps is not None and schedule_steps < max_steps:
        raise ValueError(
            f"{where}.schedule_steps ({schedule_steps}) is below {where}.max_steps ({max_steps}), the last "
            f"trained step: set it to {max_steps} or more, or null for a schedule that ends at max_steps"
        )
