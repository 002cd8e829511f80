"""Whether a run reproduces the paper's stage table (`report.paper_table`): each of its six numbers (ID and OOD
success of the peak, the end and the RL model) beside this run's, their difference with a 95% interval, and an
equivalence test (TOST: two one-sided score tests of the difference, statsmodels) at the margin the config
states, with the smallest margin this run's counts show and the smallest any run of these sizes could show.

The run's numbers come from the tables the claims already read: the SFT curve for sft_peak and sft_end (as
roles.json names them) and the RL table for the paper's algorithm from sft_end, seeds averaged (n: the
episodes of one run). The paper's counts are k/234.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from statsmodels.stats.proportion import confint_proportions_2indep, tost_proportions_2indep

from sftrl.claims.inputs import ClaimInputs
from sftrl.paper import EPISODES, PAPER_SPLITS, PAPER_TABLES, STAGES, paper_count
from sftrl.stats import ALPHA

STAGE_LABELS = {"peak": "peak (sft_peak)", "end": "end (sft_end)", "rl": "RL from the end"}


def _equivalent(count: float, n: int, paper_k: int, margin: float) -> float:
    """The TOST p-value of |run - paper| < margin (proportions), score test with the small-sample correction."""
    return float(tost_proportions_2indep(count, n, paper_k, EPISODES, -margin, margin, method="score").pvalue)


def smallest_margin(count: float, n: int, paper_k: int) -> float:
    """The smallest margin (a proportion) at which these counts pass TOST at ALPHA, by bisection."""
    low, high = 0.0, 1.0
    for _ in range(40):
        middle = (low + high) / 2
        if _equivalent(count, n, paper_k, middle) < ALPHA:
            high = middle
        else:
            low = middle
    return high


def _run_rate(inputs: ClaimInputs, split: str, stage: str, algorithm: str) -> tuple[float, int] | None:
    """This run's success (a proportion) and its episodes for one cell of the paper's table."""
    roles = inputs.roles or {}
    steps = roles.get("steps", {})
    curve = {(int(r["step"]), r["split"]): r for r in inputs.curve}
    if stage in ("peak", "end"):
        row = curve.get((steps.get("sft_peak" if stage == "peak" else "sft_end"), split))
        return (float(row["success"]), int(row["n"])) if row else None
    end = steps.get("sft_end")
    after = [
        float(r["after"])
        for r in inputs.rl
        if r["split"] == split and r["algorithm"] == algorithm and int(r["start_step"]) == end
    ]
    row = curve.get((end, split))
    return (sum(after) / len(after), int(row["n"])) if after and row else None


def reproduction_rows(inputs: ClaimInputs, table: str, margin_pct: float) -> list[dict[str, Any]]:
    """One row per number of the paper's table: this run's, the paper's, their difference and the tests."""
    paper = PAPER_TABLES[table]
    margin = margin_pct / 100
    rows = []
    for paper_split, split in PAPER_SPLITS.items():
        for stage in STAGES:
            paper_rate = paper.rates[paper_split][stage]
            k = paper_count(paper_rate)
            found = _run_rate(inputs, split, stage, paper.algorithm)
            row: dict[str, Any] = {"split": paper_split, "stage": stage, "paper_pct": paper_rate, "paper_n": EPISODES}
            if found is None:
                rows.append({**row, "run_pct": None})
                continue
            rate, n = found
            count = rate * n
            low, high = confint_proportions_2indep(count, n, k, EPISODES, method="newcomb", compare="diff")
            p = _equivalent(count, n, k, margin)
            rows.append(
                {
                    **row,
                    "run_pct": 100 * rate,
                    "run_n": n,
                    "difference_pct": 100 * (rate - k / EPISODES),
                    "ci_low_pct": 100 * float(low),
                    "ci_high_pct": 100 * float(high),
                    "margin_pct": margin_pct,
                    "p_tost": p,
                    "equivalent": p < ALPHA,
                    "shown_within_pct": 100 * smallest_margin(count, n, k),
                    "best_case_pct": 100 * smallest_margin(k / EPISODES * n, n, k),
                }
            )
    return rows


def reproduction_lines(rows: Sequence[Mapping[str, Any]], table: str) -> list[str]:
    """The "Reproduces the paper?" section of claims.md."""
    paper = PAPER_TABLES[table]
    measured = [r for r in rows if r.get("run_pct") is not None]
    margin = measured[0]["margin_pct"] if measured else None
    lines = [
        f"## Reproduces the paper? ({paper.model}, the paper's stage table)",
        "",
        f"{sum(bool(r['equivalent']) for r in measured)} of {len(rows)} numbers are equivalent to the paper's within "
        f"±{margin:g} points (report.equivalence_margin_pct)."
        if measured
        else "No number of this run to compare.",
        "",
        "| split | stage | this run | paper | difference [95% CI] | equivalent? (TOST p) | shown within | "
        "smallest at these sizes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        label = f"| {r['split'].upper()} | {STAGE_LABELS[r['stage']]} |"
        if r.get("run_pct") is None:
            lines.append(f"{label} not run | {r['paper_pct']:.2f}% | – | – | – | – |")
            continue
        lines.append(
            f"{label} {r['run_pct']:.2f}% (n = {r['run_n']}) | {r['paper_pct']:.2f}% | {r['difference_pct']:+.2f} "
            f"[{r['ci_low_pct']:+.2f}, {r['ci_high_pct']:+.2f}] | {'yes' if r['equivalent'] else 'no'} "
            f"({r['p_tost']:.3g}) | ±{r['shown_within_pct']:.1f} | ±{r['best_case_pct']:.1f} |"
        )
    lines += [
        "",
        "*Test:* the difference of two independent proportions (this run's episodes, the paper's 234), a Newcombe "
        "95% interval and two one-sided score tests at ± the margin (statsmodels), α = 0.05. *Shown within:* the "
        "smallest margin these counts pass; *smallest at these sizes:* the smallest any run of this size could pass, "
        "its difference being 0. With 234 episodes a side that is about ±5–6 points, so only a large departure can "
        "be told from the paper; more episodes narrow it (with sampled decoding, eval.samples plays each hand "
        "several times, as far as a hand's samples are independent). The RL row averages the seeds of "
        f"{paper.algorithm.upper()} from sft_end, with n the episodes of one run."
        + (f" The paper's own figures differ: {paper.note}." if paper.note else ""),
        "",
    ]
    return lines
