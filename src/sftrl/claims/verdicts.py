"""How a check reaches its verdict: the verdicts, a check and a finding, the thresholds (`ClaimSettings`),
the rules that turn p-values and rank correlations into verdicts, and the texts of numbers the checks share."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sftrl import stats
from sftrl.curves import Rate
from sftrl.stats import ALPHA, Arm

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)
Z95 = 1.96
EXACT_PERMUTATION_MAX = 8  # n! permutations up to here (40,320), random ones beyond
SEED_TEST = {  # the RL checks' test, with per-episode outcomes (True) and with the tables' rates (False)
    True: "seeds and episodes (seed and episode variance, Cochran–Cox)",
    False: "the seeds' rates",
}


@dataclass(frozen=True)
class ClaimSettings:
    """Thresholds of the claims (config `report.claims`) and the bootstrap."""

    most_recovered_pct: float = 50.0  # F1: "most" of the OOD accuracy lost
    restored_pct: float = 70.0  # F3: the recovery the paper reports (70-80%)
    max_sigma_drift: float = 0.01  # F2: "barely move": median relative drift below this
    rotation_ratio: float = 10.0  # F2: directions move at least this many times more than values
    angle_k_fraction: float = 0.2  # F2: the top-k subspace (fraction of the rank) whose rotation counts
    bootstrap_draws: int = 10_000
    seed: int = 0
    algorithms: tuple[str, ...] | None = None  # RL algorithms checked; None: every one in the table
    rl_update: int | None = None  # the update whose policy plays each RL run (rl.analysed_update); None: the final

    def __post_init__(self):
        if self.bootstrap_draws < 100:
            raise ValueError(f"bootstrap_draws = {self.bootstrap_draws}: use at least 100 draws")
        if self.algorithms is not None:
            object.__setattr__(self, "algorithms", tuple(self.algorithms))


@dataclass
class Check:
    id: str
    claim: str
    verdict: str
    reason: str
    test: str
    evidence: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    detectable: str = ""  # the smallest effect the check could have detected at these sizes
    effect: str = ""  # the measured effect the verdict rests on, with its 95% interval
    p: float | None = None  # the one-sided p the verdict rests on (Holm-adjusted within a family)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")


@dataclass
class Finding:
    id: str
    statement: str
    verdict: str
    checks: list[Check]


def combine(verdicts: Iterable[str]) -> str:
    """A finding's verdict from its checks: any not supported → not supported; all supported → supported."""
    verdicts = list(verdicts)
    if NOT_SUPPORTED in verdicts:
        return NOT_SUPPORTED
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return INCONCLUSIVE


def decisive_p(verdict: str, p_for: float | None, p_against: float | None) -> float | None:
    """The p a verdict rests on: the one against the claim where it is not supported, else the one for it."""
    return p_against if verdict == NOT_SUPPORTED else p_for


def p_verdict(p_for: float | None, p_against: float | None, alpha: float = ALPHA) -> str:
    """supported when the (adjusted) p-value for the claim is below α, not supported when the one against it is."""
    if p_for is not None and p_for < alpha:
        return SUPPORTED
    if p_against is not None and p_against < alpha:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def family_verdict(p_for: Sequence[float], p_against: Sequence[float]) -> tuple[str, list[float], list[float]]:
    """A claim tested on several starts or edits, Holm-corrected: supported when it holds for one of them,
    not supported when its opposite holds for all. Returns the verdict and both adjusted p-value lists."""
    adjusted_for, adjusted_against = stats.holm(p_for), stats.holm(p_against)
    if min(adjusted_for) < ALPHA:
        return SUPPORTED, adjusted_for, adjusted_against
    if max(adjusted_against) < ALPHA:
        return NOT_SUPPORTED, adjusted_for, adjusted_against
    return INCONCLUSIVE, adjusted_for, adjusted_against


def num(value: Any) -> float | None:
    """A table cell as a number; None for an empty cell or NaN."""
    if value is None or value == "":
        return None
    number = float(value)
    return None if math.isnan(number) else number


def points_text(value: float | None) -> str:
    """An effect in percentage points; None: no effect is detectable at these sizes."""
    return "none at these sizes" if value is None else f"{100 * value:.1f} points"


def recovery_text(detectable: float | None, threshold: float) -> str:
    """The smallest distance of a recovery % from its threshold that a check could detect."""
    return f"{'—' if detectable is None else f'{detectable:.0f} points'} from {threshold:g}%"


def arm_text(arm: Arm) -> str:
    """A success rate with its Wilson interval; a pooled per-episode mean is rounded to whole episodes."""
    return Rate(round(arm.k), arm.n).text()


def rank_test(x: Sequence[float], y: Sequence[float], alternative: str, seed: int = 0) -> dict[str, Any]:
    """Spearman's ρ with a permutation p-value (`alternative`: greater or less) and a Fisher-z 95%
    interval from 4 points on. ρ is None when either variable does not vary."""
    from scipy import stats as sps

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(xa)
    result: dict[str, Any] = {"n": n, "rho": None, "p": None, "ci_low": None, "ci_high": None}
    result["detectable_rho"] = stats.detectable_rho(n)
    if n < 3 or np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return result
    rho = float(sps.spearmanr(xa, ya).statistic)
    permutations = sps.permutation_test(
        (xa,),
        lambda xs: sps.spearmanr(xs, ya).statistic,
        permutation_type="pairings",
        alternative=alternative,
        n_resamples=9999 if n > EXACT_PERMUTATION_MAX else math.factorial(n),
        rng=seed,
    )
    result.update(rho=rho, p=float(permutations.pvalue), exact=n <= EXACT_PERMUTATION_MAX)
    result["min_p"] = 1 / math.factorial(n) if n <= EXACT_PERMUTATION_MAX else None
    if n >= 4:
        z = math.atanh(max(-0.999999, min(0.999999, rho)))
        half = Z95 * math.sqrt(1.06 / (n - 3))
        result.update(ci_low=math.tanh(z - half), ci_high=math.tanh(z + half))
    return result


def rank_verdict(test: Mapping[str, Any], expected: str, alpha: float = ALPHA) -> tuple[str, str]:
    """Verdict of a one-sided rank test whose claim is a correlation of sign `expected` (greater/less)."""
    if test["rho"] is None:
        return INCONCLUSIVE, f"{test['n']} points without variation in both variables: no rank correlation"
    if test["p"] < alpha:
        return SUPPORTED, f"ρ = {test['rho']:.2f}, one-sided permutation p = {test['p']:.3g} < {alpha}"
    against = (test["rho"] < 0) if expected == "greater" else (test["rho"] > 0)
    if against and test["ci_high" if expected == "greater" else "ci_low"] is not None:
        bound = test["ci_high"] if expected == "greater" else test["ci_low"]
        if (expected == "greater" and bound < 0) or (expected == "less" and bound > 0):
            return NOT_SUPPORTED, f"ρ = {test['rho']:.2f} with its 95% interval on the opposite side of 0"
    floor = test.get("min_p")
    extra = (
        f"; with {test['n']} points the smallest p a rank test can reach is {floor:.3g}"
        if floor and floor >= alpha
        else ""
    )
    return INCONCLUSIVE, f"ρ = {test['rho']:.2f}, one-sided permutation p = {test['p']:.3g} ≥ {alpha}{extra}"
