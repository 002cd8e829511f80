"""A verdict on each finding of the study, from the workflow's result tables.

Every finding is tested by one or more checks. A check is `supported` only when its 95% intervals (or
its test at α = 0.05) carry the claim, `not supported` when they carry the opposite, and `inconclusive`
otherwise: when intervals overlap, when there is nothing measurable to test (no OOD loss beyond the
intervals to recover, too few RL starts for a rank test to reach significance), or when a stage that
would measure it was not run. A finding is `not supported` when one of its checks is, `supported` when
all are, and `inconclusive` otherwise.

Statistics used:
- success rates carry 95% Wilson intervals (k of n episodes), as the evaluation tables do;
- a recovery % = (after − target) / (source − target) · 100 gets a 95% parametric bootstrap interval:
  each of the three rates is redrawn as Binomial(n, rate) / n, independently (for models evaluated on the
  same episodes this overstates the variance: the interval errs wide);
- spectral statistics are medians over weight matrices with 95% bootstrap intervals over matrices;
- rank correlations are Spearman's ρ with an exact permutation p-value (random permutations beyond 8
  points) and, from 4 points on, a Fisher-z interval with the Fieller–Hartley–Pearson variance 1.06/(n − 3).

The peak of the SFT curve is picked as the best of several noisy checkpoints, so its rate is biased
upwards; requiring intervals that do not overlap (a stricter test than a single 5% comparison) is the
guard against reading noise as a peak.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sftrl import io
from sftrl.curves import recovery_pct
from sftrl.evaluate.metrics import wilson_interval

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)
Z95 = 1.96
EXACT_PERMUTATION_MAX = 8  # n! permutations up to here (40,320), random ones beyond

FINDINGS = {
    "F1": (
        "RL-FT restores most of the OOD accuracy lost during SFT when it starts from a moderately trained SFT "
        "checkpoint; from a severely overfitted checkpoint it cannot. OOD accuracy peaks early in SFT and then "
        "declines, and the peak is not visible in the training or test loss."
    ),
    "F2": (
        "Singular values of the weight matrices barely move during SFT or RL (relative drift about 0.3-0.7%); "
        "what moves are the singular vectors' directions, concentrated at the largest and smallest singular values."
    ),
    "F3": (
        "Restoring singular-vector directions for the top 20% of singular values, or the first 25% of layers, "
        "recovers 70-80% of the OOD accuracy."
    ),
    "F4": "Better SFT checkpoints in, better RL out; overfitted checkpoints resist restoration.",
}
RESTORE_TOP = 0.2  # the paper's direction swap: top 20% of the singular values
RESTORE_LAYERS = ("0.25", "0:0.25", "0.0:0.25")  # the paper's layer reset: the first 25% of the layers


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


def sign_verdict(low: float | None, high: float | None) -> str:
    """supported when the interval of a difference lies above 0, not supported when below it."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE
    return SUPPORTED if low > 0 else NOT_SUPPORTED if high < 0 else INCONCLUSIVE


def three_way(low: float | None, high: float | None, threshold: float) -> str:
    """supported when the interval lies at or above the threshold, not supported when below it."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return INCONCLUSIVE
    if low >= threshold:
        return SUPPORTED
    if high < threshold:
        return NOT_SUPPORTED
    return INCONCLUSIVE


# --- rates, recoveries, rank tests ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """k successes in n episodes, with the 95% Wilson interval."""

    k: int
    n: int

    @classmethod
    def of(cls, rate: float, n: int) -> Rate:
        n = int(n)
        if n <= 0:
            raise ValueError(f"a success rate needs n > 0 episodes, got {n}")
        return cls(int(round(float(rate) * n)), n)

    @property
    def rate(self) -> float:
        return self.k / self.n

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    def above(self, other: Rate) -> bool:
        """This rate's interval lies entirely above the other's."""
        return self.ci[0] > other.ci[1]

    def overlaps(self, other: Rate) -> bool:
        return not (self.above(other) or other.above(self))

    def to_dict(self) -> dict[str, float]:
        low, high = self.ci
        return {"rate": self.rate, "ci_low": low, "ci_high": high, "k": self.k, "n": self.n}

    def text(self) -> str:
        low, high = self.ci
        return f"{100 * self.rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}] (n = {self.n})"


def pooled(rates: Sequence[Rate]) -> Rate:
    return Rate(sum(r.k for r in rates), sum(r.n for r in rates))


def _draws(rate: Rate, rng: np.random.Generator, size: int) -> np.ndarray:
    return rng.binomial(rate.n, rate.rate, size) / rate.n


def recovery_interval(
    after: Rate, target: Rate, source: Rate, draws: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Recovery % of `after` between `target` (0%) and `source` (100%), with a 95% bootstrap interval."""
    point = _nan_if_none(recovery_pct(after.rate, target.rate, source.rate))
    s, t, a = (_draws(r, rng, draws) for r in (source, target, after))
    ok = s != t
    return (point, *_bootstrap_interval(100 * (a[ok] - t[ok]) / (s[ok] - t[ok]), draws))


def recovery_difference(
    first: Rate, second: Rate, target: Rate, source: Rate, draws: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Recovery % of `first` minus that of `second` (same source and target), 95% paired bootstrap."""
    point = _nan_if_none(recovery_pct(first.rate, target.rate, source.rate)) - _nan_if_none(
        recovery_pct(second.rate, target.rate, source.rate)
    )
    s, t, a, b = (_draws(r, rng, draws) for r in (source, target, first, second))
    ok = s != t
    return (point, *_bootstrap_interval(100 * (a[ok] - b[ok]) / (s[ok] - t[ok]), draws))


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def _bootstrap_interval(values: np.ndarray, draws: int) -> tuple[float, float]:
    """The 95% percentile interval; NaN when more than half the draws had no gap to measure against."""
    if len(values) < draws / 2:
        return math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def rank_test(x: Sequence[float], y: Sequence[float], alternative: str, seed: int = 0) -> dict[str, Any]:
    """Spearman's ρ with a permutation p-value (`alternative`: greater or less) and a Fisher-z 95%
    interval from 4 points on. ρ is None when either variable does not vary."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    result: dict[str, Any] = {"n": n, "rho": None, "p": None, "ci_low": None, "ci_high": None}
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return result
    rho = float(stats.spearmanr(x, y).statistic)
    permutations = stats.permutation_test(
        (x,),
        lambda xs: stats.spearmanr(xs, y).statistic,
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


def rank_verdict(test: Mapping[str, Any], expected: str, alpha: float = 0.05) -> tuple[str, str]:
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
    extra = f"; with {test['n']} points the smallest p a rank test can reach is {floor:.3g}" if floor and floor >= alpha else ""
    return INCONCLUSIVE, f"ρ = {test['rho']:.2f}, one-sided permutation p = {test['p']:.3g} ≥ {alpha}{extra}"


def _bootstrap_median(values: np.ndarray, draws: int, rng: np.random.Generator) -> tuple[float, float, float]:
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    samples = rng.integers(0, len(values), size=(draws, len(values)))
    medians = np.median(values[samples], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(np.median(values)), float(low), float(high)


# --- reading the tables ----------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    number = float(value)
    return None if math.isnan(number) else number


@dataclass
class ClaimInputs:
    """The result tables the claims are read from (rows as read from CSV: strings are fine).

    curve: tables/sft_curve.csv; rl: tables/rl_from_sft.csv; history: sft/history.jsonl (train loss and
    eval losses per step); spectra: model → tidy spectral table of that model against the base (sft_end
    and the RL models started from it);
    restoration: tables/restoration.csv, or None when the stage was not run; roles: tables/roles.json.
    """

    curve: list[Mapping[str, Any]]
    rl: list[Mapping[str, Any]] = field(default_factory=list)
    history: list[Mapping[str, Any]] = field(default_factory=list)
    spectra: Mapping[str, Any] = field(default_factory=dict)
    restoration: list[Mapping[str, Any]] | None = None
    roles: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Point:
    step: int
    ood: Rate


def ood_curve(rows: Iterable[Mapping[str, Any]]) -> tuple[list[Point], Point | None]:
    """(SFT checkpoints in step order, the base model or None) of the OOD split."""
    points, base = [], None
    for row in rows:
        if row["split"] != "ood":
            continue
        point = Point(int(row["step"]), Rate.of(row["success"], row["n"]))
        if point.step == 0:
            base = point
        else:
            points.append(point)
    return sorted(points, key=lambda p: p.step), base


def peak_of(points: Sequence[Point]) -> Point:
    """The best OOD success, the earliest step on a tie (the rule of `sftrl.roles`)."""
    best = max(p.ood.rate for p in points)
    return min((p for p in points if p.ood.rate == best), key=lambda p: p.step)


# --- F1 --------------------------------------------------------------------------------------------


def check_peak(points: Sequence[Point], base: Point | None) -> Check:
    claim = "OOD success peaks before the end of SFT and then declines"
    test = "95% Wilson intervals of the best SFT checkpoint before the last one and of the last one: non-overlap"
    if len(points) < 2:
        return Check("F1.peak", claim, INCONCLUSIVE, f"{len(points)} SFT checkpoint(s): no curve to peak", test)
    end = points[-1]
    peak = peak_of(points[:-1])
    evidence = [
        f"best before the end: step {peak.step}, OOD {peak.ood.text()}",
        f"end: step {end.step}, OOD {end.ood.text()}",
    ]
    if base:
        evidence.append(f"base model: OOD {base.ood.text()}")
    numbers = {"peak_step": peak.step, "peak": peak.ood.to_dict(), "end_step": end.step, "end": end.ood.to_dict()}
    if base:
        numbers["base"] = base.ood.to_dict()
    if peak.ood.above(end.ood):
        verdict, reason = SUPPORTED, f"step {peak.step} is above the end beyond both intervals"
    elif end.ood.above(peak.ood):
        verdict, reason = NOT_SUPPORTED, "the last checkpoint is above every earlier one beyond both intervals"
    else:
        verdict, reason = INCONCLUSIVE, "the intervals of the best earlier checkpoint and of the end overlap"
    return Check("F1.peak", claim, verdict, reason, test, evidence, numbers)


def _argmin(history: Sequence[Mapping[str, Any]], key: str) -> tuple[int, float] | None:
    values = [(int(row["step"]), float(row[key])) for row in history if _num(row.get(key)) is not None]
    if not values:
        return None
    return min(values, key=lambda item: (item[1], item[0]))


def peak_window(points: Sequence[Point], peak: Point) -> tuple[int | None, int | None]:
    """The nearest checkpoints before and after the peak whose OOD lies below it beyond both intervals
    (None: none on that side); between them OOD cannot be told apart from the peak."""
    steps = [p.step for p in points]
    at = steps.index(peak.step)
    left = next((p.step for p in reversed(points[:at]) if peak.ood.above(p.ood)), None)
    right = next((p.step for p in points[at + 1 :] if peak.ood.above(p.ood)), None)
    return left, right


def check_loss(points: Sequence[Point], history: Sequence[Mapping[str, Any]], peak_check: Check) -> Check:
    claim = "the OOD peak is not visible in the training or test loss"
    test = (
        "the steps of the minimum training loss and of the minimum test loss (held-out ID hands) against the window "
        "around the OOD peak where OOD success cannot be told from the peak (95% Wilson intervals)"
    )
    train = _argmin(history, "loss")
    test_loss = _argmin(history, "eval_id_unseen_loss")
    ood_loss = _argmin(history, "eval_ood_loss")
    evidence, numbers = [], {}
    for label, found in (("training loss", train), ("test loss (ID unseen)", test_loss), ("OOD loss", ood_loss)):
        if found:
            evidence.append(f"{label}: minimum {found[1]:.4g} at step {found[0]}")
            numbers[label.split(" (")[0].replace(" ", "_") + "_min_step"] = found[0]
    if test_loss is None or train is None:
        return Check("F1.loss", claim, INCONCLUSIVE, "the SFT log holds no training or test loss", test, evidence, numbers)
    if peak_check.verdict != SUPPORTED:
        return Check(
            "F1.loss", claim, INCONCLUSIVE, "the OOD peak itself is not established (F1.peak)", test, evidence, numbers
        )
    peak = peak_of(points[:-1])
    left, right = peak_window(points, peak)
    numbers.update(peak_step=peak.step, window=[left, right])
    evidence.append(
        f"OOD peak at step {peak.step}; indistinguishable from it between steps "
        f"{left if left is not None else 'start'} and {right if right is not None else 'end'} (exclusive)"
    )

    def inside(step: int) -> bool:
        return (left is None or step > left) and (right is None or step < right)

    shown = [label for label, found in (("training", train), ("test", test_loss)) if inside(found[0])]
    if shown:
        return Check(
            "F1.loss", claim, NOT_SUPPORTED, f"the {' and '.join(shown)} loss minimum lies in the peak window",
            test, evidence, numbers,
        )
    return Check(
        "F1.loss", claim, SUPPORTED, "neither loss has its minimum in the window of the OOD peak", test, evidence, numbers
    )


@dataclass(frozen=True)
class RlStart:
    algorithm: str
    step: int
    before: Rate
    after: Rate
    seeds: int


def rl_starts(
    rows: Iterable[Mapping[str, Any]], episodes: int, algorithms: Sequence[str] | None = None
) -> dict[str, list[RlStart]]:
    """OOD before and after RL per algorithm and start step, seeds pooled (episodes summed); `episodes`
    is the size of the OOD split (rl_from_sft.csv gives rates, the SFT curve gives n)."""
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["split"] == "ood" and (algorithms is None or row["algorithm"] in algorithms):
            groups[row["algorithm"], int(row["start_step"])].append(row)
    result: dict[str, list[RlStart]] = defaultdict(list)
    for (algorithm, step), group in sorted(groups.items()):
        before = Rate.of(group[0]["before"], episodes)
        after = pooled([Rate.of(row["after"], episodes) for row in group])
        result[algorithm].append(RlStart(algorithm, step, before, after, len(group)))
    return dict(result)


def ood_episodes(points: Sequence[Point]) -> int:
    sizes = {p.ood.n for p in points}
    if len(sizes) != 1:
        raise ValueError(f"the OOD split has different sizes across checkpoints: {sorted(sizes)}")
    return sizes.pop()


def _recovery_lines(starts, peak, settings, rng) -> tuple[list[str], list[dict], dict[int, tuple]]:
    evidence, numbers, intervals = [], [], {}
    for start in starts:
        gap = peak.ood.above(start.before)
        point, low, high = recovery_interval(start.after, start.before, peak.ood, settings.bootstrap_draws, rng)
        intervals[start.step] = (gap, point, low, high)
        text = (
            f"{start.algorithm} from step {start.step} ({start.seeds} seed(s)): OOD {start.before.text()} → "
            f"{start.after.text()}; recovery {point:.0f}% [{low:.0f}, {high:.0f}]"
            if gap
            else f"{start.algorithm} from step {start.step}: OOD {start.before.text()} → {start.after.text()}; "
            "no OOD loss beyond the intervals to recover"
        )
        evidence.append(text)
        numbers.append(
            {
                "start_step": start.step,
                "seeds": start.seeds,
                "before": start.before.to_dict(),
                "after": start.after.to_dict(),
                "gap_significant": gap,
                "recovery_pct": point if not math.isnan(point) else None,
                "recovery_ci": [low, high] if gap and not math.isnan(low) else None,
            }
        )
    return evidence, numbers, intervals


def check_rl_recovery(
    algorithm: str, starts: Sequence[RlStart], peak: Point, settings: ClaimSettings, rng: np.random.Generator
) -> list[Check]:
    """F1: RL from moderate starts (after the OOD peak, before the latest start) recovers most of the OOD
    lost; RL from the latest start does not."""
    threshold = settings.most_recovered_pct
    test = (
        f"recovery % of OOD success against the SFT peak (step {peak.step}) with a 95% parametric bootstrap interval, "
        f"against {threshold:g}% ('most'); only starts whose OOD lies below the peak beyond both Wilson intervals count"
    )
    later = [s for s in starts if s.step > peak.step]
    late = max(later, key=lambda s: s.step) if later else None
    moderate = [s for s in later if late is not None and s.step < late.step]
    checks = []

    claim = f"{algorithm.upper()} from a moderately trained checkpoint restores most of the OOD success SFT lost"
    evidence, numbers, intervals = _recovery_lines(moderate, peak, settings, rng)
    informative = [intervals[s.step] for s in moderate if intervals[s.step][0]]
    if not moderate:
        verdict, reason = INCONCLUSIVE, f"no RL start between the OOD peak (step {peak.step}) and the latest start"
    elif not informative:
        verdict, reason = INCONCLUSIVE, "no moderate start lost OOD success beyond the intervals: nothing measurable to recover"
    elif any(three_way(low, high, threshold) == SUPPORTED for _, _, low, high in informative):
        verdict, reason = SUPPORTED, f"a moderate start's recovery interval lies at or above {threshold:g}%"
    elif all(three_way(low, high, threshold) == NOT_SUPPORTED for _, _, low, high in informative):
        verdict, reason = NOT_SUPPORTED, f"every moderate start's recovery interval lies below {threshold:g}%"
    else:
        verdict, reason = INCONCLUSIVE, f"the recovery intervals straddle {threshold:g}%"
    checks.append(Check(f"F1.rl_moderate.{algorithm}", claim, verdict, reason, test, evidence, {"starts": numbers}))

    claim = f"{algorithm.upper()} from the most overfitted start cannot restore it"
    if late is None:
        checks.append(Check(f"F1.rl_late.{algorithm}", claim, INCONCLUSIVE, f"no RL start after the OOD peak (step {peak.step})", test))
        return checks
    evidence, numbers, intervals = _recovery_lines([late], peak, settings, rng)
    gap, point, low, high = intervals[late.step]
    if not gap:
        verdict, reason = INCONCLUSIVE, "the latest start did not lose OOD success beyond the intervals"
    else:
        verdict = {SUPPORTED: NOT_SUPPORTED, NOT_SUPPORTED: SUPPORTED}.get(three_way(low, high, threshold), INCONCLUSIVE)
        reason = {
            SUPPORTED: f"its recovery interval lies below {threshold:g}%",
            NOT_SUPPORTED: f"its recovery interval lies at or above {threshold:g}%",
            INCONCLUSIVE: f"its recovery interval straddles {threshold:g}%",
        }[verdict]
    checks.append(Check(f"F1.rl_late.{algorithm}", claim, verdict, reason, test, evidence, {"starts": numbers}))
    return checks


def finding_1(inputs: ClaimInputs, settings: ClaimSettings, rng: np.random.Generator) -> Finding:
    points, base = ood_curve(inputs.curve)
    peak_check = check_peak(points, base)
    checks = [peak_check, check_loss(points, inputs.history, peak_check)]
    if points:
        peak = peak_of(points)
        starts = rl_starts(inputs.rl, ood_episodes(points), settings.algorithms)
        for algorithm, items in starts.items():
            checks += check_rl_recovery(algorithm, items, peak, settings, rng)
        if not starts:
            checks.append(
                Check("F1.rl", "RL restores OOD success from moderate starts", INCONCLUSIVE, "no RL runs in the table", "-")
            )
    return Finding("F1", FINDINGS["F1"], combine(c.verdict for c in checks), checks)


# --- F2 --------------------------------------------------------------------------------------------


def _scalar(table, metric: str):
    rows = table.loc[table["metric"] == metric, ["name", "value"]]
    return rows.set_index("name")["value"]


def _at_k(table, metric: str, fraction: float):
    """Per matrix, a per-k metric at the k whose fraction of the rank is `fraction`."""
    fractions = table.loc[table["metric"] == "k_fraction", ["name", "index_or_k", "value"]]
    chosen = fractions.loc[np.isclose(fractions["value"], fraction), ["name", "index_or_k"]]
    if chosen.empty:
        available = sorted(set(np.round(fractions["value"], 6)))
        raise ValueError(f"the spectral table has no k fraction {fraction:g}; it has {available} (spectrum.k_fractions)")
    rows = table.loc[table["metric"] == metric].merge(chosen, on=["name", "index_or_k"])
    return rows.set_index("name")["value"]


def check_spectrum(label: str, table, settings: ClaimSettings, rng: np.random.Generator) -> list[Check]:
    """F2 on one pair table (A → B): small singular-value drift against large rotation, and where the
    singular vectors rotate most (top and bottom 10% of indices against the bulk)."""
    draws = settings.bootstrap_draws
    drift = _scalar(table, "drift_median")
    fraction = settings.angle_k_fraction
    proj = (_at_k(table, "proj_dist_left", fraction) + _at_k(table, "proj_dist_right", fraction)) / 2
    angle = (_at_k(table, "angle_left_mean_deg", fraction) + _at_k(table, "angle_right_mean_deg", fraction)) / 2
    names = drift.index.intersection(proj.index)
    ratio = (proj[names] / drift[names].where(drift[names] > 0)).to_numpy(dtype=float)
    d_med, d_low, d_high = _bootstrap_median(drift[names].to_numpy(dtype=float), draws, rng)
    r_med, r_low, r_high = _bootstrap_median(ratio, draws, rng)
    a_med, a_low, a_high = _bootstrap_median(angle[names].to_numpy(dtype=float), draws, rng)
    p_med, p_low, p_high = _bootstrap_median(proj[names].to_numpy(dtype=float), draws, rng)
    evidence = [
        f"{len(names)} weight matrices",
        f"median relative singular-value drift {100 * d_med:.3g}% [{100 * d_low:.3g}, {100 * d_high:.3g}]",
        f"top-{fraction:g} subspaces: mean principal angle {a_med:.3g}° [{a_low:.3g}, {a_high:.3g}], "
        f"projection distance {p_med:.3g} [{p_low:.3g}, {p_high:.3g}]",
        f"rotation / drift (projection distance over median drift, per matrix): {r_med:.3g} [{r_low:.3g}, {r_high:.3g}]",
    ]
    numbers = {
        "matrices": int(len(names)),
        "drift_median": [d_med, d_low, d_high],
        "angle_deg": [a_med, a_low, a_high],
        "projection_distance": [p_med, p_low, p_high],
        "rotation_over_drift": [r_med, r_low, r_high],
        "k_fraction": fraction,
    }
    test = (
        f"medians over matrices with 95% bootstrap intervals over matrices: drift below {100 * settings.max_sigma_drift:g}% "
        f"and projection distance at least {settings.rotation_ratio:g}× the drift"
    )
    if not len(names):
        verdict, reason = INCONCLUSIVE, "no weight matrices in the table"
    elif d_high < settings.max_sigma_drift and r_low >= settings.rotation_ratio:
        verdict, reason = SUPPORTED, "small drift and a rotation an order of magnitude larger, beyond both intervals"
    elif d_low > settings.max_sigma_drift:
        verdict, reason = NOT_SUPPORTED, f"the drift interval lies above {100 * settings.max_sigma_drift:g}%"
    elif r_high < settings.rotation_ratio:
        verdict, reason = NOT_SUPPORTED, f"rotation is less than {settings.rotation_ratio:g}× the drift beyond its interval"
    else:
        verdict, reason = INCONCLUSIVE, "an interval straddles its threshold"
    checks = [
        Check(f"F2.drift_vs_rotation.{label}", f"base → {label}: singular values barely move, directions do", verdict, reason, test, evidence, numbers)
    ]

    misalign = {}
    for part in ("top", "bulk", "bottom"):
        left, right = _scalar(table, f"align_left_{part}"), _scalar(table, f"align_right_{part}")
        misalign[part] = 1 - (left + right) / 2
    evidence, numbers, verdicts = [], {}, []
    from scipy import stats

    for part in ("top", "bottom"):
        diff = (misalign[part] - misalign["bulk"]).dropna().to_numpy(dtype=float)
        med, low, high = _bootstrap_median(diff, draws, rng)
        p = float(stats.wilcoxon(diff).pvalue) if len(diff) >= 6 and np.any(diff != 0) else None
        verdicts.append(sign_verdict(low, high))
        evidence.append(
            f"misalignment 1 − |⟨u_i, u'_i⟩| (mean of U and V), {part} 10% minus bulk: median {med:.3g} [{low:.3g}, {high:.3g}]"
            + (f", Wilcoxon signed-rank p = {p:.3g}" if p is not None else "")
        )
        numbers[f"{part}_minus_bulk"] = {"median": med, "ci": [low, high], "wilcoxon_p": p}
    verdict = combine(verdicts)
    reason = {
        SUPPORTED: "singular vectors of the largest and of the smallest singular values rotate more than the bulk",
        NOT_SUPPORTED: "at one end the singular vectors rotate less than the bulk, beyond the interval",
        INCONCLUSIVE: "an interval of the difference includes 0",
    }[verdict]
    checks.append(
        Check(
            f"F2.edges.{label}",
            f"base → {label}: the rotation is concentrated at the largest and smallest singular values",
            verdict,
            reason,
            "per matrix, misalignment of the top and bottom 10% of singular vectors minus that of the bulk, index by index "
            "(vectors of near-equal singular values in the bulk can trade places, which counts as rotation here); median "
            "over matrices with a 95% bootstrap interval (Wilcoxon signed-rank p for reference)",
            evidence,
            numbers,
        )
    )
    return checks


def finding_2(inputs: ClaimInputs, settings: ClaimSettings, rng: np.random.Generator) -> Finding:
    checks = []
    for label, table in inputs.spectra.items():
        checks += check_spectrum(label, table, settings, rng)
    if not checks:
        checks.append(
            Check(
                "F2", "singular values barely move, directions do", INCONCLUSIVE,
                "no spectral tables: spectrum.pairs holds neither base_to_sft nor base_to_rl", "-",
            )
        )
    return Finding("F2", FINDINGS["F2"], combine(c.verdict for c in checks), checks)


# --- F3 --------------------------------------------------------------------------------------------


def _edit_rate(row: Mapping[str, Any]) -> tuple[Rate, Rate, Rate]:
    n = int(row["n"])
    return Rate.of(row["success"], n), Rate.of(row["target_success"], n), Rate.of(row["source_success"], n)


def _find_edit(rows, predicate):
    return next((row for row in rows if predicate(row)), None)


def _is_direction_top(row) -> bool:
    return row["kind"] == "direction" and math.isclose(_num(row["top"]) or 0, RESTORE_TOP) and not _num(row["tail"])


def _is_first_quarter(row) -> bool:
    return row["kind"] == "layer" and str(row["layers"]) in RESTORE_LAYERS


def _value_edit(rows):
    values = [row for row in rows if row["kind"] == "value"]
    full = [row for row in values if math.isclose(_num(row["top"]) or 0, 1.0)]
    return (full or values or [None])[0]


def finding_3(inputs: ClaimInputs, settings: ClaimSettings, rng: np.random.Generator) -> Finding:
    threshold = settings.restored_pct
    test = (
        f"recovery % of OOD success of the edited sft_end between sft_end (0%) and sft_peak (100%), 95% parametric "
        f"bootstrap interval, against {threshold:g}%; only when sft_peak lies above sft_end beyond both Wilson intervals"
    )
    rows = [
        row
        for row in inputs.restoration or []
        if row["split"] == "ood" and row["source_role"] == "sft_peak" and row["target_role"] == "sft_end"
    ]
    checks = []
    edits = (
        ("F3.direction_top20", "putting back sft_peak's singular vectors of the top 20% of singular values recovers ≥ "
         f"{threshold:g}% of the OOD success", _find_edit(rows, _is_direction_top)),
        ("F3.layers_first25", f"putting back sft_peak's first 25% of the layers recovers ≥ {threshold:g}% of the OOD success",
         _find_edit(rows, _is_first_quarter)),
    )
    for check_id, claim, row in edits:
        if inputs.restoration is None:
            checks.append(Check(check_id, claim, INCONCLUSIVE, "the restoration stage was not run (restore.pairs)", test))
            continue
        if row is None:
            checks.append(Check(check_id, claim, INCONCLUSIVE, "the edit is not in the sft_peak → sft_end grid", test))
            continue
        edited, target, source = _edit_rate(row)
        point, low, high = recovery_interval(edited, target, source, settings.bootstrap_draws, rng)
        evidence = [
            f"sft_end ({row['target']}) {target.text()}, sft_peak ({row['source']}) {source.text()}",
            f"{row['edit']}: {edited.text()}; recovery {point:.0f}% [{low:.0f}, {high:.0f}]",
        ]
        numbers = {
            "edit": row["edit"], "edited": edited.to_dict(), "target": target.to_dict(), "source": source.to_dict(),
            "recovery_pct": None if math.isnan(point) else point, "recovery_ci": [low, high],
        }
        if not source.above(target):
            verdict, reason = INCONCLUSIVE, "sft_peak is not above sft_end beyond the intervals: no measurable gap to recover"
        else:
            verdict = three_way(low, high, threshold)
            reason = {
                SUPPORTED: f"the recovery interval lies at or above {threshold:g}%",
                NOT_SUPPORTED: f"the recovery interval lies below {threshold:g}%",
                INCONCLUSIVE: f"the recovery interval straddles {threshold:g}%",
            }[verdict]
        checks.append(Check(check_id, claim, verdict, reason, test, evidence, numbers))

    claim = "putting back directions (top 20%) recovers more than putting back singular values"
    direction, value = edits[0][2], _value_edit(rows)
    compare_test = "difference of the two recovery % with a paired 95% bootstrap interval (shared source and target draws)"
    if inputs.restoration is None or direction is None or value is None:
        missing = "the restoration stage was not run" if inputs.restoration is None else "the grid lacks a direction top-20% or a value edit"
        checks.append(Check("F3.direction_vs_value", claim, INCONCLUSIVE, missing, compare_test))
    else:
        first, target, source = _edit_rate(direction)
        second = Rate.of(value["success"], int(value["n"]))
        point, low, high = recovery_difference(first, second, target, source, settings.bootstrap_draws, rng)
        evidence = [
            f"{direction['edit']}: {first.text()}; {value['edit']}: {second.text()}",
            f"recovery difference {point:.0f} points [{low:.0f}, {high:.0f}]",
        ]
        numbers = {"direction": direction["edit"], "value": value["edit"], "difference_pct": point, "ci": [low, high]}
        if not source.above(target):
            verdict, reason = INCONCLUSIVE, "sft_peak is not above sft_end beyond the intervals: no measurable gap to recover"
        else:
            verdict = sign_verdict(low, high)
            reason = {
                SUPPORTED: "the direction swap recovers more, beyond the interval",
                NOT_SUPPORTED: "the value swap recovers more, beyond the interval",
                INCONCLUSIVE: "the interval of the difference includes 0",
            }[verdict]
        checks.append(Check("F3.direction_vs_value", claim, verdict, reason, compare_test, evidence, numbers))
    return Finding("F3", FINDINGS["F3"], combine(c.verdict for c in checks), checks)


# --- F4 --------------------------------------------------------------------------------------------


def finding_4(inputs: ClaimInputs, settings: ClaimSettings, rng: np.random.Generator) -> Finding:
    checks = []
    points, _ = ood_curve(inputs.curve)
    starts = rl_starts(inputs.rl, ood_episodes(points), settings.algorithms) if points else {}
    for algorithm, items in starts.items():
        x = [s.before.rate for s in items]
        y = [s.after.rate for s in items]
        result = rank_test(x, y, "greater", settings.seed)
        verdict, reason = rank_verdict(result, "greater")
        checks.append(
            Check(
                f"F4.better_in_better_out.{algorithm}",
                f"{algorithm.upper()}: the better a start checkpoint's OOD success, the better the OOD success after RL",
                verdict,
                reason,
                "Spearman rank correlation of OOD success before and after RL over the start checkpoints (seeds pooled), "
                "one-sided permutation test at α = 0.05, Fisher-z 95% interval",
                [f"step {s.step}: {s.before.text()} → {s.after.text()}" for s in items]
                + [_rank_text(result)],
                result,
            )
        )
        if not points:
            continue
        peak = peak_of(points)
        later = [s for s in items if s.step > peak.step and peak.ood.rate != s.before.rate]
        recoveries = [100 * (s.after.rate - s.before.rate) / (peak.ood.rate - s.before.rate) for s in later]
        result = rank_test([s.step for s in later], recoveries, "less", settings.seed)
        verdict, reason = rank_verdict(result, "less")
        checks.append(
            Check(
                f"F4.overfit_resists.{algorithm}",
                f"{algorithm.upper()}: the longer SFT ran past the OOD peak, the less RL recovers",
                verdict,
                reason,
                f"Spearman rank correlation of start step and recovery % over the starts after the OOD peak (step {peak.step}), "
                "one-sided permutation test at α = 0.05",
                [f"step {s.step}: recovery {r:.0f}%" for s, r in zip(later, recoveries)] + [_rank_text(result)],
                {**result, "steps": [s.step for s in later], "recovery_pct": recoveries},
            )
        )
    if not checks:
        checks.append(Check("F4", "better SFT checkpoints in, better RL out", INCONCLUSIVE, "no RL runs in the table", "-"))
    return Finding("F4", FINDINGS["F4"], combine(c.verdict for c in checks), checks)


def _rank_text(result: Mapping[str, Any]) -> str:
    if result["rho"] is None:
        return f"n = {result['n']}: no rank correlation"
    text = f"n = {result['n']}, Spearman ρ = {result['rho']:.2f}, one-sided p = {result['p']:.3g}"
    if result["ci_low"] is not None:
        text += f", 95% interval [{result['ci_low']:.2f}, {result['ci_high']:.2f}]"
    return text


# --- all findings, written out ---------------------------------------------------------------------


def evaluate_claims(inputs: ClaimInputs, settings: ClaimSettings = ClaimSettings()) -> list[Finding]:
    """One Finding per finding of the study, each with its checks. Deterministic for a fixed seed."""
    if not inputs.curve:
        raise ValueError("the SFT curve is empty: there is nothing to judge the claims on")
    rng = np.random.default_rng(settings.seed)
    return [
        finding_1(inputs, settings, rng),
        finding_2(inputs, settings, rng),
        finding_3(inputs, settings, rng),
        finding_4(inputs, settings, rng),
    ]


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def to_json(findings: Sequence[Finding], settings: ClaimSettings, provenance: Mapping[str, Any] | None = None) -> dict:
    return _clean(
        {
            "findings": [asdict(f) for f in findings],
            "verdicts": {f.id: f.verdict for f in findings},
            "settings": asdict(settings),
            "provenance": dict(provenance or {}),
        }
    )


def to_markdown(findings: Sequence[Finding], title: str = "Claims") -> str:
    lines = [
        f"# {title}",
        "",
        "Each finding of the study is judged by its checks: *supported* only where the 95% intervals (or the test "
        "at α = 0.05) carry it, *not supported* where they carry the opposite, *inconclusive* otherwise.",
        "",
        "| finding | verdict | checks (supported / not supported / inconclusive) |",
        "|---|---|---|",
    ]
    for finding in findings:
        counts = [sum(c.verdict == v for c in finding.checks) for v in VERDICTS]
        lines.append(f"| {finding.id} | **{finding.verdict}** | {' / '.join(map(str, counts))} |")
    for finding in findings:
        lines += ["", f"## {finding.id}: {finding.verdict}", "", f"> {finding.statement}", ""]
        for check in finding.checks:
            lines += [f"### {check.id}: {check.verdict}", "", f"*Claim:* {check.claim}.  ", f"*Why:* {check.reason}.  "]
            lines += [f"*Test:* {check.test}.", ""]
            lines += [f"- {item}" for item in check.evidence]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_claims(
    findings: Sequence[Finding],
    markdown_path: str | Path,
    json_path: str | Path,
    settings: ClaimSettings,
    provenance: Mapping[str, Any] | None = None,
    title: str = "Claims",
) -> None:
    io.write_text(markdown_path, to_markdown(findings, title))
    io.write_json(json_path, to_json(findings, settings, provenance))


def read_csv(path: str | Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def load_inputs(
    curve: str | Path,
    rl: str | Path | None = None,
    history: str | Path | None = None,
    spectra: Mapping[str, str | Path] | None = None,
    restoration: str | Path | None = None,
    roles: str | Path | None = None,
) -> ClaimInputs:
    """The result tables from their files (see `ClaimInputs`); a None path is a stage not run."""
    import pandas as pd

    return ClaimInputs(
        curve=read_csv(curve),
        rl=read_csv(rl) if rl else [],
        history=io.read_jsonl(history) if history else [],
        spectra={label: pd.read_parquet(path) for label, path in (spectra or {}).items()},
        restoration=read_csv(restoration) if restoration else None,
        roles=io.read_json(roles) if roles else None,
    )
