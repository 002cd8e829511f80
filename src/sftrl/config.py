"""Typed views of the experiment config, one dataclass per section.

The JSON schema (schemas/config.schema.yaml) is the contract the Snakefile validates; these classes give
scripts and library code named, typed fields and fail loudly on a key the code does not know. Their
defaults, and those of each stage's config dataclass, are the values of config.yaml, so code that leaves a
key out gets what the default run uses (tests/test_config.py holds the two together).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sftrl.cards.formats import ANSWER_LAYOUTS as PRETRAIN_ANSWER_LAYOUTS
from sftrl.cards.verify import STRICT_LAYOUTS, Rewards

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


# Keys a config may still hold under an old name: (old dotted path, new name); refused before the schema,
# naming the new key, so an old experiment config fails with what to change rather than an unknown key.
RENAMED_KEYS = (("rl.ppo.lr_scheduler", "lr_scheduler_type"),)


def check_renamed_keys(config: Mapping[str, Any]) -> None:
    for old, new in RENAMED_KEYS:
        *parents, key = old.split(".")
        section: Any = config
        for part in parents:
            section = section.get(part, {}) if isinstance(section, Mapping) else {}
        if isinstance(section, Mapping) and key in section:
            where = ".".join(parents)
            raise ValueError(f"{old} is now {where}.{new} (as the other stages spell it): rename it in your config")


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


def load_json_arg(text_or_path: str) -> Any:
    """A JSON argument: inline (an object or a list) or a path to a JSON/YAML file (what the rules pass,
    `sftrl.job_config`)."""
    if text_or_path.lstrip()[:1] in ("{", "["):
        return json.loads(text_or_path)
    path = Path(text_or_path)
    if path.suffix in {".yaml", ".yml"}:
        import yaml

        return yaml.safe_load(path.read_text())
    return json.loads(path.read_text())


@dataclass(frozen=True)
class TaskConfig:
    target: int = 24
    style: str = "compact"
    max_attempts: int = 5
    rewards: Rewards = field(default_factory=Rewards)  # the verifier's own rewards, read from task.rewards
    feedback: str = "sftrl"  # the feedback turn's words: this verifier's, or the reference verifier's verbatim
    strict_layout: bool = True  # compact: only its own answer layout counts (`cards.verify`); paper: any, always

    def __post_init__(self) -> None:
        from sftrl.cards.episode import FEEDBACK_TEXTS

        if self.feedback not in FEEDBACK_TEXTS:
            raise ValueError(f"task.feedback {self.feedback!r}: expected one of {list(FEEDBACK_TEXTS)}")
        if self.feedback == "reference" and self.style != "paper":
            raise ValueError(
                "task.feedback reference: the reference verifier's messages are English sentences about the "
                f"paper's JSON answer, which the task.style {self.style!r} model neither writes nor can read; "
                "set task.feedback: sftrl, or task.style: paper"
            )

    @property
    def layout(self) -> str | None:
        """The only answer layout the verifier counts (`cards.verify`'s `layout`), or None: any. The paper
        style has none: it is read in any layout, as the reference verifier reads it."""
        return self.style if self.strict_layout and self.style in STRICT_LAYOUTS else None

    def episode(self, hand, rule, target: int | None = None, max_attempts: int | None = None):
        """A game of this task (`cards.Episode`): its style, attempts, rewards, feedback and layout."""
        from sftrl.cards.episode import Episode

        return Episode(
            hand,
            rule,
            target=self.target if target is None else target,
            style=self.style,
            max_attempts=self.max_attempts if max_attempts is None else max_attempts,
            rewards=self.rewards,
            feedback_text=self.feedback,
            strict_layout=self.layout is not None,
        )


ANSWER_LAYOUTS = ("json", "authors")  # the generated SFT answer: one-line JSON, or the authors' response template


@dataclass(frozen=True)
class SftDataConfig:
    hands: int = 300
    solutions_per_hand: int = 3
    orders_per_solution: int = 1
    answer_layout: str = "json"
    file: str | None = None  # an SFT set in the authors' format (sftrl.sft_file) instead of the generated one

    def __post_init__(self) -> None:
        if self.answer_layout not in ANSWER_LAYOUTS:
            raise ValueError(f"data.sft.answer_layout {self.answer_layout!r}: expected one of {list(ANSWER_LAYOUTS)}")


@dataclass(frozen=True)
class EvalDataConfig:
    id: int = 200
    id_unseen: int = 200
    ood: int = 300
    loss_examples: int = 200


@dataclass(frozen=True)
class RlDataConfig:
    prompts: int = 2000


@dataclass(frozen=True)
class PretrainDataConfig:
    examples: int = 153600
    targets: tuple[int, int] = (12, 36)
    exclude_targets: tuple[int, ...] = ()
    retry_share: float = 0.5
    failed_attempts: tuple[int, int] = (1, 4)
    answer_layout: str = "task"  # the layout the base is taught to answer in (`cards.ANSWER_LAYOUTS`)

    def __post_init__(self) -> None:
        if self.answer_layout not in PRETRAIN_ANSWER_LAYOUTS:
            raise ValueError(
                f"data.pretrain.answer_layout {self.answer_layout!r}: expected one of {list(PRETRAIN_ANSWER_LAYOUTS)}"
            )


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


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the embedded model: a small Llama, about 3M parameters at these defaults."""

    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 768
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    attention_bias: bool = False  # True: q/k/v biases, as Qwen2 has
    vocab_size: int | None = None  # None: the tokenizer's size; larger: rows no token reaches (a real model's shape)

    def config_json(self) -> dict[str, Any]:
        """What the dry run reads of a base's config.json, for the tiny base before it is built
        (`modeling.build_tiny_model` makes it a Llama)."""
        return {"model_type": "llama", **dataclasses.asdict(self)}


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


# --- checks across sections, before any job -------------------------------------------------------

HUB_PREFIX = "hf:"  # model.source naming a hub id (the only case that touches the network)
BASE_READING_SPECTRA = {"base_to_sft", "base_to_rl", "sft_vs_rl"}  # spectrum pairs that read the base's weights
ANGLE_SPECTRA = {"base_to_sft", "base_to_rl"}  # spectrum pairs whose principal angles F2 reads


def base_seed(config: Mapping[str, Any]) -> int:
    """The seed the tiny base is built with (`model.base_seed`, else the experiment's)."""
    seed = config["model"].get("base_seed")
    return config["seed"] if seed is None else seed


def check_experiment(
    config: Mapping[str, Any],
    sft_steps: Sequence[int],
    rl_models: Sequence[str],
    restore_pairs: Sequence[Any],
    sft_end: str,
) -> None:
    """What no single section can tell: settings that contradict each other, each refused with the keys to
    change. `sft_steps` is the ladder, `rl_models` the configured RL runs, `restore_pairs` the restoration
    grid (`sftrl.roles.RestorePair`) and `sft_end` the checkpoint playing that role."""
    from sftrl.names import rl_run

    from_steps = config["rl"]["from_steps"]
    if from_steps not in ("all", "plan"):
        off_ladder = sorted(set(from_steps) - set(sft_steps))
        if off_ladder:
            raise ValueError(f"rl.from_steps {off_ladder} are not on the SFT ladder {list(sft_steps)}")
    source = config["model"]["source"]
    if config["model"].get("base_seed") is not None and source != "tiny":
        raise ValueError(
            f"model.base_seed builds a tiny base, but model.source is {source!r}: set model.source: tiny, or model.base_seed: null"
        )
    spectra = set(config["spectrum"]["pairs"])
    if source.startswith(HUB_PREFIX) and (
        spectra & BASE_READING_SPECTRA or any("base" in (pair.source, pair.target) for pair in restore_pairs)
    ):
        raise ValueError(
            f"model.source {source} is a hub id, but spectral analysis and restoration read the base model's "
            "weights from a directory: download it and set model.source to that directory, or leave the base "
            "out of spectrum.pairs and restore.pairs"
        )
    if from_steps == "plan":
        if config["plan"]["rl_budget"] is None:
            raise ValueError(
                "rl.from_steps is 'plan' but plan.rl_budget is null: give the GPU-hours the RL runs may use"
            )
        tokens = {token for pair in restore_pairs for token in (pair.source, pair.target)}
        unplanned = sorted(t for t in tokens if t in rl_models and rl_run(t).start != sft_end)
        if unplanned:
            raise ValueError(
                f"restore.pairs names RL runs {unplanned}, but with rl.from_steps: plan only the runs from "
                f"sft_end ({sft_end}) are sure to exist: use the role rl_from_end"
            )
    angle = config["report"]["claims"]["angle_k_fraction"]
    if spectra & ANGLE_SPECTRA and not any(abs(f - angle) < 1e-9 for f in config["spectrum"]["k_fractions"]):
        raise ValueError(
            f"report.claims.angle_k_fraction {angle} is not among spectrum.k_fractions "
            f"{config['spectrum']['k_fractions']}"
        )


def restore_plan_spec(config: Mapping[str, Any], restore_pairs: Sequence[Any]) -> Any:
    """The measured sft_peak -> sft_end edit the cheapest-restoration plan narrows (`plan.restore_edit`),
    or None where the grid has no such pair or no plan is asked for; an edit that is not one of the pair's
    SVD edits is refused."""
    from sftrl.restoration.spec import SVD_KINDS

    pair = next((p for p in restore_pairs if (p.source, p.target) == ("sft_peak", "sft_end")), None)
    if pair is None or config["plan"]["restore_target"] is None:
        return None
    named = {spec.name: spec for spec in pair.specs}
    spec = named.get(config["plan"]["restore_edit"])
    if spec is None or spec.kind not in SVD_KINDS:
        raise ValueError(
            f"plan.restore_edit {config['plan']['restore_edit']!r} is not an SVD edit of the sft_peak -> sft_end "
            f"pair of restore.pairs; its SVD edits are {[n for n, s in named.items() if s.kind in SVD_KINDS]}"
        )
    return spec
