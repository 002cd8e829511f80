"""A run's results as one Markdown document written from its own tables, so that every number in it is the
run's: success per SFT step and split, RL per start with every seed, the restoration edits, the claims'
table of checks, and the figures. `scripts/results_doc.py` writes it (docs/default-run.md for the default).
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from sftrl import io
from sftrl.claims.inputs import read_csv
from sftrl.names import EVAL_SPLITS

# The figures the document shows, in its order, with what each shows.
FIGURES = (
    ("sft_curve", "success over the SFT ladder"),
    ("rl_from_sft", "OOD success after RL from each SFT checkpoint, every seed"),
    ("rl_curve", "success along the RL runs, the seeds' band"),
    ("restoration_direction", "restoration: sft_peak's singular directions put into sft_end"),
    ("spectrum_drift", "singular-value drift"),
    ("representations", "representations against sft_peak"),
    ("format_errors", "format errors over SFT"),
    ("ppo_advantages", "PPO's normalised advantages per start"),
)
SPLIT_TITLES = {"id": "ID", "id_unseen": "ID unseen", "ood": "OOD"}


def _pct(value: str | float) -> str:
    return f"{100 * float(value):.1f}%"


def _with_interval(row: Mapping[str, str]) -> str:
    return f"{_pct(row['success'])} [{100 * float(row['ci_low']):.1f}, {100 * float(row['ci_high']):.1f}]"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def sft_lines(curve: Sequence[Mapping[str, str]]) -> list[str]:
    """Success with its 95% Wilson interval per SFT step (0: the base) and split, with the OOD first attempt
    judged in any layout where the curve has it."""
    by_step: dict[int, dict[str, Mapping[str, str]]] = defaultdict(dict)
    for entry in curve:
        by_step[int(entry["step"])][entry["split"]] = entry
    splits = [s for s in EVAL_SPLITS if any(s in cells for cells in by_step.values())]
    any_layout = any(entry.get("first_attempt_any_layout") not in (None, "") for entry in curve)
    header = ["SFT step", *(SPLIT_TITLES.get(s, s) for s in splits)]
    if any_layout:
        header.append("OOD first attempt right in any layout")
    body = []
    for step, cells in sorted(by_step.items()):
        row = [("base" if step == 0 else str(step)), *(_with_interval(cells[s]) if s in cells else "–" for s in splits)]
        if any_layout:
            value = cells.get("ood", {}).get("first_attempt_any_layout")
            row.append("–" if value in (None, "") else _pct(value))
        body.append(row)
    n = ", ".join(f"{SPLIT_TITLES.get(s, s)} {next(iter(by_step.values()))[s]['n']}" for s in splits)
    return [f"Success of each SFT checkpoint, 95% Wilson intervals (episodes: {n}):", "", *_table(header, body)]


def rl_lines(rl: Sequence[Mapping[str, str]], split: str = "ood") -> list[str]:
    """Success after RL per start, every seed side by side and their mean, beside the start checkpoint."""
    rows = [r for r in rl if r["split"] == split]
    if not rows:
        return []
    algorithms = sorted({r["algorithm"] for r in rows})
    starts = sorted({int(r["start_step"]) for r in rows})
    body = []
    for step in starts:
        here = [r for r in rows if int(r["start_step"]) == step]
        cells = [str(step), _pct(here[0]["before"])]
        for algorithm in algorithms:
            runs = sorted((r for r in here if r["algorithm"] == algorithm), key=lambda r: int(r["seed"]))
            values = [100 * float(r["after"]) for r in runs]
            mean = sum(values) / len(values) if values else float("nan")
            cells.append(" / ".join(f"{v:.1f}" for v in values) + (f" (mean {mean:.1f})" if len(values) > 1 else ""))
        body.append(cells)
    seeds = sorted({int(r["seed"]) for r in rows})
    header = ["start step", "SFT checkpoint", *(f"{a.upper()} seed {' / '.join(map(str, seeds))}" for a in algorithms)]
    title = SPLIT_TITLES.get(split, split)
    return [f"{title} success (%) after RL from each SFT checkpoint, seed by seed:", "", *_table(header, body)]


def restoration_lines(restoration: Sequence[Mapping[str, str]]) -> list[str]:
    """Each edit's success per split, with the OOD recovery % of the gap between its source and target."""
    by_edit: dict[tuple[str, str, str], dict[str, Mapping[str, str]]] = defaultdict(dict)
    for row in restoration:
        by_edit[(row["source_role"], row["target_role"], row["edit"])][row["split"]] = row
    if not by_edit:
        return []
    splits = [s for s in EVAL_SPLITS if any(s in cells for cells in by_edit.values())]
    body = []
    for (source, target, edit), cells in by_edit.items():
        recovery = cells.get("ood", {}).get("recovery_pct")
        body.append(
            [
                f"{target} with {source}'s {edit}",
                *(_pct(cells[s]["success"]) if s in cells else "–" for s in splits),
                "–" if recovery in (None, "") else f"{float(recovery):.0f}%",
            ]
        )
    header = ["edited model", *(SPLIT_TITLES.get(s, s) for s in splits), "OOD recovery (all episodes)"]
    return ["Restoration edits (recovery: of the OOD gap between source and target):", "", *_table(header, body)]


def claims_lines(claims: Mapping) -> list[str]:
    """The verdict per finding and the table of every check, from claims.json."""
    lines = _table(["finding", "verdict"], [[f["id"], f"**{f['verdict']}**"] for f in claims["findings"]])
    rows = []
    for finding in claims["findings"]:
        for check in finding["checks"]:
            p = check.get("p")
            rows.append(
                [
                    check["id"],
                    check["verdict"],
                    check.get("effect") or "–",
                    "–" if p is None else f"{p:.3g}",
                    check.get("detectable") or "not applicable",
                ]
            )
    return [*lines, "", *_table(["check", "verdict", "effect [95% interval]", "p", "detectable"], rows)]


def figure_lines(figures: Path, out_dir: Path, doc_dir: Path) -> list[str]:
    """Copies the run's figures into out_dir and links them from a document in doc_dir."""
    lines = []
    for name, caption in FIGURES:
        source = figures / f"{name}.png"
        if source.is_file():
            out_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out_dir / source.name)
            lines += [f"![{caption}]({(out_dir / source.name).relative_to(doc_dir).as_posix()})", ""]
    return lines


def render(results: Path, out: Path, figures_out: Path) -> str:
    """The document for the run under `results` (`results/<exp>`), to be written at `out`, its figures
    copied into `figures_out` (a folder at or below out's)."""
    tables = results / "tables"
    claims = io.read_json(results / "report" / "claims.json")
    commit = claims.get("provenance", {}).get("git_commit")
    parts = [
        f"# Results: experiment {results.name}",
        "",
        f"Written by `python scripts/results_doc.py --results {results.as_posix()}` from the run's tables"
        + (f" (commit {str(commit)[:10]})" if commit else "")
        + "; every number below is the run's.",
        "",
        *sft_lines(read_csv(tables / "sft_curve.csv")),
        "",
    ]
    if (tables / "rl_from_sft.csv").is_file():
        rl = read_csv(tables / "rl_from_sft.csv")
        parts += [*rl_lines(rl, "ood"), "", *rl_lines(rl, "id"), ""]
    if (tables / "restoration.csv").is_file():
        parts += [*restoration_lines(read_csv(tables / "restoration.csv")), ""]
    parts += ["## Claims", "", *claims_lines(claims), "", "## Figures", ""]
    parts += figure_lines(results / "figures", figures_out, out.parent)
    return "\n".join(parts).rstrip() + "\n"


def write(results: str | Path, out: str | Path, figures_out: str | Path) -> None:
    io.write_text(out, render(Path(results), Path(out), Path(figures_out)))
