"""Figures of spectral tables and of their summary: drift against checkpoints, principal angles against k,
layer × module heat maps; each a PNG with a PDF beside it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sftrl.outputs import save_figure
from sftrl.spectral.metrics import DRIFT_PREFIX, per_k_rows


def _save(fig: Figure, out: str | os.PathLike) -> list[Path]:
    """Save as PNG and PDF beside each other (out without suffix is the stem), cropped to what is drawn."""
    stem = Path(out)
    stem = stem.with_suffix("") if stem.suffix in {".png", ".pdf"} else stem
    return save_figure(fig, stem.with_name(stem.name + ".png"), dpi=150, bbox_inches="tight")


def _drift_figure(labels: Sequence[str], series: Mapping[str, Sequence[float]], out, title) -> list[Path]:
    fig = Figure(figsize=(max(5, 0.7 * len(labels) + 3), 3.5))
    ax = fig.subplots()
    for module, values in series.items():
        ax.plot(range(len(labels)), values, marker="o", label=module, linewidth=2.5 if module == "all" else 1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_xlabel("checkpoint")
    ax.set_ylabel("median relative drift |σ_B − σ_A| / σ_A (%)")
    ax.set_title(title or "Singular-value drift vs checkpoint")
    ax.legend(fontsize="small", ncol=2)
    return _save(fig, out)


def plot_drift(tables: Mapping[str, pd.DataFrame], out: str | os.PathLike, title: str | None = None) -> list[Path]:
    """Median relative singular-value drift (%) per module against checkpoints (the keys, in order)."""
    labels = list(tables)
    series: dict[str, list[float]] = {}
    for position, label in enumerate(labels):
        drift = tables[label].loc[tables[label]["metric"] == "drift"]
        for module, group in [("all", drift), *drift.groupby("module")]:
            median = 100 * float(np.nanmedian(group["value"]))
            series.setdefault(module, [float("nan")] * len(labels))[position] = median
    return _drift_figure(labels, series, out, title)


def plot_angles(table: pd.DataFrame, out: str | os.PathLike, title: str | None = None) -> list[Path]:
    """Mean principal angle against k (fraction of rank), left and right subspaces, one line per module."""
    fig = Figure(figsize=(9, 3.5))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, side in zip(axes, ("left", "right"), strict=False):
        per_k = per_k_rows(table, f"angle_{side}_mean_deg")
        for module, group in per_k.groupby("module"):
            curve = group.groupby("k_fraction")["value"].mean()
            ax.plot(curve.index, curve.values, marker="o", label=module)
        ax.set_xscale("log")
        ax.set_xlabel("k / rank")
        ax.set_title(f"{side} singular subspaces ({'U' if side == 'left' else 'V'})")
    axes[0].set_ylabel("mean principal angle (degrees)")
    axes[1].legend(fontsize="small")
    fig.suptitle(title or "Principal angles between top-k singular subspaces")
    return _save(fig, out)


def plot_heatmap(
    table: pd.DataFrame,
    out: str | os.PathLike,
    metric: str = "energy_rotation_share",
    k_fraction: float | None = None,
    title: str | None = None,
) -> list[Path]:
    """Layer × module heat map of a scalar metric, or of a per-k metric at `k_fraction`."""
    if k_fraction is not None:
        rows = per_k_rows(table, metric)
        rows = rows.loc[np.isclose(rows["k_fraction"], k_fraction)]
    else:
        rows = table.loc[table["metric"] == metric]
    if rows.empty:
        raise ValueError(f"no {metric!r} values{'' if k_fraction is None else f' at k fraction {k_fraction}'} to plot")
    grid = rows.pivot_table(index="layer", columns="module", values="value", aggfunc="mean")
    fig = Figure(figsize=(1.0 * grid.shape[1] + 3, 0.3 * grid.shape[0] + 2))
    ax = fig.subplots()
    image = ax.imshow(grid.values, aspect="auto", cmap="viridis", origin="lower")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=45, ha="right")
    ax.set_yticks(range(grid.shape[0]), grid.index)
    ax.set_xlabel("module")
    ax.set_ylabel("decoder layer")
    label = metric + ("" if k_fraction is None else f" (k = {k_fraction:g} of rank)")
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title(title or label)
    return _save(fig, out)


def _angle_columns(summary: pd.DataFrame, side: str) -> list[tuple[float, str]]:
    prefix = f"angle_{side}_deg@"
    return sorted((float(c.removeprefix(prefix)), c) for c in summary.columns if c.startswith(prefix))


def _pairs_to_plot(
    summary: pd.DataFrame, kinds: Sequence[str], has_column: Callable[[str], bool], what: str
) -> pd.DataFrame:
    """The summary's rows of `kinds`, refused when there are none or no column holds `what`."""
    rows = summary.loc[summary["kind"].isin(kinds)]
    if rows.empty or not any(has_column(c) for c in rows.columns):
        raise ValueError(f"no {what} of {list(kinds)} pairs in the summary")
    return rows


def plot_drift_summary(
    summary: pd.DataFrame,
    out: str | os.PathLike,
    kinds: Sequence[str] = ("base_to_sft", "base_to_rl"),
    title: str | None = None,
) -> list[Path]:
    """`plot_drift` from a summary: median drift (%) per module for the pairs of `kinds`, in row order,
    each labelled by its model B."""
    rows = _pairs_to_plot(summary, kinds, lambda c: c == "drift_median", "singular-value drift")
    series = {"all": list(100 * rows["drift_median"])}
    for column in sorted(c for c in rows.columns if c.startswith(DRIFT_PREFIX)):
        series[column.removeprefix(DRIFT_PREFIX)] = list(100 * rows[column])
    labels = [str(b) for b in rows["b"]]
    return _drift_figure(labels, series, out, title or "Singular-value drift vs checkpoint (against the base)")


def plot_angle_summary(
    summary: pd.DataFrame,
    out: str | os.PathLike,
    kinds: Sequence[str] = ("base_to_sft", "base_to_rl"),
    title: str | None = None,
) -> list[Path]:
    """Mean principal angle against k (fraction of rank), left and right subspaces, one line per pair of
    `kinds`: SFT checkpoints shaded from early (light) to late (dark), other pairs dashed."""
    rows = _pairs_to_plot(summary, kinds, lambda c: c.startswith("angle_left_deg@"), "principal angles")
    import matplotlib

    cmap = matplotlib.colormaps["viridis_r"]
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    sft = rows.loc[rows["kind"] == "base_to_sft"]
    others = rows.loc[rows["kind"] != "base_to_sft"]
    for ax, side in zip(axes, ("left", "right"), strict=False):
        columns = _angle_columns(rows, side)
        ks = [k for k, _ in columns]
        for position, (_, row) in enumerate(sft.iterrows()):
            shade = 0.15 + 0.85 * position / max(1, len(sft) - 1)
            ax.plot(
                ks,
                [row[c] for _, c in columns],
                marker="o",
                markersize=3,
                color=cmap(shade),
                label=f"{row['a']} → {row['b']}",
            )
        for _, row in others.iterrows():
            ax.plot(
                ks,
                [row[c] for _, c in columns],
                linestyle="--",
                marker="s",
                markersize=3,
                label=f"{row['a']} → {row['b']}",
            )
        ax.set_xscale("log")
        ax.set_xlabel("k / rank")
        ax.set_title(f"{side} singular subspaces ({'U' if side == 'left' else 'V'})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean principal angle (degrees)")
    axes[1].legend(fontsize="x-small", ncol=1 + len(rows) // 12, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title or "Principal angles between top-k singular subspaces, averaged over matrices")
    return _save(fig, out)
