"""The representation table and figure: each model against sft_peak, and what RL changed.

One row per (split, metric, compared model): the metric's value with a bootstrap interval over prompts;
for an RL run that starts from sft_end, also the recovery Δ (how much closer to sft_peak the RL model is
than sft_end, oriented so that > 0 means closer) with its paired bootstrap interval, and for the per-prompt
metrics the share of prompts on which the RL model is the closer one. The RBF bandwidth of MMD² is the
median heuristic on the reference's own features, so every model is measured with the same kernel.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sftrl import io
from sftrl.names import EVAL_SPLITS, is_rl_model, rl_run
from sftrl.outputs import SPLIT_STYLE, save_figure, write_table
from sftrl.representations.metrics import (
    METRICS,
    Comparison,
    check_same_prompts,
    median_bandwidth,
    paired_bootstrap,
    win_rate,
)

COLUMNS = (
    "split",
    "metric",
    "reference",
    "model",
    "role",
    "value",
    "ci_low",
    "ci_high",
    "higher_is_closer",
    "delta",
    "delta_low",
    "delta_high",
    "win_rate",
    "prompts",
)
ARRAYS = ("a", "b", "js", "topk")


@dataclass(frozen=True)
class PairFeatures:
    """What one pair job wrote: the reference `a`, the model `b`, and per split the prompts' features."""

    a: str
    b: str
    splits: Mapping[str, Mapping[str, np.ndarray]]  # split -> uids, a, b, js, topk
    meta: Mapping[str, Any]


def write_pair(path: str | Path, pair: PairFeatures) -> None:
    meta = {**pair.meta, "a": pair.a, "b": pair.b, "splits": list(pair.splits)}
    arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta, sort_keys=True))}
    arrays.update((f"{split}.{key}", value) for split, data in pair.splits.items() for key, value in data.items())
    with io.atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def read_pair(path: str | Path) -> PairFeatures:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        splits = {split: {key: data[f"{split}.{key}"] for key in ("uids", *ARRAYS)} for split in meta["splits"]}
    return PairFeatures(meta["a"], meta["b"], splits, meta)


def role_of(model: str, roles: Mapping[str, Any]) -> str:
    """How a compared model enters the study: sft_end, an RL run from sft_end, or a configured pair."""
    if model == roles["roles"]["sft_end"]:
        return "sft_end"
    if is_rl_model(model) and model in roles.get("rl_from_end", []):
        return "rl_from_end"
    return "pair"


def _check_reference(pairs: Sequence[PairFeatures], split: str) -> None:
    """Every file with the same reference must hold the same reference features (same model, same prompts)."""
    check_same_prompts([list(p.splits[split]["uids"]) for p in pairs])
    first = pairs[0].splits[split]["a"]
    for pair in pairs[1:]:
        if not np.allclose(pair.splits[split]["a"], first, rtol=1e-4, atol=1e-5):
            raise ValueError(f"the features of {pair.a} differ between its comparisons on {split}; rebuild them")


def summary_rows(
    pairs: Sequence[PairFeatures], roles: Mapping[str, Any], draws: int, seed: int, workers: int = 1
) -> list[dict[str, Any]]:
    """The table's rows (module docstring), split by split, reference by reference; `workers` processes
    share each bootstrap's resamples."""
    rows = []
    for split in [s for s in EVAL_SPLITS if any(s in p.splits for p in pairs)]:
        by_reference: dict[str, list[PairFeatures]] = {}
        for pair in pairs:
            if split in pair.splits:
                by_reference.setdefault(pair.a, []).append(pair)
        for group in by_reference.values():
            rows += _group_rows(split, group, roles, draws, seed, workers)
    return rows


ROLE_ORDER = {"sft_end": 0, "rl_from_end": 1, "pair": 2}


def _group_rows(
    split: str, group: Sequence[PairFeatures], roles: Mapping[str, Any], draws: int, seed: int, workers: int
) -> list[dict[str, Any]]:
    """The rows of every model compared with one reference on one split, from one paired bootstrap."""
    _check_reference(group, split)
    end = roles["roles"]["sft_end"]
    bandwidth = median_bandwidth(group[0].splits[split]["a"])
    comparisons = {}
    for pair in group:
        data = pair.splits[split]
        comparisons[pair.b] = Comparison.of(data["a"], data["b"], {"js": data["js"], "topk": data["topk"]}, bandwidth)
    models = sorted(comparisons, key=lambda m: (ROLE_ORDER[role_of(m, roles)], m))
    rl_runs = [m for m in models if role_of(m, roles) == "rl_from_end" and end in comparisons]
    intervals, deltas = paired_bootstrap(
        {m: comparisons[m] for m in models}, [(end, rl) for rl in rl_runs], draws, seed, workers=workers
    )
    rows = []
    for model in models:
        for metric in METRICS:
            value, delta = intervals[model, metric], deltas.get((model, metric))
            rows.append(
                {
                    "split": split,
                    "metric": metric,
                    "reference": group[0].a,
                    "model": model,
                    "role": role_of(model, roles),
                    "value": value.value,
                    "ci_low": value.low,
                    "ci_high": value.high,
                    "higher_is_closer": METRICS[metric].higher_is_closer,
                    "delta": delta and delta.value,
                    "delta_low": delta and delta.low,
                    "delta_high": delta and delta.high,
                    "win_rate": delta
                    and win_rate(
                        metric, comparisons[end].per_prompt.get(metric), comparisons[model].per_prompt.get(metric)
                    ),
                    "prompts": len(group[0].splits[split]["uids"]),
                }
            )
    return rows


def write_summary(rows: Sequence[Mapping[str, Any]], csv_path: str | Path) -> None:
    write_table(rows, COLUMNS, csv_path)


def plot_summary(rows: Sequence[Mapping[str, Any]], png_path: str | Path, reference: str) -> list[Path]:
    """One panel per metric: each model's value against `reference` per split with its interval, on an axis
    that starts where the values do, so the gap between sft_end and an RL run shows."""
    from matplotlib.figure import Figure

    from sftrl.rl import algorithm_colour

    rows = [r for r in rows if r["reference"] == reference]
    models = list(dict.fromkeys(r["model"] for r in rows))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    step = 0.6 / max(1, len(models))
    for ax, (name, metric) in zip(axes, METRICS.items(), strict=False):
        for i, model in enumerate(models):
            cells = [
                (j, r)
                for j, s in enumerate(splits)
                for r in rows
                if r["metric"] == name and r["model"] == model and r["split"] == s
            ]
            role = cells[0][1]["role"] if cells else "pair"
            colour = algorithm_colour(rl_run(model).algorithm) if is_rl_model(model) else "0.45"
            xs = [j + (i - (len(models) - 1) / 2) * step for j, _ in cells]
            # the interval as a line of its own: a BCa interval need not contain the estimate
            ax.vlines(xs, [r["ci_low"] for _, r in cells], [r["ci_high"] for _, r in cells], color=colour)
            ax.plot(
                xs,
                [r["value"] for _, r in cells],
                "s" if role == "sft_end" else "o",
                color=colour,
                label=f"{model} ({role})",
            )
        ax.set_xticks(range(len(splits)), [SPLIT_STYLE[s]["label"].split(" (")[0] for s in splits])
        ax.set_xlim(-0.5, len(splits) - 0.5)
        ax.set_title(f"{metric.label}\n({'higher' if metric.higher_is_closer else 'lower'} = closer)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, title=f"against {reference} (sft_peak)", title_fontsize=7)
    fig.suptitle(f"Representations of the evaluation prompts: each model against {reference} (95% bootstrap)")
    return save_figure(fig, png_path)
