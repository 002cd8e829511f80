"""RL along its updates: per RL run, the success of its start checkpoint (update 0), of the policies exported
along the run (`rl.eval_updates`, `rl.analysed_update`) and of its final policy, per split; and a figure with a
panel per start checkpoint and split, a line per run (seed) coloured by algorithm and each algorithm's mean
over seeds in the seeds' band, the update that plays "the RL model" marked."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from sftrl.names import EVAL_SPLITS, read_metrics, rl_model, rl_run
from sftrl.outputs import SPLIT_STYLE, save_figure, write_rows_csv
from sftrl.rl import algorithm_colour

COLUMNS = ("algorithm", "start_step", "seed", "update", "model", "split", "n", "success", "ci_low", "ci_high")


def run_points(run: str, updates: Iterable[int], length: int) -> list[tuple[int, str]]:
    """(update, model) along one run: its start (0), the exported updates below its length, its final policy."""
    parsed = rl_run(run)
    along = [
        (u, rl_model(parsed.algorithm, parsed.step, parsed.seed, u)) for u in sorted(set(updates)) if 0 < u < length
    ]
    return [(0, parsed.start), *along, (length, run)]


def rl_curve_rows(
    eval_root: str | Path, runs: Iterable[str], updates: Iterable[int], lengths: Mapping[str, int]
) -> list[dict]:
    """One row per (run, update, split) from each model's metrics.json; `lengths`: updates per run by algorithm."""
    updates = list(updates)
    rows = []
    for run in runs:
        parsed = rl_run(run)
        for update, model in run_points(run, updates, lengths[parsed.algorithm]):
            for split in EVAL_SPLITS:
                success = read_metrics(eval_root, model, split)["success"]
                rows.append(
                    {
                        "algorithm": parsed.algorithm,
                        "start_step": parsed.step,
                        "seed": parsed.seed,
                        "update": update,
                        "model": model,
                        "split": split,
                        **{k: success[k] for k in ("n", "ci_low", "ci_high")},
                        "success": success["rate"],
                    }
                )
    return rows


def write_rl_curve_csv(rows: Iterable[Mapping], path: str | Path) -> None:
    write_rows_csv(rows, COLUMNS, path)


def seed_band(
    seeds: Sequence[Sequence[tuple[int, float]]],
) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """The updates every seed's run was evaluated at, and the lowest, mean and highest success over seeds
    there ((update, success) points per seed)."""
    shared = sorted(set.intersection(*(set(u for u, _ in points) for points in seeds)))
    values = np.array([[dict(points)[u] for u in shared] for points in seeds])
    return shared, values.min(axis=0), values.mean(axis=0), values.max(axis=0)


def plot_rl_curve(
    rows: Sequence[Mapping], png_path: str | Path, analysed: int | None = None, splits: Sequence[str] = EVAL_SPLITS
) -> list[Path]:
    """Success (%) against RL updates: a column of panels per start step, a row per split; each seed's run a
    thin line, each algorithm's mean over its seeds a thick one in the band from the lowest seed to the
    highest; `analysed` (the update playing the RL model) dashed."""
    from matplotlib.figure import Figure

    starts = sorted({int(r["start_step"]) for r in rows})
    if not starts:
        raise ValueError("no RL runs to draw")
    fig = Figure(figsize=(2.8 * len(starts) + 1, 2.3 * len(splits) + 0.6), layout="constrained")
    axes = fig.subplots(len(splits), len(starts), squeeze=False, sharey="row")
    for column, start in enumerate(starts):
        for line, split in enumerate(splits):
            ax = axes[line][column]
            runs: dict[tuple[str, int], list[tuple[int, float]]] = defaultdict(list)
            for r in rows:
                if int(r["start_step"]) == start and r["split"] == split:
                    runs[r["algorithm"], int(r["seed"])].append((int(r["update"]), 100 * float(r["success"])))
            by_algorithm: dict[str, list[list[tuple[int, float]]]] = defaultdict(list)
            for (algorithm, _), points in sorted(runs.items()):
                points.sort()
                colour = algorithm_colour(algorithm)
                ax.plot(*zip(*points, strict=False), color=colour, alpha=0.35, linewidth=0.9, marker=".", markersize=3)
                by_algorithm[algorithm].append(points)
            for algorithm, seeds in by_algorithm.items():
                shared, low, mean, high = seed_band(seeds)
                label = f"{algorithm.upper()} ({len(seeds)} seed{'s' * (len(seeds) > 1)})"
                colour = algorithm_colour(algorithm)
                if len(seeds) > 1:
                    ax.fill_between(shared, low, high, color=colour, alpha=0.15, linewidth=0)
                ax.plot(shared, mean, color=colour, linewidth=2, label=label)
            if analysed is not None:
                ax.axvline(analysed, color="0.4", linestyle="--", linewidth=0.8)
            if line == 0:
                ax.set_title(f"from SFT step {start}", fontsize=9)
            if column == 0:
                ax.set_ylabel(f"{SPLIT_STYLE[split]['label']}\nsuccess (%)", fontsize=8)
            if line == len(splits) - 1:
                ax.set_xlabel("RL update (0 = the start)", fontsize=8)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), fontsize=8)
    return save_figure(fig, png_path)
