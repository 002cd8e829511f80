"""The study's names in one place: the evaluation splits, the models' names (built and parsed) and where a
model's evaluation results lie. The rules (`rules/common.smk`) and the library both take them from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftrl import io

EVAL_SPLITS = ("id", "id_unseen", "ood")  # every model is evaluated on these, tables list them in this order
LOSS_SPLITS = ("id_unseen", "ood")  # held-out sets whose loss SFT logs
OOD = "ood"  # the split of the study's question: the OOD peak is chosen and the claims tested on it

BASE = "base"
SFT_MODEL_RE = re.compile(r"^sft-(?P<step>\d+)$")
# An RL run's final policy is `rl-ALGO-fromSTEP-sSEED`; its policy after update U, exported along the run
# (`rl.eval_updates`, `rl.analysed_update`), is that name with `-uU`.
RL_MODEL_RE = re.compile(r"^rl-(?P<algo>[a-z]+)-from(?P<step>\d+)-s(?P<seed>\d+)(?:-u(?P<update>\d+))?$")


def sft_model(step: int) -> str:
    """The ladder checkpoint of an SFT step."""
    return f"sft-{step}"


def model_step(model: str) -> int:
    """The SFT step a model stands at on the curve: 0 for the base, N for `sft-N`."""
    if model == BASE:
        return 0
    match = SFT_MODEL_RE.match(model)
    if not match:
        raise ValueError(f"{model!r} is not an SFT checkpoint name (sft-STEP)")
    return int(match["step"])


def rl_model(algorithm: str, step: int, seed: int, update: int | None = None) -> str:
    """The RL run of an algorithm from an SFT step with a seed: its final policy, or with `update` its
    policy after that many updates (PPO updates, GRPO steps)."""
    return f"rl-{algorithm}-from{step}-s{seed}" + ("" if update is None else f"-u{update}")


@dataclass(frozen=True)
class RlRun:
    """An RL model's name, parsed; `update` None for the run's final policy."""

    algorithm: str
    step: int
    seed: int
    update: int | None = None

    @property
    def start(self) -> str:
        """The SFT checkpoint it starts from."""
        return sft_model(self.step)

    @property
    def run(self) -> str:
        """The run's own name (its final policy), which names its log and benchmark files."""
        return rl_model(self.algorithm, self.step, self.seed)


def is_rl_model(name: str) -> bool:
    return RL_MODEL_RE.match(name) is not None


def rl_run(model: str) -> RlRun:
    match = RL_MODEL_RE.match(model)
    if not match:
        raise ValueError(f"{model!r} is not an RL model name (rl-ALGO-fromSTEP-sSEED, or with -uUPDATE)")
    update = int(match["update"]) if match["update"] is not None else None
    return RlRun(match["algo"], int(match["step"]), int(match["seed"]), update)


def eval_dir(eval_root: str | Path, model: str, split: str) -> Path:
    """Where the evaluation of a model on a split writes `metrics.json` and `samples.jsonl`."""
    return Path(eval_root) / model / split


def metrics_path(eval_root: str | Path, model: str, split: str) -> Path:
    return eval_dir(eval_root, model, split) / "metrics.json"


def samples_path(eval_root: str | Path, model: str, split: str) -> Path:
    return eval_dir(eval_root, model, split) / "samples.jsonl"


def read_metrics(eval_root: str | Path, model: str, split: str) -> dict[str, Any]:
    """A model's `metrics.json` on a split; a FileNotFoundError names the file where it is missing."""
    path = metrics_path(eval_root, model, split)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file {path} (model {model}, split {split}) does not exist")
    return io.read_json(path)
