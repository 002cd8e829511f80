"""The report's own figures and the tables behind them (the other figures come with their stages).

- success vs SFT step, one panel per split, with 95% Wilson bands and an arrow per RL run;
- SFT training and eval loss vs step beside OOD success (is the OOD peak visible in the loss?);
- RL recovery % vs start step with 95% bootstrap intervals: the "recoverable window";
- restoration recovery % per edit (direction vs value vs triplet vs layer), with the cheapest planned edit
  (predicted and measured) where there is one.

Each figure is a PNG with a PDF beside it; each table a CSV with a Parquet copy, written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sftrl import stats
from sftrl.claims import num, ood_episodes, rl_starts
from sftrl.curves import Rate, ood_curve
from sftrl.names import EVAL_SPLITS
from sftrl.outputs import SPLIT_STYLE, plot_rates, save_figure
from sftrl.peak import peak_index
from sftrl.restoration.spec import EDIT_KINDS
from sftrl.restoration.table import OUTCOME_COLUMNS
from sftrl.rl import algorithm_colour


def _figure(width: float, height: float, ncols: int = 1, sharey: bool = False):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False, sharey=sharey)[0]


# --- success vs step, every split, with RL arrows ------------------------------------------------


def plot_success_panels(
    curve: Iterable[Mapping[str, Any]], rl: Iterable[Mapping[str, Any]], png: str | Path
) -> list[Path]:
    """One panel per split: success vs SFT step with its 95% Wilson band, and an arrow from each RL start
    checkpoint to its RL result (seeds side by side)."""
    curve, rl = list(curve), list(rl)
    splits = [s for s in EVAL_SPLITS if any(r["split"] == s for r in curve)]
    if not splits:
        raise ValueError("the SFT curve has no rows")
    fig, axes = _figure(5.0 * len(splits), 4.0, len(splits))
    algorithms = sorted({r["algorithm"] for r in rl})
    for ax, split in zip(axes, splits, strict=False):
        points = sorted((r for r in curve if r["split"] == split), key=lambda r: int(r["step"]))
        steps = [int(r["step"]) for r in points]
        style = SPLIT_STYLE[split]
        rates = [r["success"] for r in points], [r["ci_low"] for r in points], [r["ci_high"] for r in points]
        plot_rates(ax, steps, *rates, style["color"], markersize=3, label="SFT")
        span = (max(steps) - min(steps)) or 1
        runs = [r for r in rl if r["split"] == split]
        for row in runs:
            offset = algorithms.index(row["algorithm"]) - (len(algorithms) - 1) / 2 + 0.3 * int(row["seed"])
            x = int(row["start_step"]) + span * 0.012 * offset
            color = algorithm_colour(row["algorithm"])
            before, after = 100 * float(row["before"]), 100 * float(row["after"])
            ax.annotate(
                "", xy=(x, after), xytext=(x, before), arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.4}
            )
            ax.plot([x], [after], marker="D", markersize=3.5, color=color)
        for algo in algorithms:
            ax.plot([], [], marker="D", linestyle="", color=algorithm_colour(algo), label=f"after {algo.upper()}")
        ax.set_title(style["label"], fontsize=10)
        ax.set_xlabel("SFT step (0 = base model)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("episode success (%)")
    axes[-1].legend(fontsize=8, loc="best")
    n = sorted({int(r["n"]) for r in curve})
    fig.suptitle(
        f"Success vs SFT step, RL arrows from their start checkpoints (bands: 95% Wilson, n = {', '.join(map(str, n))})",
        fontsize=10,
    )
    return save_figure(fig, png)


# --- loss beside OOD success ---------------------------------------------------------------------

LOSS_COLUMNS = ("step", "train_loss", "test_loss_id_unseen", "loss_ood", "ood_success", "ood_ci_low", "ood_ci_high")


def loss_rows(history: Iterable[Mapping[str, Any]], curve: Iterable[Mapping[str, Any]]) -> list[dict]:
    """One row per step of the SFT log or the curve: training loss, eval losses, OOD success with its interval."""
    rows: dict[int, dict] = {}
    for entry in history:
        step = int(entry.get("step", 0))
        row = rows.setdefault(step, {"step": step})
        for key, column in (
            ("loss", "train_loss"),
            ("eval_id_unseen_loss", "test_loss_id_unseen"),
            ("eval_ood_loss", "loss_ood"),
        ):
            if num(entry.get(key)) is not None:
                row[column] = float(entry[key])
    for point in curve:
        if point["split"] == "ood":
            row = rows.setdefault(int(point["step"]), {"step": int(point["step"])})
            row.update(
                ood_success=float(point["success"]),
                ood_ci_low=float(point["ci_low"]),
                ood_ci_high=float(point["ci_high"]),
            )
    return [{c: rows[s].get(c) for c in LOSS_COLUMNS} for s in sorted(rows)]


def plot_loss_vs_ood(rows: Sequence[Mapping[str, Any]], png: str | Path) -> list[Path]:
    """Left: training loss and eval losses vs SFT step; right: OOD success vs step, same x axis."""
    fig, (left, right) = _figure(10, 3.8, 2)
    for column, label, style in (
        ("train_loss", "training loss", {"color": "black"}),
        (
            "test_loss_id_unseen",
            "test loss (ID, unseen hands)",
            {"color": SPLIT_STYLE["id_unseen"]["color"], "marker": "o"},
        ),
        ("loss_ood", "OOD loss", {"color": SPLIT_STYLE["ood"]["color"], "marker": "o"}),
    ):
        points = [(r["step"], r[column]) for r in rows if r.get(column) is not None]
        if points:
            left.plot(*zip(*points, strict=False), label=label, markersize=3, **style)
    left.set_xlabel("SFT step")
    left.set_ylabel("loss (answer tokens)")
    left.set_yscale("log")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    left.set_title("SFT loss", fontsize=10)
    ood = [r for r in rows if r.get("ood_success") is not None]
    steps = [r["step"] for r in ood]
    rates = [r["ood_success"] for r in ood], [r["ood_ci_low"] for r in ood], [r["ood_ci_high"] for r in ood]
    plot_rates(right, steps, *rates, SPLIT_STYLE["ood"]["color"], markersize=3)
    right.set_xlabel("SFT step (0 = base model)")
    right.set_ylabel("OOD episode success (%)")
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3)
    right.set_title("OOD success (95% Wilson band)", fontsize=10)
    for ax in (left, right):
        ax.set_xlim(left=0)
    return save_figure(fig, png)


# --- the recoverable window ------------------------------------------------------------------------

WINDOW_COLUMNS = (
    "algorithm",
    "start_step",
    "seeds",
    "before",
    "after",
    "after_per_seed",
    "recovery_pct_per_seed",
    "peak_step",
    "peak",
    "gap_significant",
    "recovery_pct",
    "ci_low",
    "ci_high",
)


def window_rows(
    curve: Iterable[Mapping[str, Any]],
    rl: Iterable[Mapping[str, Any]],
    draws: int = 10_000,
    seed: int = 0,
    peak_step: int | None = None,
) -> list[dict]:
    """RL recovery % of OOD success per algorithm and start step against the SFT OOD peak (`peak_step`, the
    sft_peak of roles.json; else the best OOD checkpoint of the curve): the mean over seeds with a 95%
    interval over the seeds' rates (Fieller; one seed: a parametric bootstrap of the one run), and each
    seed's own recovery; `sftrl.claims` tests the same over seeds and episodes."""
    points, _ = ood_curve(curve)
    if not points:
        raise ValueError("the SFT curve has no OOD rows")
    by_step = {p.step: p for p in points}
    peak = by_step[peak_step] if peak_step in by_step else points[peak_index([p.ood.rate for p in points])]
    n = ood_episodes(points)
    top = stats.Counts("peak", peak.ood.k, n)
    rows = []
    for algorithm, starts in rl_starts(rl).items():
        for start in starts:
            before = stats.Counts.of(f"sft-{start.step}", start.before, n)
            runs = stats.SeedRuns(
                start.label, tuple(stats.Counts.of(m, a, n) for m, a in zip(start.models, start.afters, strict=True))
            )
            if runs.seeds >= stats.MIN_SEEDS:
                recovery = stats.recovery_runs(runs, before, top, 0.0)
            else:
                recovery = stats.recovery(runs.runs[0], before, top, 0.0, draws, seed)
            per_seed = [stats.recovery_pct(a, start.before, peak.ood.rate) for a in start.afters]
            rows.append(
                {
                    "algorithm": algorithm,
                    "start_step": start.step,
                    "seeds": start.seeds,
                    "before": start.before,
                    "after": start.after,
                    "after_per_seed": " ".join(f"{a:.6g}" for a in start.afters),
                    "recovery_pct_per_seed": " ".join("nan" if r is None else f"{r:.6g}" for r in per_seed),
                    "peak_step": peak.step,
                    "peak": peak.ood.rate,
                    "gap_significant": stats.compare_unpaired(before, top).p_greater < stats.ALPHA,
                    "recovery_pct": None if math.isnan(recovery.pct) else recovery.pct,
                    "ci_low": None if math.isnan(recovery.ci_low) else recovery.ci_low,
                    "ci_high": None if math.isnan(recovery.ci_high) else recovery.ci_high,
                }
            )
    return rows


def plot_recovery_window(rows: Sequence[Mapping[str, Any]], png: str | Path, most_pct: float = 50.0) -> list[Path]:
    """Recovery % vs RL start step per algorithm, 95% intervals as error bars; hollow markers where the
    start had lost no significant OOD success (its recovery is not measurable)."""
    fig, (ax,) = _figure(7, 4.2)
    algorithms = sorted({r["algorithm"] for r in rows})
    for position, algorithm in enumerate(algorithms):
        color = algorithm_colour(algorithm)
        items = sorted(
            (r for r in rows if r["algorithm"] == algorithm and r["recovery_pct"] is not None),
            key=lambda r: r["start_step"],
        )
        if not items:
            continue
        shift = 0.01 * (position - (len(algorithms) - 1) / 2) * max(1, max(r["start_step"] for r in items))
        xs = [r["start_step"] + shift for r in items]
        ax.plot(xs, [r["recovery_pct"] for r in items], color=color, alpha=0.5)
        for x, row in zip(xs, items, strict=False):
            if row["ci_low"] is not None:
                ax.errorbar(
                    [x],
                    [row["recovery_pct"]],
                    yerr=[[row["recovery_pct"] - row["ci_low"]], [row["ci_high"] - row["recovery_pct"]]],
                    color=color,
                    capsize=3,
                    linewidth=1,
                )
            ax.plot(
                [x],
                [row["recovery_pct"]],
                marker="o",
                color=color,
                markerfacecolor=color if row["gap_significant"] else "white",
            )
            each = [float(r) for r in str(row.get("recovery_pct_per_seed", "")).split() if r != "nan"]
            if len(each) > 1:
                ax.scatter([x] * len(each), each, marker="_", s=60, color=color, alpha=0.8, linewidths=1.2)
        ax.plot([], [], marker="o", color=color, label=algorithm.upper())
    ax.axhline(100, color="grey", linestyle="--", linewidth=1, label="SFT OOD peak (100%)")
    ax.axhline(most_pct, color="grey", linestyle=":", linewidth=1, label=f"'most' ({most_pct:g}%)")
    ax.axhline(0, color="black", linewidth=0.8)
    if rows:
        ax.axvline(
            rows[0]["peak_step"], color=SPLIT_STYLE["ood"]["color"], linewidth=1, alpha=0.6, label="OOD peak step"
        )
    ax.set_xlabel("SFT step RL starts from")
    ax.set_ylabel("OOD recovery (%)")
    ax.set_title(
        "Recoverable window: RL recovery of OOD success vs start step\n(mean over seeds, 95% interval over seeds; "
        "dashes: each seed; hollow: no significant OOD loss to recover)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, png)


# --- restoration recovery --------------------------------------------------------------------------

RESTORE_COLUMNS = (
    "source",
    "target",
    "edit",
    "kind",
    *OUTCOME_COLUMNS,
    "recovery_ci_low",
    "recovery_ci_high",
    "predicted_recovery_pct",
)
PLANNED = "plan-cheapest"


def restoration_recovery_rows(
    restoration: Iterable[Mapping[str, Any]],
    plan: Mapping[str, Any] | None = None,
    planned_metrics: Mapping[str, Any] | None = None,
    split: str = "ood",
    draws: int = 10_000,
    seed: int = 0,
) -> list[dict]:
    """Per pair and edit, the recovery % of `split` with a 95% bootstrap interval; the cheapest planned
    edit (its predicted and its measured recovery) follows the sft_peak → sft_end rows when it was built."""
    rows = []

    def add(source, target, edit, kind, edited: Rate, source_rate: Rate, target_rate: Rate, predicted=None):
        after, target_arm, source_arm = (stats.Counts(edit, r.k, r.n) for r in (edited, target_rate, source_rate))
        recovery = stats.recovery(after, target_arm, source_arm, 0.0, draws, seed)
        point, low, high = recovery.pct, recovery.ci_low, recovery.ci_high
        valid = source_rate.rate != target_rate.rate
        ci = edited.ci
        rows.append(
            {
                "source": source,
                "target": target,
                "edit": edit,
                "kind": kind,
                "success": edited.rate,
                "ci_low": ci[0],
                "ci_high": ci[1],
                "source_success": source_rate.rate,
                "target_success": target_rate.rate,
                "recovery_pct": point if valid else None,
                "recovery_ci_low": low if valid and not math.isnan(low) else None,
                "recovery_ci_high": high if valid and not math.isnan(high) else None,
                "predicted_recovery_pct": predicted,
            }
        )

    peak_end = None
    for row in restoration:
        if row["split"] != split:
            continue
        n = int(row["n"])
        source, target = Rate.of(row["source_success"], n), Rate.of(row["target_success"], n)
        add(
            f"{row['source_role']} ({row['source']})",
            f"{row['target_role']} ({row['target']})",
            row["edit"],
            row["kind"],
            Rate.of(row["success"], n),
            source,
            target,
        )
        if (row["source_role"], row["target_role"]) == ("sft_peak", "sft_end"):
            peak_end = (rows[-1]["source"], rows[-1]["target"], source, target)
    if plan and plan.get("status") == "Optimal" and planned_metrics and peak_end:
        success = planned_metrics["success"]
        source_label, target_label, source, target = peak_end
        add(
            source_label,
            target_label,
            f"{PLANNED} ({len(plan['tensors'])}/{plan['blocks']} blocks, {100 * plan['params_share']:.0f}% params)",
            plan.get("edit", "").split("-")[0] or "direction",
            Rate(int(success["k"]), int(success["n"])),
            source,
            target,
            predicted=100 * plan["predicted_recovery"],
        )
    return rows


def plot_restoration_recovery(
    rows: Sequence[Mapping[str, Any]], png: str | Path, threshold_pct: float = 70.0
) -> list[Path]:
    """Recovery % per edit, one panel per (source, target) pair, bars coloured by edit family with 95%
    bootstrap intervals; a planned edit shows its predicted recovery as a black tick."""
    pairs = list(dict.fromkeys((r["source"], r["target"]) for r in rows))
    if not pairs:
        raise ValueError("no restoration rows to plot")
    widest = max(sum((r["source"], r["target"]) == p for r in rows) for p in pairs)
    fig, axes = _figure(max(6.0, 0.6 * widest + 2) * len(pairs) ** 0.5 + 1, 4.2, len(pairs))
    for ax, (source, target) in zip(axes, pairs, strict=False):
        items = [r for r in rows if (r["source"], r["target"]) == (source, target)]
        for i, row in enumerate(items):
            value = row["recovery_pct"]
            if value is None:
                ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=7)
                continue
            color = EDIT_KINDS[row["kind"]].colour if row["kind"] in EDIT_KINDS else "grey"
            hatch = "//" if row["edit"].startswith(PLANNED) else None
            error = None
            if row["recovery_ci_low"] is not None:
                error = [[value - row["recovery_ci_low"]], [row["recovery_ci_high"] - value]]
            ax.bar([i], [value], color=color, hatch=hatch, edgecolor="black" if hatch else None, yerr=error, capsize=2)
            if row["predicted_recovery_pct"] is not None:
                ax.plot([i - 0.4, i + 0.4], [row["predicted_recovery_pct"]] * 2, color="black", linewidth=2)
        ax.set_xticks(range(len(items)), [r["edit"] for r in items], rotation=35, ha="right", fontsize=7)
        ax.axhline(100, color="grey", linestyle="--", linewidth=1)
        ax.axhline(threshold_pct, color="grey", linestyle=":", linewidth=1)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"{target} edited with {source}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Artist] = [
        Patch(color=kind.colour, label=name)
        for name, kind in EDIT_KINDS.items()
        if any(r["kind"] == name for r in rows)
    ]
    if any(r["predicted_recovery_pct"] is not None for r in rows):
        handles.append(Line2D([], [], color="black", linewidth=2, label="predicted by the plan"))
    axes[-1].legend(handles=handles, fontsize=7, loc="best")
    axes[0].set_ylabel("OOD recovery (%)")
    fig.suptitle(
        f"Restoration: OOD recovery per edit, 0% = target, 100% = source (95% bootstrap intervals; dotted: {threshold_pct:g}%)",
        fontsize=10,
    )
    return save_figure(fig, png)
