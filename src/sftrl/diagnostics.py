"""The revision's diagnostics: how format errors grow over SFT, and the shape of PPO's advantages per start.

- Format errors: the share of attempts whose reply is no formula at all (`illegal_formula`, `unparsable`;
  `evaluate.metrics`' `format_error_rate`) per SFT step and split, on every attempt and on the first.
- Advantages: the normalised per-turn advantages PPO logged in every update (`history.jsonl`), pooled over
  the updates and seeds of one start checkpoint; their spread and skew tell whether RL had a signal to
  follow from that start.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from sftrl.names import EVAL_SPLITS, rl_run
from sftrl.outputs import SPLIT_STYLE, new_figure, save_figure

FORMAT_ERRORS = ("illegal_formula", "unparsable")
FORMAT_COLUMNS = ("step", "split", "format_error_rate", "format_error_rate_first", "attempts", "first_attempts")
PERCENTILES = (5, 50, 95)
ADVANTAGE_COLUMNS = (
    *("algorithm", "start_step", "turns", "mean", "std", "skewness", "positive_share"),
    *(f"p{q:02d}" for q in PERCENTILES),
)


def format_error_row(step: int, split: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One model's format-error shares on one split, from its metrics.json."""
    first = metrics["verdicts_first_attempt"]
    first_errors = sum(first["counts"].get(v, 0) for v in FORMAT_ERRORS)
    return {
        "step": step,
        "split": split,
        "format_error_rate": metrics["format_error_rate"],
        "format_error_rate_first": first_errors / first["n"] if first["n"] else None,
        "attempts": metrics["n_attempts"],
        "first_attempts": first["n"],
    }


def plot_format_errors(rows: Sequence[Mapping[str, Any]], png_path: str | Path) -> list[Path]:
    """Format-error share over SFT steps per split: every attempt (solid) and first attempts (dashed)."""
    fig, ax = new_figure()
    for split in EVAL_SPLITS:
        mine = sorted((r for r in rows if r["split"] == split), key=lambda r: r["step"])
        if not mine:
            continue
        style = SPLIT_STYLE[split]
        steps = [r["step"] for r in mine]
        ax.plot(
            steps,
            [100 * r["format_error_rate"] for r in mine],
            marker="o",
            color=style["color"],
            label=f"{style['label']}: all attempts",
        )
        first = [np.nan if r["format_error_rate_first"] is None else 100 * r["format_error_rate_first"] for r in mine]
        ax.plot(steps, first, linestyle="--", color=style["color"], alpha=0.7, label="first attempts")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("SFT step (0 = base)")
    ax.set_ylabel("attempts with no valid formula (%)")
    ax.set_title("Format errors over SFT")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, png_path)


def advantages_by_start(histories: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[tuple[str, int], np.ndarray]:
    """(algorithm, start step) -> every logged advantage of its runs (model name -> history rows)."""
    pooled: dict[tuple[str, int], list[float]] = defaultdict(list)
    for model, rows in histories.items():
        run = rl_run(model)
        for row in rows:
            pooled[run.algorithm, run.step] += row.get("advantages", [])
    return {key: np.asarray(values, dtype=np.float64) for key, values in sorted(pooled.items()) if values}


def advantage_rows(pooled: Mapping[tuple[str, int], np.ndarray]) -> list[dict[str, Any]]:
    """The shape of each start's advantage distribution (skewness: scipy's, bias-corrected)."""
    rows = []
    for (algorithm, step), values in pooled.items():
        rows.append(
            {
                "algorithm": algorithm,
                "start_step": step,
                "turns": len(values),
                "mean": float(values.mean()),
                "std": float(values.std()),
                "skewness": float(stats.skew(values, bias=False)) if len(values) > 2 else None,
                "positive_share": float((values > 0).mean()),
                **{f"p{q:02d}": float(np.percentile(values, q)) for q in PERCENTILES},
            }
        )
    return rows


def plot_advantages(pooled: Mapping[tuple[str, int], np.ndarray], png_path: str | Path) -> list[Path]:
    """Violins of the normalised advantages, one per start checkpoint, side by side."""
    fig, ax = new_figure((max(6.0, 1.1 * len(pooled) + 2), 4.2))
    keys = list(pooled)
    if keys:
        parts = ax.violinplot([pooled[k] for k in keys], showmedians=True, showextrema=False)
        for body in parts["bodies"]:
            body.set_alpha(0.6)
    else:
        ax.text(
            0.5, 0.5, "no advantages in the logs (runs older than this diagnostic)", ha="center", transform=ax.transAxes
        )
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set_xticks(range(1, len(keys) + 1), [f"{algorithm}\nfrom {step}" for algorithm, step in keys])
    ax.set_ylabel("normalised advantage per turn")
    ax.set_title("PPO's advantages by start checkpoint (all updates)")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, png_path)
