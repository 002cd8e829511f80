"""The restoration table: success of every edited model per split, with the recovery between its source
and target, and a bar figure per family of edits (direction, value, triplet, layer).

Recovery % = (success_edit − success_target) / (success_source − success_target) · 100: 0% is the target
as it was, 100% is the source's success; empty where source and target score the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sftrl.names import EVAL_SPLITS, is_rl_model, model_step, read_metrics
from sftrl.outputs import SPLIT_STYLE, save_figure, write_rows_csv
from sftrl.restoration.spec import KINDS
from sftrl.roles import RestorePair, resolve
from sftrl.stats import recovery_pct

# What an edit scored, next to what its source and target scored, and the share of the gap it recovered.
OUTCOME_COLUMNS = ("success", "ci_low", "ci_high", "source_success", "target_success", "recovery_pct")
COLUMNS = (
    "source_role",
    "target_role",
    "source",
    "target",
    "source_step",
    "target_step",
    "edit",
    "kind",
    "top",
    "tail",
    "layers",
    "model",
    "split",
    "n",
    *OUTCOME_COLUMNS,
)


def _success(eval_root: Path, model: str, split: str) -> dict:
    return read_metrics(eval_root, model, split)["success"]


def _step(model: str) -> int | None:
    """The SFT step of a base or SFT model; None for an RL model, which is off the SFT axis."""
    return None if is_rl_model(model) else model_step(model)


def _tidy(value: float | None) -> float | None:
    """Rounded to 1e-6 %, without a negative zero: rates are k/n, so more digits are float noise."""
    return None if value is None else round(value, 6) + 0.0


def restoration_rows(
    eval_root: str | Path,
    roles: Mapping[str, Any],
    pairs: Iterable[RestorePair],
    splits: Sequence[str] = EVAL_SPLITS,
) -> list[dict]:
    """One row per (pair, edit, split), in the grid's order, from each model's metrics.json."""
    eval_root = Path(eval_root)
    rows = []
    for pair in pairs:
        source, target = resolve(roles, pair.source), resolve(roles, pair.target)
        for spec in pair.specs:
            model = pair.model(spec)
            for split in splits:
                edited = _success(eval_root, model, split)
                s_rate = _success(eval_root, source, split)["rate"]
                t_rate = _success(eval_root, target, split)["rate"]
                layers = spec.layers if not isinstance(spec.layers, tuple) else " ".join(map(str, spec.layers))
                rows.append(
                    {
                        "source_role": pair.source,
                        "target_role": pair.target,
                        "source": source,
                        "target": target,
                        "source_step": _step(source),
                        "target_step": _step(target),
                        "edit": spec.name,
                        "kind": spec.kind,
                        # fractions of the rank; an edit by counts (top_k, tail_k) says them in its name
                        "top": spec.top if spec.kind != "layer" and not spec.absolute else None,
                        "tail": spec.tail if spec.kind != "layer" and not spec.absolute else None,
                        "layers": layers,
                        "model": model,
                        "split": split,
                        "n": edited["n"],
                        "success": edited["rate"],
                        "ci_low": edited["ci_low"],
                        "ci_high": edited["ci_high"],
                        "source_success": s_rate,
                        "target_success": t_rate,
                        "recovery_pct": _tidy(recovery_pct(edited["rate"], t_rate, s_rate)),
                    }
                )
    return rows


def write_restoration_csv(rows: Iterable[dict], path: str | Path) -> None:
    write_rows_csv(rows, COLUMNS, path)


def _label(role: str, model: str) -> str:
    return role if role == model else f"{role} ({model})"


def kinds_in(pairs: Iterable[RestorePair]) -> list[str]:
    """The edit families of a grid, in the canonical order (one figure each)."""
    present = {spec.kind for pair in pairs for spec in pair.specs}
    return [kind for kind in KINDS if kind in present]


def plot_family(
    eval_root: str | Path,
    roles: Mapping[str, Any],
    pairs: Sequence[RestorePair],
    kind: str,
    png_path: str | Path,
    splits: Sequence[str] = EVAL_SPLITS,
) -> list[Path]:
    """Bars of success per split, one panel per pair holding `kind` edits: the target as it was, each edit,
    and the source, with 95% Wilson intervals; writes the PNG and a PDF beside it."""
    from matplotlib.figure import Figure

    eval_root = Path(eval_root)
    panels = [pair for pair in pairs if any(spec.kind == kind for spec in pair.specs)]
    if not panels:
        raise ValueError(f"no {kind} edits in the grid to plot")
    widest = max(sum(spec.kind == kind for spec in pair.specs) for pair in panels) + 2
    fig = Figure(figsize=(max(6.0, 0.75 * widest * len(splits) / 2 + 2), 3.2 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    width = 0.8 / len(splits)
    for ax, pair in zip(axes, panels, strict=False):
        source, target = resolve(roles, pair.source), resolve(roles, pair.target)
        specs = [spec for spec in pair.specs if spec.kind == kind]
        bars = [(f"target\n{target}", target), *((spec.name, pair.model(spec)) for spec in specs)]
        bars.append((f"source\n{source}", source))
        for offset, split in enumerate(splits):
            stats = [_success(eval_root, model, split) for _, model in bars]
            xs = [i + (offset - (len(splits) - 1) / 2) * width for i in range(len(bars))]
            heights = [100 * s["rate"] for s in stats]
            errors = [
                [100 * (s["rate"] - s["ci_low"]) for s in stats],
                [100 * (s["ci_high"] - s["rate"]) for s in stats],
            ]
            ax.bar(
                xs,
                heights,
                width,
                yerr=errors,
                capsize=2,
                color=SPLIT_STYLE[split]["color"],
                label=SPLIT_STYLE[split]["label"],
            )
        ax.set_xticks(range(len(bars)), [label for label, _ in bars], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("episode success (%)")
        ax.set_title(f"{kind} edits of {_label(pair.target, target)} with {_label(pair.source, source)}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    return save_figure(fig, png_path)
