"""The OOD peak: which SFT checkpoint plays `sft_peak`, and on which episodes it is chosen.

The peak is the best of many checkpoints. Chosen and measured on the same episodes, its score is biased
upwards (the winner's curse) and so is every gap measured from it. So the peak is chosen on the
*selection half* of the OOD episodes — the eval items at even positions of `eval_ood.jsonl` (0, 2, 4, …) —
and the claims measure it, and every gap from it, on the other items, the *report half*. Among
checkpoints of equal selection score the earliest step wins (the first to reach the best score).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from sftrl.names import OOD, model_step, samples_path
from sftrl.stats import Outcomes

SELECTION_SPLIT = OOD
RULE = (
    "sft_peak: the SFT checkpoint with the best OOD success on the selection half of the OOD episodes "
    "(eval items at even positions of eval_ood.jsonl); a tie goes to the earliest step. The claims measure "
    "it on the other half."
)
AUTHORS_RULE = (
    "the authors' peak: the SFT checkpoint with the best OOD success over all OOD episodes (an argmax, the "
    "earliest step on a tie), chosen and measured on the same episodes, so its rate is biased upwards."
)
# restore.peak_rule: which rule picks the checkpoint playing sft_peak, and the halves() key it ranks by.
PEAK_RULES = {"selection_half": ("selection_rate", RULE), "all_episodes": ("all_rate", AUTHORS_RULE)}


def item_of(uid: str) -> str:
    """The eval item of an episode uid (sampled copies of an item are `uid#sample`)."""
    return uid.split("#", 1)[0]


def selection_mask(uids: Sequence[str]) -> np.ndarray:
    """True for the episodes of the selection half: items at even positions, in order of appearance."""
    positions: dict[str, int] = {}
    for uid in uids:
        positions.setdefault(item_of(uid), len(positions))
    return np.array([positions[item_of(uid)] % 2 == 0 for uid in uids], dtype=bool)


def report_mask(uids: Sequence[str]) -> np.ndarray:
    """True for the episodes of the report half (the complement of the selection half)."""
    return ~selection_mask(uids)


def halves(outcomes: Outcomes) -> dict[str, float | int]:
    """Success on the selection half, on the report half and on all episodes, with their sizes."""
    chosen = selection_mask(outcomes.uids)
    return {
        "selection_rate": float(outcomes.success[chosen].mean()) if chosen.any() else float("nan"),
        "selection_n": int(chosen.sum()),
        "report_rate": float(outcomes.success[~chosen].mean()) if (~chosen).any() else float("nan"),
        "report_n": int((~chosen).sum()),
        "all_rate": float(outcomes.success.mean()) if len(outcomes.success) else float("nan"),
    }


def peak_index(rates: Sequence[float]) -> int:
    """The position of the best rate, the earliest on a tie (rates in step order)."""
    if not len(rates):
        raise ValueError("no checkpoints to choose a peak from")
    best = max(rates)
    return next(i for i, rate in enumerate(rates) if rate == best)


def ood_halves(eval_root: str | Path, sft_models: Iterable[str]) -> dict[str, dict]:
    """Per SFT checkpoint, in step order, its OOD success on the selection and the report half."""
    halves_of = {}
    for model in sorted(sft_models, key=model_step):
        path = samples_path(eval_root, model, SELECTION_SPLIT)
        if not path.is_file():
            raise FileNotFoundError(f"samples file {path} does not exist")
        halves_of[model] = halves(Outcomes.read(path, model))
    return halves_of


def ood_peak(
    eval_root: str | Path,
    sft_models: Iterable[str],
    split: dict[str, dict] | None = None,
    rule: str = "selection_half",
) -> str:
    """The OOD peak by `rule` (PEAK_RULES): the best OOD success on the selection half, or over all episodes
    (the authors'), the earliest step on a tie; `split`: `ood_halves` already read."""
    if rule not in PEAK_RULES:
        raise ValueError(f"unknown peak rule {rule!r}; expected one of {list(PEAK_RULES)}")
    split = ood_halves(eval_root, sft_models) if split is None else split
    if not split:
        raise ValueError("no SFT checkpoints given")
    models = list(split)
    return models[peak_index([split[m][PEAK_RULES[rule][0]] for m in models])]
