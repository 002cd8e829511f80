"""F1's representation check: RL moves the model's representations back toward the OOD peak.

Read from `tables/representations.csv` (`sftrl.representations.table`): for each RL run that starts from
sft_end, each metric's recovery Δ on the OOD prompts, with its paired bootstrap interval. The rule, fixed
before any run: a run moved back where most metrics' intervals lie above 0 (closer to sft_peak than
sft_end is), moved away where most lie below 0; otherwise the check cannot tell. Runs of one algorithm
(seeds) are judged together: every run must agree for a verdict.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sftrl.claims.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Check, combine, num
from sftrl.names import OOD, rl_run

CLAIM = "RL moves the representations of the OOD prompts back toward the OOD-peak checkpoint"
TEST = (
    "per metric (cosine, linear CKA, MMD², Fréchet, Jensen–Shannon, top-k overlap) the recovery Δ = how much "
    "closer to sft_peak the RL model is than sft_end, 95% paired BCa bootstrap over prompts; a run counts as "
    "moved back (away) when most metrics' intervals exclude 0 on that side"
)


def run_verdict(rows: Sequence[Mapping[str, Any]]) -> tuple[str, list[str]]:
    """One RL run's verdict from its OOD rows, and one evidence line per metric."""
    closer = farther = 0
    lines = []
    for row in rows:
        delta, low, high = num(row["delta"]), num(row["delta_low"]), num(row["delta_high"])
        if delta is None or low is None or high is None:
            lines.append(f"{row['model']} {row['metric']}: no interval")
            continue
        closer += low > 0
        farther += high < 0
        side = "closer" if low > 0 else "farther" if high < 0 else "no change shown"
        win = num(row["win_rate"])
        wins = "" if win is None else f", closer on {100 * win:.0f}% of prompts"
        lines.append(
            f"{row['model']} {row['metric']}: {num(row['value']):.4g} vs sft_end, Δ {delta:+.4g} "
            f"[{low:+.4g}, {high:+.4g}] ({side}{wins})"
        )
    majority = len(rows) // 2 + 1
    verdict = SUPPORTED if closer >= majority else NOT_SUPPORTED if farther >= majority else INCONCLUSIVE
    return verdict, lines


def check_representations(rows: Sequence[Mapping[str, Any]] | None) -> list[Check]:
    """One check per RL algorithm whose runs from sft_end were compared; none without the table."""
    if rows is None:
        return []
    runs: dict[str, dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["split"] == OOD and row["role"] == "rl_from_end":
            runs[rl_run(row["model"]).algorithm][row["model"]].append(row)
    if not runs:
        reason = "no RL run from sft_end was compared with sft_peak on the OOD prompts"
        return [Check("F1.representations", CLAIM, INCONCLUSIVE, reason, TEST)]
    checks = []
    for algorithm, models in sorted(runs.items()):
        verdicts, evidence = [], []
        for model_rows in models.values():
            verdict, lines = run_verdict(model_rows)
            verdicts.append(verdict)
            evidence += lines
        verdict = combine(verdicts) if len(set(verdicts)) == 1 else INCONCLUSIVE
        reason = {
            SUPPORTED: "most metrics put the RL model closer to sft_peak than sft_end is",
            NOT_SUPPORTED: "most metrics put the RL model farther from sft_peak than sft_end is",
            INCONCLUSIVE: "the metrics (or the seeds) do not agree on a direction",
        }[verdict]
        if all(num(row["delta"]) is None for rows in models.values() for row in rows):
            reason = (
                "no recovery Δ: sft_end was not compared with sft_peak (where sft_peak is sft_end, nothing was lost)"
            )
        numbers = {"runs": list(models), "verdicts": verdicts}
        checks.append(Check(f"F1.representations.{algorithm}", CLAIM, verdict, reason, TEST, evidence, numbers))
    return checks
