"""The SFT curve: success of every SFT checkpoint (step 0 = base model) per eval split, as CSV and plot."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from io import StringIO
from pathlib import Path

from sftrl import io
from sftrl.peak import halves, peak_index
from sftrl.stats import Outcomes, recovery_pct

SPLIT_ORDER = ("id", "id_unseen", "ood")
COLUMNS = (
    "step",
    "split",
    "n",
    "success",
    "ci_low",
    "ci_high",
    "first_attempt_success",
    "success_after_failure",
    "mean_reward",
    "rule_following",
    "rule_following_first",
    "format_error_rate",
)
STYLE = {
    "id": {"color": "tab:blue", "label": "ID (seen hands)"},
    "id_unseen": {"color": "tab:green", "label": "ID (unseen hands)"},
    "ood": {"color": "tab:red", "label": "OOD (J=11, Q=12, K=13)"},
}


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
        if split not in SPLIT_ORDER:
            raise ValueError(f"unknown split {split!r}; expected one of {list(SPLIT_ORDER)}")
        seen: set[int] = set()
        for step, path in items:
            if step in seen:
                raise ValueError(f"split {split}: step {step} given twice")
            seen.add(step)
            rows.append(_row(split, step, Path(path)))
    return sorted(rows, key=lambda r: (SPLIT_ORDER.index(r["split"]), r["step"]))


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
        "success_after_failure": metrics["success_after_failure"]["rate"],
        "mean_reward": metrics["mean_reward_per_episode"],
        "rule_following": metrics["rule_following"]["rate"],
        "rule_following_first": metrics["rule_following_first"]["rate"],
        "format_error_rate": metrics["format_error_rate"],
    }


def write_curve_csv(rows: Iterable[dict], path: str | Path) -> None:
    write_rows_csv(rows, COLUMNS, path)


def write_rows_csv(rows: Iterable[dict], columns: Sequence[str], path: str | Path) -> None:
    buffer = StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if row[k] is None else row[k]) for k in columns} for row in rows)
    io.write_text(path, buffer.getvalue())


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    return fig, fig.add_subplot()


def _save(fig, png_path: str | Path) -> list[Path]:
    """The PNG and a PDF beside it, each written atomically (the PDF without a timestamp)."""
    png_path = Path(png_path)
    written = []
    for path, kwargs in (
        (png_path, {"dpi": 150}),
        (png_path.with_suffix(".pdf"), {"metadata": {"CreationDate": None}}),
    ):
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip("."), **kwargs)
        written.append(path)
    return written


def plot_curve(rows: list[dict], png_path: str | Path) -> list[Path]:
    """Success vs SFT step, one line per split with its 95% Wilson band; writes the PNG and a PDF beside it."""
    fig, ax = _figure()
    for split in SPLIT_ORDER:
        points = [r for r in rows if r["split"] == split]
        if not points:
            continue
        steps = [r["step"] for r in points]
        style = STYLE[split]
        ax.fill_between(
            steps,
            [100 * r["ci_low"] for r in points],
            [100 * r["ci_high"] for r in points],
            color=style["color"],
            alpha=0.15,
            linewidth=0,
        )
        ax.plot(steps, [100 * r["success"] for r in points], marker="o", markersize=4, **style)
    n = sorted({r["n"] for r in rows})
    ax.set_title(f"Success vs SFT step (shaded: 95% Wilson interval, n = {', '.join(map(str, n))})")
    ax.set_xlabel("SFT step (0 = base model)")
    ax.set_ylabel("episode success (%)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return _save(fig, png_path)


# --- RL from SFT checkpoints -----------------------------------------------------------------------

RL_MODEL_RE = re.compile(r"^rl-(?P<algo>[a-z]+)-from(?P<step>\d+)-s(?P<seed>\d+)$")
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
ALGO_STYLE = {"ppo": {"color": "tab:purple"}, "grpo": {"color": "tab:orange"}}


def _metrics(eval_root: Path, model: str, split: str) -> dict:
    path = eval_root / model / split / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"metrics file {path} does not exist")
    return io.read_json(path)


def _success(eval_root: Path, model: str, split: str) -> dict:
    return _metrics(eval_root, model, split)["success"]


def ood_samples(eval_root: Path, model: str) -> Path:
    path = eval_root / model / "ood" / "samples.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"samples file {path} does not exist")
    return path


def ood_halves(eval_root: str | Path, sft_models: Iterable[str]) -> dict[str, dict]:
    """Per SFT checkpoint, in step order, its OOD success on the selection and the report half (`sftrl.peak`)."""
    models = sorted(sft_models, key=lambda m: int(m.removeprefix("sft-")))
    return {m: halves(Outcomes.read(ood_samples(Path(eval_root), m), m)) for m in models}


def ood_peak(eval_root: str | Path, sft_models: Iterable[str], split: dict[str, dict] | None = None) -> str:
    """sft_peak by the rule of `sftrl.peak`: the best OOD success on the selection half of the OOD
    episodes (the earliest step on a tie); `split`: `ood_halves` already read."""
    split = ood_halves(eval_root, sft_models) if split is None else split
    if not split:
        raise ValueError("no SFT checkpoints given")
    models = list(split)
    return models[peak_index([split[m]["selection_rate"] for m in models])]


def rl_rows(eval_root: str | Path, sft_models: Iterable[str], rl_models: Iterable[str]) -> list[dict]:
    """One row per (start step, algorithm, seed, split): success before and after RL, and recovery
    against the SFT checkpoint with the best OOD score."""
    eval_root = Path(eval_root)
    sft_models = list(sft_models)
    peak = ood_peak(eval_root, sft_models)
    rows = []
    for model in rl_models:
        match = RL_MODEL_RE.match(model)
        if not match:
            raise ValueError(f"{model!r} is not an RL model name (rl-ALGO-fromSTEP-sSEED)")
        start = f"sft-{match['step']}"
        if start not in sft_models:
            raise ValueError(f"{model} starts from {start}, which is not among the SFT checkpoints")
        for split in SPLIT_ORDER:
            start_metrics, rl_metrics = _metrics(eval_root, start, split), _metrics(eval_root, model, split)
            before, after = start_metrics["success"], rl_metrics["success"]
            peak_rate = _success(eval_root, peak, split)["rate"]
            rows.append(
                {
                    "start_step": int(match["step"]),
                    "algorithm": match["algo"],
                    "seed": int(match["seed"]),
                    "split": split,
                    "before": before["rate"],
                    "before_ci_low": before["ci_low"],
                    "before_ci_high": before["ci_high"],
                    "after": after["rate"],
                    "after_ci_low": after["ci_low"],
                    "after_ci_high": after["ci_high"],
                    "peak_step": int(peak.removeprefix("sft-")),
                    "peak": peak_rate,
                    "recovery_pct": recovery_pct(after["rate"], before["rate"], peak_rate),
                    "rule_following_first_before": start_metrics["rule_following_first"]["rate"],
                    "rule_following_first_after": rl_metrics["rule_following_first"]["rate"],
                }
            )
    return sorted(rows, key=lambda r: (r["start_step"], r["algorithm"], r["seed"], SPLIT_ORDER.index(r["split"])))


def plot_rl_from_sft(curve: list[dict], rows: list[dict], png_path: str | Path, split: str = "ood") -> list[Path]:
    """The SFT curve of one split with an arrow from each RL start checkpoint to its RL result."""
    fig, ax = _figure()
    points = [r for r in curve if r["split"] == split]
    style = STYLE[split]
    steps = [r["step"] for r in points]
    ax.fill_between(
        steps, [100 * r["ci_low"] for r in points], [100 * r["ci_high"] for r in points],
        color=style["color"], alpha=0.12, linewidth=0,
    )
    ax.plot(steps, [100 * r["success"] for r in points], marker="o", markersize=4, color=style["color"],
            label=f"SFT, {style['label']}")
    span = max(steps) - min(steps) if len(steps) > 1 else 1
    algorithms = sorted({r["algorithm"] for r in rows})
    for row in (r for r in rows if r["split"] == split):
        shift = span * 0.012 * (algorithms.index(row["algorithm"]) - (len(algorithms) - 1) / 2)
        x = row["start_step"] + shift
        color = ALGO_STYLE.get(row["algorithm"], {"color": "black"})["color"]
        ax.annotate(
            "", xy=(x, 100 * row["after"]), xytext=(x, 100 * row["before"]),
            arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.6},
        )
        ax.plot([x], [100 * row["after"]], marker="D", markersize=4, color=color)
    for algo in algorithms:
        ax.plot([], [], marker="D", color=ALGO_STYLE.get(algo, {"color": "black"})["color"], label=f"after RL ({algo.upper()})")
    ax.set_title(f"RL from SFT checkpoints: {split} success before → after")
    ax.set_xlabel("SFT step RL starts from (0 = base model)")
    ax.set_ylabel("episode success (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, png_path)
