"""The SFT curve: success of every SFT checkpoint (step 0 = base model) per eval split, as CSV and plot,
and its OOD split read back as points (the RL plan and the claims read sft_curve.csv through here)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sftrl import io
from sftrl.evaluate.metrics import wilson_interval
from sftrl.names import BASE, EVAL_SPLITS, OOD, model_step, read_metrics, rl_run, sft_model
from sftrl.outputs import SPLIT_STYLE, new_figure, plot_rates, save_figure, write_rows_csv
from sftrl.peak import ood_peak
from sftrl.rl import algorithm_colour
from sftrl.stats import recovery_pct

COLUMNS = (
    "step",
    "split",
    "n",
    "success",
    "ci_low",
    "ci_high",
    "first_attempt_success",
    "first_attempt_any_layout",
    "success_after_failure",
    "mean_reward",
    "rule_following",
    "rule_following_first",
    "format_error_rate",
)


def parse_entry(entry: str) -> tuple[int, Path]:
    """`STEP=PATH` -> (step, path), e.g. `400=results/tiny/eval/sft-400/ood/metrics.json`."""
    step, sep, path = entry.partition("=")
    if not sep or not path or not step.strip().isdigit():
        raise ValueError(f"expected STEP=PATH with a non-negative integer step, got {entry!r}")
    return int(step), Path(path)


def curve_rows(entries: Mapping[str, Iterable[tuple[int, str | Path]]]) -> list[dict]:
    """One row per (split, step), read from each checkpoint's metrics.json, sorted by split then step."""
    rows = []
    for split, items in entries.items():
        if split not in EVAL_SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {list(EVAL_SPLITS)}")
        seen: set[int] = set()
        for step, path in items:
            if step in seen:
                raise ValueError(f"split {split}: step {step} given twice")
            seen.add(step)
            rows.append(_row(split, step, Path(path)))
    return sorted(rows, key=lambda r: (EVAL_SPLITS.index(r["split"]), r["step"]))


def _row(split: str, step: int, path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"metrics file {path} (split {split}, step {step}) does not exist")
    metrics = io.read_json(path)
    if metrics.get("split") not in (None, split):
        raise ValueError(f"{path} holds split {metrics['split']!r} but was given as {split!r}")
    success = metrics["success"]
    return {
        "step": step,
        "split": split,
        "n": success["n"],
        "success": success["rate"],
        "ci_low": success["ci_low"],
        "ci_high": success["ci_high"],
        "first_attempt_success": metrics["first_attempt_success"]["rate"],
        "first_attempt_any_layout": metrics.get("first_attempt_any_layout", {}).get("rate"),
        "success_after_failure": metrics["success_after_failure"]["rate"],
        "mean_reward": metrics["mean_reward_per_episode"],
        "rule_following": metrics["rule_following"]["rate"],
        "rule_following_first": metrics["rule_following_first"]["rate"],
        "format_error_rate": metrics["format_error_rate"],
    }


def _rates(points: list[dict]) -> tuple[list, list, list]:
    """Success, interval low and high of curve rows."""
    return [r["success"] for r in points], [r["ci_low"] for r in points], [r["ci_high"] for r in points]


def write_curve_csv(rows: Iterable[dict], path: str | Path) -> None:
    write_rows_csv(rows, COLUMNS, path)


def plot_curve(rows: list[dict], png_path: str | Path) -> list[Path]:
    """Success vs SFT step, one line per split with its 95% Wilson band; writes the PNG and a PDF beside it."""
    fig, ax = new_figure()
    for split in EVAL_SPLITS:
        points = [r for r in rows if r["split"] == split]
        if not points:
            continue
        steps = [r["step"] for r in points]
        style = SPLIT_STYLE[split]
        plot_rates(ax, steps, *_rates(points), style["color"], markersize=4, label=style["label"])
    n = sorted({r["n"] for r in rows})
    ax.set_title(f"Success vs SFT step (shaded: 95% Wilson interval, n = {', '.join(map(str, n))})")
    ax.set_xlabel("SFT step (0 = base model)")
    ax.set_ylabel("episode success (%)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return save_figure(fig, png_path)


# --- the OOD curve, read back ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """k successes in n episodes, with the 95% Wilson interval (for display)."""

    k: int
    n: int

    @classmethod
    def of(cls, rate: float, n: int) -> Rate:
        n = int(n)
        if n <= 0:
            raise ValueError(f"a success rate needs n > 0 episodes, got {n}")
        return cls(round(float(rate) * n), n)

    @property
    def rate(self) -> float:
        return self.k / self.n

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    def to_dict(self) -> dict[str, float]:
        low, high = self.ci
        return {"rate": self.rate, "ci_low": low, "ci_high": high, "k": self.k, "n": self.n}

    def text(self) -> str:
        low, high = self.ci
        return f"{100 * self.rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}] (n = {self.n})"


@dataclass(frozen=True)
class CurvePoint:
    """OOD success of one checkpoint (step 0: the base model) with its 95% interval, as sft_curve.csv
    gives them."""

    step: int
    success: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def model(self) -> str:
        return BASE if self.step == 0 else sft_model(self.step)

    @property
    def ood(self) -> Rate:
        """The success as whole episodes, the counts the tests compare."""
        return Rate.of(self.success, self.n)


def ood_curve(rows: Iterable[Mapping[str, Any]]) -> tuple[list[CurvePoint], CurvePoint | None]:
    """(SFT checkpoints in step order, the base model or None) of the OOD split of sft_curve.csv rows
    (strings or numbers)."""
    points, base = [], None
    for row in rows:
        if row["split"] != OOD:
            continue
        try:
            point = CurvePoint(
                int(row["step"]), float(row["success"]), float(row["ci_low"]), float(row["ci_high"]), int(row["n"])
            )
        except (KeyError, ValueError) as error:
            raise ValueError(f"bad SFT curve row {dict(row)}: {error}") from None
        if point.step == 0:
            base = point
        else:
            points.append(point)
    return sorted(points, key=lambda p: p.step), base


def read_ood_curve(path: str | Path) -> tuple[list[CurvePoint], CurvePoint | None]:
    """`ood_curve` of a sft_curve.csv file."""
    with open(path, newline="") as handle:
        return ood_curve(csv.DictReader(handle))


# --- RL from SFT checkpoints -----------------------------------------------------------------------

RL_COLUMNS = (
    "start_step",
    "algorithm",
    "seed",
    "split",
    "before",
    "before_ci_low",
    "before_ci_high",
    "after",
    "after_ci_low",
    "after_ci_high",
    "peak_step",
    "peak",
    "recovery_pct",
    "rule_following_first_before",
    "rule_following_first_after",
)


def rl_rows(eval_root: str | Path, sft_models: Iterable[str], rl_models: Iterable[str]) -> list[dict]:
    """One row per (start step, algorithm, seed, split): success before and after RL, and recovery
    against the SFT checkpoint with the best OOD score."""
    eval_root = Path(eval_root)
    sft_models = list(sft_models)
    peak = ood_peak(eval_root, sft_models)
    rows = []
    for model in rl_models:
        run = rl_run(model)
        if run.start not in sft_models:
            raise ValueError(f"{model} starts from {run.start}, which is not among the SFT checkpoints")
        for split in EVAL_SPLITS:
            start_metrics, rl_metrics = read_metrics(eval_root, run.start, split), read_metrics(eval_root, model, split)
            before, after = start_metrics["success"], rl_metrics["success"]
            peak_rate = read_metrics(eval_root, peak, split)["success"]["rate"]
            rows.append(
                {
                    "start_step": run.step,
                    "algorithm": run.algorithm,
                    "seed": run.seed,
                    "split": split,
                    "before": before["rate"],
                    "before_ci_low": before["ci_low"],
                    "before_ci_high": before["ci_high"],
                    "after": after["rate"],
                    "after_ci_low": after["ci_low"],
                    "after_ci_high": after["ci_high"],
                    "peak_step": model_step(peak),
                    "peak": peak_rate,
                    "recovery_pct": recovery_pct(after["rate"], before["rate"], peak_rate),
                    "rule_following_first_before": start_metrics["rule_following_first"]["rate"],
                    "rule_following_first_after": rl_metrics["rule_following_first"]["rate"],
                }
            )
    return sorted(rows, key=lambda r: (r["start_step"], r["algorithm"], r["seed"], EVAL_SPLITS.index(r["split"])))


def plot_rl_from_sft(curve: list[dict], rows: list[dict], png_path: str | Path, split: str = "ood") -> list[Path]:
    """The SFT curve of one split with an arrow from each RL start checkpoint to its RL result (each seed's
    its own arrow, side by side)."""
    fig, ax = new_figure()
    points = [r for r in curve if r["split"] == split]
    style = SPLIT_STYLE[split]
    steps = [r["step"] for r in points]
    plot_rates(ax, steps, *_rates(points), style["color"], alpha=0.12, markersize=4, label=f"SFT, {style['label']}")
    span = max(steps) - min(steps) if len(steps) > 1 else 1
    algorithms = sorted({r["algorithm"] for r in rows})
    seeds = sorted({int(r["seed"]) for r in rows})
    slots = len(algorithms) * len(seeds)  # side by side at each start: algorithms, and within each its seeds
    for row in (r for r in rows if r["split"] == split):
        slot = algorithms.index(row["algorithm"]) * len(seeds) + seeds.index(int(row["seed"]))
        x = row["start_step"] + span * (0.024 / max(1, len(seeds))) * (slot - (slots - 1) / 2)
        color = algorithm_colour(row["algorithm"])
        ax.annotate(
            "",
            xy=(x, 100 * row["after"]),
            xytext=(x, 100 * row["before"]),
            arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.6},
        )
        ax.plot([x], [100 * row["after"]], marker="D", markersize=4, color=color)
    for algo in algorithms:
        ax.plot([], [], marker="D", color=algorithm_colour(algo), label=f"after RL ({algo.upper()})")
    ax.set_title(f"RL from SFT checkpoints: {split} success before → after")
    ax.set_xlabel("SFT step RL starts from (0 = base model)")
    ax.set_ylabel("episode success (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return save_figure(fig, png_path)
