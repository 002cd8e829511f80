"""F4: the better a start checkpoint's OOD success, the better the OOD success after RL, and the longer SFT
ran past the OOD peak, the less RL recovers: rank correlations over the RL starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sftrl.claims.evidence import Evidence, roles_peak
from sftrl.claims.inputs import ClaimInputs, RlStart, rl_starts
from sftrl.claims.verdicts import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    Check,
    ClaimSettings,
    Finding,
    combine,
    rank_test,
    rank_verdict,
)
from sftrl.curves import CurvePoint, ood_curve
from sftrl.stats import ALPHA

STATEMENT = "Better SFT checkpoints in, better RL out; overfitted checkpoints resist restoration."
OVER_STARTS = (
    "the start is the unit: the permutation test over starts is exact whatever the seeds' spread, which lies in "
    "each start's value and costs power, not validity"
)


def finding_4(inputs: ClaimInputs, settings: ClaimSettings, evidence: Evidence) -> Finding:
    checks = []
    points, _ = ood_curve(inputs.curve)
    starts = rl_starts(inputs.rl, settings.algorithms, settings.rl_update) if points else {}
    sft_peak = roles_peak(points, inputs.roles, evidence) if points else None
    for algorithm, items in starts.items():
        result = rank_test([s.before for s in items], [s.after for s in items], "greater", settings.seed)
        verdict, reason = rank_verdict(result, "greater")
        checks.append(
            Check(
                f"F4.better_in_better_out.{algorithm}",
                f"{algorithm.upper()}: the better a start checkpoint's OOD success, the better the OOD success after RL",
                verdict,
                reason,
                "Spearman rank correlation of OOD success before and after RL (each start's mean over its seeds) over "
                f"the start checkpoints, one-sided permutation test at α = 0.05, Fisher-z 95% interval; {OVER_STARTS}",
                [f"step {s.step}: {100 * s.before:.1f}% → {_after_text(s)}" for s in items] + [_rank_text(result)],
                result,
                _rho_text(result),
                _rho_effect(result),
                _rank_p(result, verdict),
            )
        )
        peak_point = cast(CurvePoint, sft_peak)  # there are starts only where there is a curve
        later = [s for s in items if s.step > peak_point.step and peak_point.ood.rate != s.before]
        recoveries = [100 * (s.after - s.before) / (peak_point.ood.rate - s.before) for s in later]
        result = rank_test([s.step for s in later], recoveries, "less", settings.seed)
        verdict, reason = rank_verdict(result, "less")
        checks.append(
            Check(
                f"F4.overfit_resists.{algorithm}",
                f"{algorithm.upper()}: the longer SFT ran past the OOD peak, the less RL recovers",
                verdict,
                reason,
                "Spearman rank correlation of start step and recovery % (of each start's mean over its seeds) over the "
                f"starts after the OOD peak (step {peak_point.step}), one-sided permutation test at α = 0.05; {OVER_STARTS}",
                [
                    f"step {s.step}: recovery {r:.0f}%, OOD after RL {_after_text(s)}"
                    for s, r in zip(later, recoveries, strict=False)
                ]
                + [_rank_text(result)],
                {**result, "steps": [s.step for s in later], "recovery_pct": recoveries},
                _rho_text(result),
                _rho_effect(result),
                _rank_p(result, verdict),
            )
        )
    if not checks:
        checks.append(
            Check("F4", "better SFT checkpoints in, better RL out", INCONCLUSIVE, "no RL runs in the table", "-")
        )
    return Finding("F4", STATEMENT, combine(c.verdict for c in checks), checks)


def _after_text(start: RlStart) -> str:
    after = f"{100 * start.after:.1f}%"
    return f"{after} (seeds {start.seeds_text()}%)" if start.seeds > 1 else after


def _rank_text(result: Mapping[str, Any]) -> str:
    if result["rho"] is None:
        return f"n = {result['n']}: no rank correlation"
    text = f"n = {result['n']}, Spearman ρ = {result['rho']:.2f}, one-sided p = {result['p']:.3g}"
    if result["ci_low"] is not None:
        text += f", 95% interval [{result['ci_low']:.2f}, {result['ci_high']:.2f}]"
    return text


def _rank_p(result: Mapping[str, Any], verdict: str) -> float | None:
    """The permutation p, except where the verdict rests on the interval lying on the wrong side of 0."""
    return None if verdict == NOT_SUPPORTED else result["p"]


def _rho_effect(result: Mapping[str, Any]) -> str:
    if result["rho"] is None:
        return ""
    interval = f" [{result['ci_low']:.2f}, {result['ci_high']:.2f}]" if result["ci_low"] is not None else ""
    return f"ρ = {result['rho']:.2f}{interval} over {result['n']} starts"


def _rho_text(result: Mapping[str, Any]) -> str:
    rho = result.get("detectable_rho")
    if rho is None:
        return f"no correlation at all: with {result['n']} points the rank test cannot reach p < {ALPHA}"
    return f"|ρ| ≥ {rho:.2f} (n = {result['n']})"
