"""A verdict on each finding of the study, from the workflow's result tables and per-episode outcomes.

Every finding is tested by one or more checks. A check is `supported` only when its test at α = 0.05
(Holm-corrected within a family) carries the claim, `not supported` when it carries the opposite, and
`inconclusive` otherwise: when the test finds no difference, when there is nothing measurable to test (no
significant OOD loss to recover, too few RL starts for a rank test to reach significance), or when a stage
that would measure it was not run. A finding is `not supported` when one of its checks is, `supported`
when all are, and `inconclusive` otherwise. Every check states the smallest effect it could have detected
(power 0.8, α = 0.05), so *inconclusive* can be read as "no effect" or as "too few episodes".

Tests (`sftrl.stats`):
- two models on the same OOD episodes (two checkpoints, a start and its RL run, an edit and its target)
  are compared episode by episode: one-sided exact McNemar tests, paired bootstrap intervals;
- a recovery % = (after − target) / (source − target) · 100 gets a paired bootstrap interval over episodes
  and one-sided bootstrap p-values against its threshold;
- without per-episode outcomes (rates from the tables only, e.g. a paper's stage table) the same checks use
  the score test of two proportions, Newcombe intervals and a parametric bootstrap;
- spectral statistics are medians over weight matrices with 95% bootstrap intervals over matrices and
  one-sided Wilcoxon signed-rank tests;
- rank correlations are Spearman's ρ with an exact permutation p-value (random permutations beyond 8
  points) and, from 4 points on, a Fisher-z interval with the Fieller–Hartley–Pearson variance 1.06/(n − 3).

`sft_peak` is chosen on the selection half of the OOD episodes and measured on the report half
(`sftrl.peak`), so the gaps from it are not inflated by the choice; without per-episode outcomes that is
impossible and the checks say so.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from sftrl import io, peak, stats
from sftrl.evaluate.metrics import wilson_interval
from sftrl.names import BASE, OOD, rl_model, sft_model
from sftrl.restoration.spec import EditSpec
from sftrl.stats import ALPHA, Arm, Comparison, Counts, Outcomes, Recovery

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
RESTORE_LAYERS = (0.0, 0.25)  # the paper's layer reset: the first 25% of the layers, as [a, b) fractions
EDGE_PARTS = ("top", "middle", "bottom")  # singular subspaces compared by F2 (spectral.EDGE_FRACTION of the rank)


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
    detectable: str = ""  # the smallest effect the check could have detected at these sizes

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


def _points(value: float | None) -> str:
    return "none at these sizes" if value is None else f"{100 * value:.1f} points"


# --- rates and rank tests --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """k successes in n episodes, with the 95% Wilson interval (for display)."""

    k: int
    n: int

    @classmethod
    def of(cls, rate: float, n: int) -> Rate:
        n = int(n)
        if n <= 0:
            raise ValueError(f"a success rate needs n > 0 episodes, got {n}")
        return cls(round(float(rate) * n), n)

    @property
    def rate(self) -> float:
        return self.k / self.n

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    def to_dict(self) -> dict[str, float]:
        low, high = self.ci
        return {"rate": self.rate, "ci_low": low, "ci_high": high, "k": self.k, "n": self.n}

    def text(self) -> str:
        low, high = self.ci
        return f"{100 * self.rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}] (n = {self.n})"


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


def _rho_text(result: Mapping[str, Any]) -> str:
    rho = result.get("detectable_rho")
    if rho is None:
        return f"no correlation at all: with {result['n']} points the rank test cannot reach p < {ALPHA}"
    return f"|ρ| ≥ {rho:.2f} (n = {result['n']})"


def _bootstrap_median(values: np.ndarray, draws: int, seed: int) -> tuple[float, float, float]:
    """The median over matrices with its 95% bootstrap interval over matrices (scipy)."""
    from scipy import stats as sps

    values = values[~np.isnan(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    if len(values) == 1 or np.ptp(values) == 0:
        return float(values[0]), float(values[0]), float(values[0])
    result = sps.bootstrap(
        (values,), np.median, n_resamples=draws, method="percentile", rng=np.random.default_rng(seed)
    )
    return float(np.median(values)), float(result.confidence_interval.low), float(result.confidence_interval.high)


# --- reading the tables ----------------------------------------------------------------------------


@dataclass
class ClaimInputs:
    """The result tables the claims are read from (rows as read from CSV: strings are fine).

    curve: tables/sft_curve.csv; rl: tables/rl_from_sft.csv; history: sft/history.jsonl (train loss and
    eval losses per step); spectra: model → tidy spectral table of that model against the base (sft_end
    and the RL models started from it); restoration: tables/restoration.csv, or None when the stage was
    not run; roles: tables/roles.json; outcomes: model → per-episode OOD outcomes (samples.jsonl). With
    outcomes, every model a check compares must have them (paired tests); without any, the checks fall
    back to unpaired tests on the tables' rates.
    """

    curve: Sequence[Mapping[str, Any]]
    rl: Sequence[Mapping[str, Any]] = field(default_factory=list)
    history: Sequence[Mapping[str, Any]] = field(default_factory=list)
    spectra: Mapping[str, Any] = field(default_factory=dict)
    restoration: Sequence[Mapping[str, Any]] | None = None
    roles: Mapping[str, Any] | None = None
    outcomes: Mapping[str, Outcomes] = field(default_factory=dict)


@dataclass(frozen=True)
class Point:
    step: int
    ood: Rate

    @property
    def model(self) -> str:
        return BASE if self.step == 0 else sft_model(self.step)


def ood_curve(rows: Iterable[Mapping[str, Any]]) -> tuple[list[Point], Point | None]:
    """(SFT checkpoints in step order, the base model or None) of the OOD split."""
    points, base = [], None
    for row in rows:
        if row["split"] != OOD:
            continue
        point = Point(int(row["step"]), Rate.of(row["success"], row["n"]))
        if point.step == 0:
            base = point
        else:
            points.append(point)
    return sorted(points, key=lambda p: p.step), base


class Evidence:
    """The OOD evidence of each model: per-episode outcomes where samples were given (the whole split,
    or its report half where a gap from the OOD peak is measured), else k of n from the tables."""

    def __init__(self, inputs: ClaimInputs, settings: ClaimSettings):
        self.outcomes = inputs.outcomes
        self.draws, self.seed = settings.bootstrap_draws, settings.seed

    @property
    def paired(self) -> bool:
        return bool(self.outcomes)

    def arm(self, model: str, rate: float, n: int, half: bool = False) -> Arm:
        """The model's evidence; `half`: only the report half of the episodes (needs outcomes)."""
        return self._outcomes(model, half) if self.outcomes else Counts.of(model, rate, n)

    def pooled(self, models: Sequence[str], label: str, rate: float, n: int, half: bool = False) -> Arm:
        """Several RL seeds of one start: the per-episode mean (outcomes) or the pooled counts (tables)."""
        if not self.outcomes:
            return Counts.of(label, rate, n * len(models))
        return stats.pool([self._outcomes(m, half) for m in models], label)

    def selection_rate(self, point: Point) -> float:
        """The rate the peak is chosen on: the selection half with outcomes, else the whole split."""
        if not self.outcomes:
            return point.ood.rate
        return float(peak.halves(self._outcomes(point.model))["selection_rate"])

    def _outcomes(self, model: str, half: bool = False) -> Outcomes:
        if model not in self.outcomes:
            raise ValueError(
                f"no per-episode OOD outcomes (samples.jsonl) for {model}: the claims compare it episode by "
                f"episode with models that have them; give its samples too"
            )
        outcomes = self.outcomes[model]
        return outcomes.subset(peak.report_mask(outcomes.uids)) if half else outcomes

    def compare(self, a: Arm, b: Arm) -> Comparison:
        return stats.compare(a, b, self.draws, self.seed)

    def recovery(self, after: Arm, target: Arm, source: Arm, threshold: float) -> Recovery:
        return stats.recovery(after, target, source, threshold, self.draws, self.seed)

    @property
    def selection_note(self) -> str:
        if self.outcomes:
            return "the peak is chosen on the selection half of the OOD episodes and measured on the report half"
        return (
            "no per-episode outcomes: the peak is chosen and measured on the same episodes, so its rate and "
            "the gaps from it are biased upwards"
        )


def choose_peak(points: Sequence[Point], evidence: Evidence) -> Point:
    """The best checkpoint by the selection rule of `sftrl.peak`."""
    return points[peak.peak_index([evidence.selection_rate(p) for p in points])]


def roles_peak(points: Sequence[Point], roles: Mapping[str, Any] | None, evidence: Evidence) -> Point:
    """sft_peak as roles.json names it (when it is on the curve), else chosen by the same rule here."""
    step = (roles or {}).get("steps", {}).get("sft_peak")
    by_step = {p.step: p for p in points}
    return by_step[step] if step in by_step else choose_peak(points, evidence)


# --- F1 --------------------------------------------------------------------------------------------


def check_peak(points: Sequence[Point], base: Point | None, evidence: Evidence) -> tuple[Check, Point | None]:
    claim = "OOD success peaks before the end of SFT and then declines"
    test = "the best SFT checkpoint before the last one against the last one, one-sided at α = 0.05: " + (
        "exact McNemar test on the report half of the OOD episodes"
        if evidence.paired
        else "score test of two proportions"
    )
    if len(points) < 2:
        return Check("F1.peak", claim, INCONCLUSIVE, f"{len(points)} SFT checkpoint(s): no curve to peak", test), None
    end = points[-1]
    best = choose_peak(points[:-1], evidence)
    best_arm = evidence.arm(best.model, best.ood.rate, best.ood.n, half=True)
    end_arm = evidence.arm(end.model, end.ood.rate, end.ood.n, half=True)
    comparison = evidence.compare(end_arm, best_arm)
    evidence_lines = [
        f"best before the end (chosen on {'the selection half' if evidence.paired else 'all episodes'}): step {best.step}; "
        f"measured: OOD {arm_text(best_arm)}",
        f"end: step {end.step}, OOD {arm_text(end_arm)}",
        f"{comparison.text()}; one-sided p = {comparison.p_greater:.3g}",
        evidence.selection_note,
    ]
    numbers: dict[str, Any] = {"peak_step": best.step, "end_step": end.step, "comparison": comparison.to_dict()}
    if base:
        base_arm = evidence.arm(base.model, base.ood.rate, base.ood.n, half=True)
        early = evidence.compare(base_arm, best_arm)
        evidence_lines.append(
            f"early part against the base: {early.text()}; one-sided p (peak above base) = {early.p_greater:.3g}"
        )
        numbers["base_comparison"] = early.to_dict()
    verdict = p_verdict(comparison.p_greater, comparison.p_less)
    reason = {
        SUPPORTED: f"step {best.step} lies above the end (p = {comparison.p_greater:.3g} < {ALPHA})",
        NOT_SUPPORTED: f"the end lies above every earlier checkpoint's best (p = {comparison.p_less:.3g} < {ALPHA}): OOD still rises",
        INCONCLUSIVE: f"no significant difference between step {best.step} and the end (p = {comparison.p_greater:.3g})",
    }[verdict]
    detectable = f"a drop of {_points(comparison.detectable)} from the peak to the end"
    return Check("F1.peak", claim, verdict, reason, test, evidence_lines, numbers, detectable), best


def _argmin(history: Sequence[Mapping[str, Any]], key: str) -> tuple[int, float] | None:
    values = [(int(row["step"]), float(row[key])) for row in history if num(row.get(key)) is not None]
    if not values:
        return None
    return min(values, key=lambda item: (item[1], item[0]))


LOSSES = (("training", "loss"), ("test (ID unseen)", "eval_id_unseen_loss"), ("OOD", "eval_ood_loss"))


def peak_window(points: Sequence[Point], best: Point, evidence: Evidence) -> tuple[int | None, int | None]:
    """The nearest checkpoints before and after the peak whose OOD lies below it (one-sided test at α,
    report half; None: none on that side); between them OOD cannot be told apart from the peak."""
    best_arm = evidence.arm(best.model, best.ood.rate, best.ood.n, half=True)

    def below(p: Point) -> bool:
        arm = evidence.arm(p.model, p.ood.rate, p.ood.n, half=True)
        return evidence.compare(arm, best_arm).p_greater < ALPHA

    at = [p.step for p in points].index(best.step)
    left = next((p.step for p in reversed(points[:at]) if below(p)), None)
    right = next((p.step for p in points[at + 1 :] if below(p)), None)
    return left, right


def check_loss(
    points: Sequence[Point],
    history: Sequence[Mapping[str, Any]],
    peak_check: Check,
    best: Point | None,
    evidence: Evidence,
) -> Check:
    claim = "the OOD peak is not visible in the training or test loss (the OOD loss the authors logged as test loss)"
    test = (
        "the steps of the minimum training loss, held-out ID loss and OOD loss against the window around the OOD "
        f"peak where OOD success is not significantly below the peak (one-sided tests at α = {ALPHA})"
    )
    found = {label: _argmin(history, key) for label, key in LOSSES}
    evidence_lines = [f"{label} loss: minimum {f[1]:.4g} at step {f[0]}" for label, f in found.items() if f]
    numbers: dict[str, Any] = {
        f"{key}_min_step": f[0] for (label, key), f in zip(LOSSES, found.values(), strict=False) if f
    }
    if found["training"] is None or (found["test (ID unseen)"] is None and found["OOD"] is None):
        return Check(
            "F1.loss", claim, INCONCLUSIVE, "the SFT log holds no training or test loss", test, evidence_lines, numbers
        )
    if peak_check.verdict != SUPPORTED or best is None:
        return Check(
            "F1.loss",
            claim,
            INCONCLUSIVE,
            "the OOD peak itself is not established (F1.peak)",
            test,
            evidence_lines,
            numbers,
            "as F1.peak",
        )
    left, right = peak_window(points, best, evidence)
    numbers.update(peak_step=best.step, window=[left, right])
    evidence_lines.append(
        f"OOD peak at step {best.step}; not significantly below it between steps "
        f"{left if left is not None else 'start'} and {right if right is not None else 'end'} (exclusive)"
    )

    def inside(step: int) -> bool:
        return (left is None or step > left) and (right is None or step < right)

    shown = [label for label, f in found.items() if f and inside(f[0])]
    detectable = "as F1.peak (the window's edges are where OOD falls significantly below the peak)"
    if shown:
        return Check(
            "F1.loss",
            claim,
            NOT_SUPPORTED,
            f"the {' and '.join(shown)} loss minimum lies in the peak window",
            test,
            evidence_lines,
            numbers,
            detectable,
        )
    return Check(
        "F1.loss",
        claim,
        SUPPORTED,
        "no loss has its minimum in the window of the OOD peak",
        test,
        evidence_lines,
        numbers,
        detectable,
    )


@dataclass(frozen=True)
class RlStart:
    """One start checkpoint of one algorithm, seeds pooled: OOD before (the checkpoint) and after RL."""

    algorithm: str
    step: int
    models: tuple[str, ...]
    before: float
    after: float

    @property
    def start_model(self) -> str:
        return sft_model(self.step)


def rl_starts(rows: Iterable[Mapping[str, Any]], algorithms: Sequence[str] | None = None) -> dict[str, list[RlStart]]:
    """OOD before and after RL per algorithm and start step, seeds pooled (mean rate over seeds)."""
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["split"] == OOD and (algorithms is None or row["algorithm"] in algorithms):
            groups[row["algorithm"], int(row["start_step"])].append(row)
    result: dict[str, list[RlStart]] = defaultdict(list)
    for (algorithm, step), group in sorted(groups.items()):
        models = tuple(rl_model(algorithm, step, row["seed"]) for row in group)
        after = float(np.mean([float(row["after"]) for row in group]))
        result[algorithm].append(RlStart(algorithm, step, models, float(group[0]["before"]), after))
    return dict(result)


def ood_episodes(points: Sequence[Point]) -> int:
    sizes = {p.ood.n for p in points}
    if len(sizes) != 1:
        raise ValueError(f"the OOD split has different sizes across checkpoints: {sorted(sizes)}")
    return sizes.pop()


@dataclass
class _StartEvidence:
    start: RlStart
    loss: Comparison  # the peak against the start checkpoint (report half)
    raised: Comparison  # after RL against before (all episodes)
    recovery: Recovery  # report half
    loss_p: float = math.nan  # Holm-adjusted over the starts after the peak

    @property
    def lost(self) -> bool:
        return self.loss_p < ALPHA

    def line(self) -> str:
        s = self.start
        return (
            f"{s.algorithm} from step {s.step} ({len(s.models)} seed(s)): OOD {100 * s.before:.1f}% → {100 * s.after:.1f}% "
            f"(all {self.raised.n} episodes: {self.raised.text()}, one-sided p = {self.raised.p_greater:.3g}); "
            f"loss from the peak {100 * self.loss.diff:.1f} points, Holm p = {self.loss_p:.3g}; report half: {self.recovery.text()}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_step": self.start.step,
            "seeds": len(self.start.models),
            "before": self.start.before,
            "after": self.start.after,
            "loss": self.loss.to_dict(),
            "loss_p_holm": self.loss_p,
            "lost": self.lost,
            "raised": self.raised.to_dict(),
            "recovery": asdict(self.recovery),
        }


def _start_evidence(
    starts: Sequence[RlStart], best: Point, n: int, evidence: Evidence, threshold: float
) -> list[_StartEvidence]:
    peak_arm = evidence.arm(best.model, best.ood.rate, best.ood.n, half=True)
    items = []
    for start in starts:
        before_half = evidence.arm(start.start_model, start.before, n, half=True)
        after_half = evidence.pooled(start.models, f"{start.algorithm} from {start.step}", start.after, n, half=True)
        before = evidence.arm(start.start_model, start.before, n)
        after = evidence.pooled(start.models, f"{start.algorithm} from {start.step}", start.after, n)
        items.append(
            _StartEvidence(
                start,
                evidence.compare(before_half, peak_arm),
                evidence.compare(before, after),
                evidence.recovery(after_half, before_half, peak_arm, threshold),
            )
        )
    for item, p in zip(items, stats.holm([i.loss.p_greater for i in items]), strict=False):
        item.loss_p = p
    return items


def check_rl_recovery(
    algorithm: str, starts: Sequence[RlStart], best: Point, n: int, settings: ClaimSettings, evidence: Evidence
) -> list[Check]:
    """F1 on RL: from a moderate start (after the OOD peak; not the latest of two or more) RL raises the OOD
    success SFT lost, and restores most of it; from the latest start it does not restore most."""
    threshold = settings.most_recovered_pct
    later = [s for s in starts if s.step > best.step]
    items = _start_evidence(later, best, n, evidence, threshold)
    late = items[-1] if len(items) >= 2 else None
    moderate = items[:-1] if len(items) >= 2 else items
    informative = [i for i in moderate if i.lost]
    lines = [i.line() for i in moderate]
    numbers = {"starts": [i.to_dict() for i in moderate], "peak_step": best.step}
    no_start = f"no RL start after the OOD peak (step {best.step})"
    nothing = "no moderate start lost OOD success significantly (Holm over the starts): nothing measurable to recover"
    loss_detectable = "a loss of " + ", ".join(f"{_points(i.loss.detectable)} (step {i.start.step})" for i in moderate)
    name = algorithm.upper()
    checks = []

    def without_evidence(check_id: str, claim: str, test: str) -> Check:
        """Inconclusive: no moderate start lost OOD success, or none of them can be tested."""
        reason, detectable = (nothing, loss_detectable) if moderate else (no_start, "")
        return Check(check_id, claim, INCONCLUSIVE, reason, test, lines, numbers, detectable)

    claim = f"{name} from a moderately trained checkpoint raises the OOD success SFT lost"
    test = (
        f"after RL against its start checkpoint on all OOD episodes, one-sided {'exact McNemar' if evidence.paired else 'score'} "
        f"test, Holm over the moderate starts that lost OOD success to the peak (step {best.step})"
    )
    if not moderate or not informative:
        checks.append(without_evidence(f"F1.rl_raises.{algorithm}", claim, test))
    else:
        verdict, adjusted, _ = family_verdict(
            [i.raised.p_greater for i in informative], [i.raised.p_less for i in informative]
        )
        reason = {
            SUPPORTED: f"RL raises OOD success from step {informative[int(np.argmin(adjusted))].start.step} (Holm p = {min(adjusted):.3g})",
            NOT_SUPPORTED: "RL lowers OOD success from every moderate start that lost it (Holm p < 0.05)",
            INCONCLUSIVE: f"no significant rise (smallest Holm p = {min(adjusted):.3g})",
        }[verdict]
        detectable = "a rise of " + ", ".join(
            f"{_points(i.raised.detectable)} (step {i.start.step})" for i in informative
        )
        checks.append(Check(f"F1.rl_raises.{algorithm}", claim, verdict, reason, test, lines, numbers, detectable))

    claim = f"{name} from a moderately trained checkpoint restores most (≥ {threshold:g}%) of the OOD success SFT lost"
    test = (
        f"recovery % against the SFT peak (step {best.step}) on the report half, {'paired' if evidence.paired else 'parametric'} "
        f"bootstrap, one-sided p against {threshold:g}%, Holm over the moderate starts that lost OOD success"
    )
    if not moderate or not informative:
        checks.append(without_evidence(f"F1.rl_most.{algorithm}", claim, test))
    else:
        verdict, p_for, p_against = family_verdict(
            [i.recovery.p_below for i in informative], [i.recovery.p_above for i in informative]
        )
        reason = {
            SUPPORTED: f"a moderate start's recovery lies above {threshold:g}% (Holm p = {min(p_for):.3g})",
            NOT_SUPPORTED: f"every moderate start's recovery lies below {threshold:g}% (Holm p ≤ {max(p_against):.3g})",
            INCONCLUSIVE: f"no recovery is significantly above or every one below {threshold:g}%",
        }[verdict]
        detectable = "a recovery " + ", ".join(
            f"{'—' if i.recovery.detectable is None else f'{i.recovery.detectable:.0f} points'} from {threshold:g}% (step {i.start.step})"
            for i in informative
        )
        checks.append(Check(f"F1.rl_most.{algorithm}", claim, verdict, reason, test, lines, numbers, detectable))

    claim = f"{name} from the most overfitted start cannot restore most of it"
    test = f"recovery % of the latest start on the report half against {threshold:g}%, one-sided bootstrap p"
    if late is None:
        reason = (
            no_start if not items else "only one start after the OOD peak: no later, more overfitted start to contrast"
        )
        checks.append(Check(f"F1.rl_late.{algorithm}", claim, INCONCLUSIVE, reason, test))
        return checks
    if not late.lost:
        verdict, reason = INCONCLUSIVE, "the latest start did not lose OOD success significantly"
    else:
        verdict = p_verdict(late.recovery.p_above, late.recovery.p_below)
        reason = {
            SUPPORTED: f"its recovery lies below {threshold:g}% (p = {late.recovery.p_above:.3g})",
            NOT_SUPPORTED: f"its recovery lies above {threshold:g}% (p = {late.recovery.p_below:.3g})",
            INCONCLUSIVE: f"its recovery is not significantly below or above {threshold:g}%",
        }[verdict]
    detectable = (
        f"a loss of {_points(late.loss.detectable)}"
        if not late.lost
        else f"a recovery {'—' if late.recovery.detectable is None else f'{late.recovery.detectable:.0f} points'} from {threshold:g}%"
    )
    checks.append(
        Check(
            f"F1.rl_late.{algorithm}",
            claim,
            verdict,
            reason,
            test,
            [late.line()],
            {"start": late.to_dict(), "peak_step": best.step},
            detectable,
        )
    )
    return checks


def finding_1(inputs: ClaimInputs, settings: ClaimSettings, evidence: Evidence) -> Finding:
    points, base = ood_curve(inputs.curve)
    peak_check, best = check_peak(points, base, evidence)
    checks = [peak_check, check_loss(points, inputs.history, peak_check, best, evidence)]
    if points:
        sft_peak = roles_peak(points, inputs.roles, evidence)
        starts = rl_starts(inputs.rl, settings.algorithms)
        for algorithm, items in starts.items():
            checks += check_rl_recovery(algorithm, items, sft_peak, ood_episodes(points), settings, evidence)
        if not starts:
            checks.append(
                Check(
                    "F1.rl",
                    "RL restores OOD success from moderate starts",
                    INCONCLUSIVE,
                    "no RL runs in the table",
                    "-",
                )
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
        raise ValueError(
            f"the spectral table has no k fraction {fraction:g}; it has {available} (spectrum.k_fractions)"
        )
    rows = table.loc[table["metric"] == metric].merge(chosen, on=["name", "index_or_k"])
    return rows.set_index("name")["value"]


def check_spectrum(label: str, table, settings: ClaimSettings) -> list[Check]:
    """F2 on one pair table (A → B): small singular-value drift against large rotation, and where the
    singular subspaces rotate most (the top and bottom against the middle of the spectrum)."""
    draws, seed = settings.bootstrap_draws, settings.seed
    drift = _scalar(table, "drift_median")
    fraction = settings.angle_k_fraction
    proj = (_at_k(table, "proj_dist_left", fraction) + _at_k(table, "proj_dist_right", fraction)) / 2
    angle = (_at_k(table, "angle_left_mean_deg", fraction) + _at_k(table, "angle_right_mean_deg", fraction)) / 2
    names = drift.index.intersection(proj.index)
    ratio = (proj[names] / drift[names].where(drift[names] > 0)).to_numpy(dtype=float)
    d_med, d_low, d_high = _bootstrap_median(drift[names].to_numpy(dtype=float), draws, seed)
    r_med, r_low, r_high = _bootstrap_median(ratio, draws, seed)
    a_med, a_low, a_high = _bootstrap_median(angle[names].to_numpy(dtype=float), draws, seed)
    p_med, p_low, p_high = _bootstrap_median(proj[names].to_numpy(dtype=float), draws, seed)
    evidence = [
        f"{len(names)} weight matrices",
        f"median relative singular-value drift {100 * d_med:.3g}% [{100 * d_low:.3g}, {100 * d_high:.3g}]",
        f"top-{fraction:g} subspaces: mean principal angle {a_med:.3g}° [{a_low:.3g}, {a_high:.3g}], "
        f"projection distance {p_med:.3g} [{p_low:.3g}, {p_high:.3g}]",
        f"rotation / drift (projection distance over median drift, per matrix): {r_med:.3g} [{r_low:.3g}, {r_high:.3g}]",
    ]
    numbers = {
        "matrices": len(names),
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
        verdict, reason = (
            NOT_SUPPORTED,
            f"rotation is less than {settings.rotation_ratio:g}× the drift beyond its interval",
        )
    else:
        verdict, reason = INCONCLUSIVE, "an interval straddles its threshold"
    detectable_drift = stats.detectable_from_interval(d_low, d_high)
    detectable_ratio = stats.detectable_from_interval(r_low, r_high)
    detectable = (
        f"a median drift {'—' if detectable_drift is None else f'{100 * detectable_drift:.2g} percentage points'} from "
        f"{100 * settings.max_sigma_drift:g}%; a rotation/drift ratio {'—' if detectable_ratio is None else f'{detectable_ratio:.2g}'} "
        f"from {settings.rotation_ratio:g} ({len(names)} matrices)"
    )
    checks = [
        Check(
            f"F2.drift_vs_rotation.{label}",
            f"base → {label}: singular values barely move, directions do",
            verdict,
            reason,
            test,
            evidence,
            numbers,
            detectable,
        )
    ]
    checks.append(check_edges(label, table, settings))
    return checks


def check_edges(label: str, table, settings: ClaimSettings) -> Check:
    """Do the top and bottom singular subspaces turn more than the middle one (principal angles)?"""
    from scipy import stats as sps

    claim = f"base → {label}: the rotation is concentrated at the largest and smallest singular values"
    test = (
        "per matrix, the mean principal angle between A's and B's singular subspaces of the top, the middle and the "
        "bottom 10% of singular values (left and right averaged); top − middle and bottom − middle: medians over "
        "matrices with 95% bootstrap intervals, one-sided Wilcoxon signed-rank tests, Holm over the two"
    )
    angles = {}
    for part in EDGE_PARTS:
        left, right = (_scalar(table, f"subspace_angle_{side}_{part}_deg") for side in ("left", "right"))
        if left.empty or right.empty:
            raise ValueError(
                f"the spectral table of {label} has no subspace_angle_*_{part}_deg rows: it was written by an "
                "older version of the spectrum stage; rebuild it (snakemake --forcerun spectrum_pair)"
            )
        angles[part] = (left + right) / 2
    evidence, p_for, p_against, widths = [], [], [], []
    numbers: dict[str, Any] = {}
    for part in ("top", "bottom"):
        diff = (angles[part] - angles["middle"]).dropna().to_numpy(dtype=float)
        med, low, high = _bootstrap_median(diff, settings.bootstrap_draws, settings.seed)
        usable = len(diff) >= 6 and np.any(diff != 0)
        greater = float(sps.wilcoxon(diff, alternative="greater").pvalue) if usable else None
        less = float(sps.wilcoxon(diff, alternative="less").pvalue) if usable else None
        p_for.append(greater)
        p_against.append(less)
        widths.append(stats.detectable_from_interval(low, high))
        evidence.append(
            f"{part} − middle subspace angle: median {med:.3g}° [{low:.3g}, {high:.3g}] over {len(diff)} matrices"
            + (f", one-sided Wilcoxon p = {greater:.3g}" if greater is not None else "")
        )
        numbers[f"{part}_minus_middle_deg"] = {
            "median": med,
            "ci": [low, high],
            "wilcoxon_p_greater": greater,
            "wilcoxon_p_less": less,
        }
    for part in EDGE_PARTS:
        numbers[f"{part}_angle_deg_median"] = float(np.nanmedian(angles[part].to_numpy(dtype=float)))
    evidence.insert(
        0, "median subspace angle: " + ", ".join(f"{p} {numbers[f'{p}_angle_deg_median']:.3g}°" for p in EDGE_PARTS)
    )
    if any(p is None for p in p_for):
        verdict, reason = INCONCLUSIVE, "fewer than 6 matrices with a difference: no signed-rank test"
    else:
        adjusted_for, adjusted_against = stats.holm(cast(list[float], p_for)), stats.holm(cast(list[float], p_against))
        numbers["holm_p_greater"], numbers["holm_p_less"] = adjusted_for, adjusted_against
        if max(adjusted_for) < ALPHA:
            verdict, reason = SUPPORTED, "the top and the bottom subspaces both turn more than the middle one"
        elif min(adjusted_against) < ALPHA:
            verdict, reason = NOT_SUPPORTED, "at one end of the spectrum the subspace turns less than the middle one"
        else:
            verdict, reason = INCONCLUSIVE, "at least one end does not differ significantly from the middle"
    detectable = "a median difference of " + " and ".join(
        f"{'—' if w is None else f'{w:.2g}°'} ({part})" for w, part in zip(widths, ("top", "bottom"), strict=False)
    )
    return Check(f"F2.edges.{label}", claim, verdict, reason, test, evidence, numbers, detectable)


def finding_2(inputs: ClaimInputs, settings: ClaimSettings, evidence: Evidence) -> Finding:
    checks = []
    for label, table in inputs.spectra.items():
        checks += check_spectrum(label, table, settings)
    if not checks:
        checks.append(
            Check(
                "F2",
                "singular values barely move, directions do",
                INCONCLUSIVE,
                "no spectral tables: spectrum.pairs holds neither base_to_sft nor base_to_rl",
                "-",
            )
        )
    return Finding("F2", FINDINGS["F2"], combine(c.verdict for c in checks), checks)


# --- F3 --------------------------------------------------------------------------------------------


def _is_direction_top(row) -> bool:
    return row["kind"] == "direction" and math.isclose(num(row["top"]) or 0, RESTORE_TOP) and not num(row["tail"])


def _is_first_quarter(row) -> bool:
    """A layer reset of the first quarter however the grid wrote it (0.25, "0:0.25", "0.0:0.25")."""
    if row["kind"] != "layer":
        return False
    layers = str(row["layers"])
    try:
        spec = EditSpec("layer", layers=layers if ":" in layers else float(layers))
    except ValueError:  # explicit layer indices, or an EditError
        return False
    return spec.layer_fractions() == RESTORE_LAYERS


def _value_edit(rows):
    values = [row for row in rows if row["kind"] == "value"]
    full = [row for row in values if math.isclose(num(row["top"]) or 0, 1.0)]
    return (full or values or [None])[0]


def _edit_model(row: Mapping[str, Any]) -> str:
    return row.get("model") or f"edits/{row['source_role']}__{row['target_role']}/{row['edit']}"


def _edit_arms(row: Mapping[str, Any], evidence: Evidence, half: bool) -> tuple[Arm, Arm, Arm]:
    """(edited, target, source) of one sft_peak → sft_end edit."""
    n = int(row["n"])
    return (
        evidence.arm(_edit_model(row), float(row["success"]), n, half),
        evidence.arm(row["target"], float(row["target_success"]), n, half),
        evidence.arm(row["source"], float(row["source_success"]), n, half),
    )


def finding_3(inputs: ClaimInputs, settings: ClaimSettings, evidence: Evidence) -> Finding:
    threshold = settings.restored_pct
    test = (
        f"recovery % of OOD success of the edited sft_end between sft_end (0%) and sft_peak (100%) on the report half, "
        f"{'paired' if evidence.paired else 'parametric'} bootstrap, one-sided p against {threshold:g}%, Holm over the "
        "two edits; only when sft_peak lies significantly above sft_end"
    )
    rows = [
        row
        for row in inputs.restoration or []
        if row["split"] == "ood" and row["source_role"] == "sft_peak" and row["target_role"] == "sft_end"
    ]
    edits = (
        (
            "F3.direction_top20",
            "putting back sft_peak's singular vectors of the top 20% of singular values recovers ≥ "
            f"{threshold:g}% of the OOD success",
            next((r for r in rows if _is_direction_top(r)), None),
        ),
        (
            "F3.layers_first25",
            f"putting back sft_peak's first 25% of the layers recovers ≥ {threshold:g}% of the OOD success",
            next((r for r in rows if _is_first_quarter(r)), None),
        ),
    )
    if inputs.restoration is None or not rows:
        reason = (
            "the restoration stage was not run (restore.pairs)"
            if inputs.restoration is None
            else "no sft_peak → sft_end edits"
        )
        checks = [Check(check_id, claim, INCONCLUSIVE, reason, test) for check_id, claim, _ in edits]
        checks.append(
            Check("F3.direction_vs_value", "directions recover more than singular values", INCONCLUSIVE, reason, "-")
        )
        return Finding("F3", FINDINGS["F3"], INCONCLUSIVE, checks)

    _, target, source = _edit_arms(rows[0], evidence, half=True)
    gap = evidence.compare(target, source)
    gap_line = (
        f"sft_end ({rows[0]['target']}) {arm_text(target)}, sft_peak ({rows[0]['source']}) {arm_text(source)} "
        f"on the report half; gap: {gap.text()}, one-sided p = {gap.p_greater:.3g}"
    )
    no_gap = f"sft_peak is not significantly above sft_end (p = {gap.p_greater:.3g}): no measurable gap to recover"
    gap_detectable = f"a gap of {_points(gap.detectable)} between sft_peak and sft_end"

    present = [(cid, claim, row) for cid, claim, row in edits if row is not None]
    recoveries = {
        cid: evidence.recovery(_edit_arms(row, evidence, True)[0], target, source, threshold) for cid, _, row in present
    }
    p_for = dict(zip(recoveries, stats.holm([r.p_below for r in recoveries.values()]), strict=False))
    p_against = dict(zip(recoveries, stats.holm([r.p_above for r in recoveries.values()]), strict=False))
    checks = []
    for check_id, claim, row in edits:
        if row is None:
            checks.append(Check(check_id, claim, INCONCLUSIVE, "the edit is not in the sft_peak → sft_end grid", test))
            continue
        rec = recoveries[check_id]
        arm = _edit_arms(row, evidence, True)[0]
        lines = [
            gap_line,
            f"{row['edit']}: {arm_text(arm)}; {rec.text()} ({rec.method}), Holm p above/below "
            f"{threshold:g}%: {p_for[check_id]:.3g} / {p_against[check_id]:.3g}",
        ]
        numbers = {
            "edit": row["edit"],
            "gap": gap.to_dict(),
            "recovery": asdict(rec),
            "holm_p_above": p_for[check_id],
            "holm_p_below": p_against[check_id],
        }
        if gap.p_greater >= ALPHA:
            checks.append(Check(check_id, claim, INCONCLUSIVE, no_gap, test, lines, numbers, gap_detectable))
            continue
        verdict = p_verdict(p_for[check_id], p_against[check_id])
        reason = {
            SUPPORTED: f"the recovery lies above {threshold:g}%",
            NOT_SUPPORTED: f"the recovery lies below {threshold:g}%",
            INCONCLUSIVE: f"the recovery is not significantly above or below {threshold:g}%",
        }[verdict]
        detectable = (
            f"a recovery {'—' if rec.detectable is None else f'{rec.detectable:.0f} points'} from {threshold:g}%"
        )
        checks.append(Check(check_id, claim, verdict, reason, test, lines, numbers, detectable))

    claim = "putting back directions (top 20%) recovers more than putting back singular values"
    direction, value = edits[0][2], _value_edit(rows)
    compare_test = (
        "the direction edit against the value edit on all OOD episodes, one-sided "
        + ("exact McNemar test" if evidence.paired else "score test")
        + "; recovery difference on the report half"
    )
    if direction is None or value is None:
        checks.append(
            Check(
                "F3.direction_vs_value",
                claim,
                INCONCLUSIVE,
                "the grid lacks a direction top-20% or a value edit",
                compare_test,
            )
        )
    else:
        first, second = _edit_arms(direction, evidence, False)[0], _edit_arms(value, evidence, False)[0]
        comparison = evidence.compare(second, first)
        first_half, second_half = _edit_arms(direction, evidence, True)[0], _edit_arms(value, evidence, True)[0]
        r_first = evidence.recovery(first_half, target, source, 0.0)
        r_second = evidence.recovery(second_half, target, source, 0.0)
        lines = [
            gap_line,
            f"{direction['edit']}: {arm_text(first)}; {value['edit']}: {arm_text(second)}; {comparison.text()}, "
            f"one-sided p = {comparison.p_greater:.3g}",
            f"report half: {direction['edit']} {r_first.text()}, {value['edit']} {r_second.text()}",
        ]
        numbers = {
            "direction": direction["edit"],
            "value": value["edit"],
            "comparison": comparison.to_dict(),
            "recovery_direction": asdict(r_first),
            "recovery_value": asdict(r_second),
        }
        if gap.p_greater >= ALPHA:
            verdict, reason, detectable = INCONCLUSIVE, no_gap, gap_detectable
        else:
            verdict = p_verdict(comparison.p_greater, comparison.p_less)
            reason = {
                SUPPORTED: "the direction swap succeeds more often than the value swap",
                NOT_SUPPORTED: "the value swap succeeds more often than the direction swap",
                INCONCLUSIVE: "no significant difference between the two edits",
            }[verdict]
            detectable = f"a difference of {_points(comparison.detectable)} between the two edits"
        checks.append(Check("F3.direction_vs_value", claim, verdict, reason, compare_test, lines, numbers, detectable))
    return Finding("F3", FINDINGS["F3"], combine(c.verdict for c in checks), checks)


# --- F4 --------------------------------------------------------------------------------------------


def finding_4(inputs: ClaimInputs, settings: ClaimSettings, evidence: Evidence) -> Finding:
    checks = []
    points, _ = ood_curve(inputs.curve)
    starts = rl_starts(inputs.rl, settings.algorithms) if points else {}
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
                "Spearman rank correlation of OOD success before and after RL over the start checkpoints (seeds pooled), "
                "one-sided permutation test at α = 0.05, Fisher-z 95% interval",
                [f"step {s.step}: {100 * s.before:.1f}% → {100 * s.after:.1f}%" for s in items] + [_rank_text(result)],
                result,
                _rho_text(result),
            )
        )
        peak_point = cast(Point, sft_peak)  # there are starts only where there is a curve
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
                "Spearman rank correlation of start step and recovery % over the starts after the OOD peak "
                f"(step {peak_point.step}), one-sided permutation test at α = 0.05",
                [f"step {s.step}: recovery {r:.0f}%" for s, r in zip(later, recoveries, strict=False)]
                + [_rank_text(result)],
                {**result, "steps": [s.step for s in later], "recovery_pct": recoveries},
                _rho_text(result),
            )
        )
    if not checks:
        checks.append(
            Check("F4", "better SFT checkpoints in, better RL out", INCONCLUSIVE, "no RL runs in the table", "-")
        )
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
    evidence = Evidence(inputs, settings)
    return [finding(inputs, settings, evidence) for finding in (finding_1, finding_2, finding_3, finding_4)]


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


def _share(value: Any) -> str:
    number = num(value)
    return "–" if number is None else f"{number:.2f}"


def setting_lines(inputs: ClaimInputs) -> list[str]:
    """What the findings rest on: whether the base plays the multi-turn game (successes after a failed
    attempt), reads the stated rule (first-attempt rule following) and has OOD skill to lose; and the
    rule following of each RL model's first OOD answers against its start's."""
    base = [row for row in inputs.curve if int(row["step"]) == 0]
    if not base:
        return []
    lines = [
        "## The base model",
        "",
        "| split | success | first-attempt success | successes after a failed attempt | first-attempt rule following |",
        "|---|---|---|---|---|",
    ]
    for row in base:
        n = int(row["n"])
        solved = Rate.of(row["success"], n)
        after = num(row.get("success_after_failure"))
        later = "–" if after is None else f"{round(after * solved.k)} of {solved.k} ({100 * after:.0f}%)"
        lines.append(
            f"| {row['split']} | {solved.text()} | {100 * float(row['first_attempt_success']):.1f}% | {later} | "
            f"{_share(row.get('rule_following_first'))} |"
        )
    rl = [row for row in inputs.rl if row["split"] == "ood" and row.get("rule_following_first_after") not in (None, "")]
    if rl:
        lines += [
            "",
            "Rule following of the first OOD answers (stated card values that follow the prompt's rule), before → after RL:",
            "",
            "| start step | algorithm | seed | before | after |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {row['start_step']} | {row['algorithm']} | {row['seed']} | "
            f"{_share(row['rule_following_first_before'])} | {_share(row['rule_following_first_after'])} |"
            for row in rl
        ]
    return [*lines, ""]


def to_markdown(findings: Sequence[Finding], title: str = "Claims", setting: Sequence[str] = ()) -> str:
    lines = [
        f"# {title}",
        "",
        "Each finding of the study is judged by its checks: *supported* only where its test at α = 0.05 (Holm-corrected "
        "within a family of starts or edits) carries it, *not supported* where the test carries the opposite, "
        "*inconclusive* otherwise. *Detectable* is the smallest effect the check would find with power 0.8 at this "
        "experiment's sizes: an inconclusive check whose detectable effect is large had too few episodes to tell.",
        "",
        "| finding | verdict | checks (supported / not supported / inconclusive) |",
        "|---|---|---|",
    ]
    for finding in findings:
        counts = [sum(c.verdict == v for c in finding.checks) for v in VERDICTS]
        lines.append(f"| {finding.id} | **{finding.verdict}** | {' / '.join(map(str, counts))} |")
    lines += ["", *setting]
    for finding in findings:
        lines += ["", f"## {finding.id}: {finding.verdict}", "", f"> {finding.statement}", ""]
        for check in finding.checks:
            lines += [f"### {check.id}: {check.verdict}", "", f"*Claim:* {check.claim}.  ", f"*Why:* {check.reason}.  "]
            lines += [f"*Test:* {check.test}.  "]
            lines += [f"*Detectable:* {check.detectable or 'not applicable'}.", ""]
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
    setting: Sequence[str] = (),
) -> None:
    io.write_text(markdown_path, to_markdown(findings, title, setting))
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
    samples: Mapping[str, str | Path] | None = None,
) -> ClaimInputs:
    """The result tables from their files (see `ClaimInputs`); a None path is a stage not run. `samples`:
    model → its OOD samples.jsonl, for the paired tests."""
    import pandas as pd

    return ClaimInputs(
        curve=read_csv(curve),
        rl=read_csv(rl) if rl else [],
        history=io.read_jsonl(history) if history else [],
        spectra={label: pd.read_parquet(path) for label, path in (spectra or {}).items()},
        restoration=read_csv(restoration) if restoration else None,
        roles=io.read_json(roles) if roles else None,
        outcomes={model: Outcomes.read(path, model) for model, path in (samples or {}).items()},
    )
