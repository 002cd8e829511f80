"""Statistics of success rates: paired and unpaired comparisons, recovery %, Holm, detectable effects.

Two models evaluated on the same episodes are compared episode by episode (*paired*): the one-sided exact
McNemar test — a binomial test (scipy) on the episodes where the two differ — and a paired bootstrap over
episodes (``scipy.stats.bootstrap``) for the interval of the difference and of derived quantities such as
a recovery %. Rates known only as k of n, or measured on different episodes, are compared *unpaired*: the
score test of two proportions and Newcombe's hybrid-score interval of their difference (statsmodels).
A family of tests of one claim (several RL starts, several edits) is Holm-corrected (statsmodels).

Every comparison also carries its *detectable effect*: the smallest true difference its test would find
with power 0.8 at α = 0.05 and the experiment's sizes, so that "no significant difference" can be read
as "no effect" or as "too few episodes".

A claim about a method that is run with seeds (RL from a start checkpoint) is tested at the method's unit
of replication: its runs form a seed × episode matrix (`SeedRuns`), and `seed_episode_test` takes the
error of a mean over it from both the variation between seeds and the variation between episodes (a
two-way crossed random-effects layout), so a second seed that would contradict the first widens the
interval instead of doubling the episodes. It needs two seeds or more.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sftrl import io

ALPHA = 0.05
POWER = 0.8
MIN_SEEDS = 2  # runs a test over seeds needs (`seed_episode_test`)
RECOMMENDED_SEEDS = 3  # with 2, one seed's spread has a single degree of freedom


class PairingError(ValueError):
    """Two sets of per-episode outcomes that are not the same episodes in the same order."""


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Per-episode success of one model on one split, in the order of the episodes file.

    ``success`` holds 0 or 1 per episode, or the mean over several runs (seeds) of one configuration.
    """

    label: str
    path: str
    uids: tuple[str, ...]
    success: np.ndarray

    def __post_init__(self) -> None:
        if len(self.uids) != len(self.success):
            raise ValueError(f"{self.path}: {len(self.uids)} uids but {len(self.success)} outcomes")
        if not len(self.uids):
            raise ValueError(f"{self.path}: no episodes")

    @classmethod
    def read(cls, path: str | Path, label: str) -> Outcomes:
        """From an evaluation's samples.jsonl (one record per episode, with ``uid`` and ``success``)."""
        records = io.read_jsonl(path)
        try:
            uids = tuple(
                str(r["uid"]) if "sample" not in r or not r["sample"] else f"{r['uid']}#{r['sample']}" for r in records
            )
            success = np.array([float(bool(r["success"])) for r in records])
        except KeyError as err:
            raise ValueError(f"{path}: an episode record lacks {err}") from None
        if len(set(uids)) != len(uids):
            raise ValueError(f"{path}: an episode uid appears twice")
        return cls(label, str(path), uids, success)

    @property
    def n(self) -> int:
        return len(self.success)

    @property
    def k(self) -> float:
        return float(self.success.sum())

    @property
    def rate(self) -> float:
        return float(self.success.mean())

    def subset(self, mask: np.ndarray) -> Outcomes:
        mask = np.asarray(mask, dtype=bool)
        if len(mask) != self.n:
            raise ValueError(f"{self.path}: a mask of {len(mask)} for {self.n} episodes")
        uids = tuple(u for u, m in zip(self.uids, mask, strict=False) if m)
        return Outcomes(self.label, self.path, uids, self.success[mask])


def check_paired(*outcomes: Outcomes) -> None:
    """Raise PairingError, naming both files, unless all hold the same episodes in the same order."""
    first = outcomes[0]
    for other in outcomes[1:]:
        if other.uids == first.uids:
            continue
        if other.n != first.n:
            detail = f"{first.n} episodes against {other.n}"
        else:
            i = next(i for i, (a, b) in enumerate(zip(first.uids, other.uids, strict=False)) if a != b)
            detail = f"episode {i} is {first.uids[i]!r} in one and {other.uids[i]!r} in the other"
        raise PairingError(
            f"the episodes of {first.label} ({first.path}) and {other.label} ({other.path}) do not match "
            f"({detail}): they cannot be compared episode by episode"
        )


def pool(outcomes: Sequence[Outcomes], label: str) -> Outcomes:
    """Several runs of one configuration on the same episodes: the per-episode mean success."""
    check_paired(*outcomes)
    if len(outcomes) == 1:
        return Outcomes(label, outcomes[0].path, outcomes[0].uids, outcomes[0].success)
    paths = ", ".join(o.path for o in outcomes)
    return Outcomes(label, paths, outcomes[0].uids, np.mean([o.success for o in outcomes], axis=0))


@dataclass(frozen=True)
class Counts:
    """k successes in n episodes, where per-episode outcomes are not known."""

    label: str
    k: int
    n: int

    def __post_init__(self) -> None:
        if self.n <= 0 or not 0 <= self.k <= self.n:
            raise ValueError(f"{self.label}: need 0 <= k <= n and n > 0, got k = {self.k}, n = {self.n}")

    @classmethod
    def of(cls, label: str, rate: float, n: int) -> Counts:
        return cls(label, round(float(rate) * int(n)), int(n))

    @property
    def rate(self) -> float:
        return self.k / self.n


Arm = Outcomes | Counts


@dataclass(frozen=True, eq=False)
class SeedRuns:
    """Runs of one configuration with different seeds, each evaluated on the same episodes: a seed ×
    episode matrix of success (per-episode outcomes), or a column of the seeds' rates (counts only)."""

    label: str
    runs: tuple[Arm, ...]

    def __post_init__(self) -> None:
        if not self.runs:
            raise ValueError(f"{self.label}: no runs")
        kinds = {type(run) for run in self.runs}
        if len(kinds) > 1:
            raise ValueError(f"{self.label}: some runs have per-episode outcomes and some only counts")
        if self.paired:
            check_paired(*self.runs)  # type: ignore[arg-type]

    @property
    def paired(self) -> bool:
        """Whether the runs are per-episode outcomes (a seed × episode matrix)."""
        return isinstance(self.runs[0], Outcomes)

    @property
    def seeds(self) -> int:
        return len(self.runs)

    @property
    def n(self) -> int:
        return self.runs[0].n

    @property
    def matrix(self) -> np.ndarray:
        """Seeds × episodes (per-episode outcomes), or seeds × 1 (the seeds' rates)."""
        return np.stack([arm_values(run) for run in self.runs])

    @property
    def rates(self) -> list[float]:
        """Each seed's success rate."""
        return [run.rate for run in self.runs]

    @property
    def rate(self) -> float:
        return float(np.mean(self.rates))

    def pooled(self) -> Arm:
        """The runs as one arm: the per-episode mean over seeds, or the summed counts."""
        if self.paired:
            return pool(self.runs, self.label)  # type: ignore[arg-type]
        return Counts(self.label, sum(run.k for run in self.runs), sum(run.n for run in self.runs))  # type: ignore[misc]


def arm_values(arm: Arm) -> np.ndarray:
    """An arm as the row of a seed × episode matrix: its per-episode outcomes, or its rate as one column."""
    return arm.success if isinstance(arm, Outcomes) else np.array([arm.rate])


@dataclass(frozen=True)
class SeedEpisodeTest:
    """The mean of a seed × episode matrix with its standard error over seeds and episodes, a 95% interval
    and one-sided p-values for mean > 0 and mean < 0."""

    mean: float
    se: float
    ci_low: float
    ci_high: float
    p_greater: float
    p_less: float
    seeds: int
    episodes: int


def seed_episode_test(values: np.ndarray) -> SeedEpisodeTest:
    """Whether the mean of a seed × episode matrix (say, after RL minus before, per seed and episode) lies
    above or below 0, with its error from both the seeds and the episodes.

    A two-way crossed random-effects layout without replication: with the mean squares of seeds (S − 1 df),
    episodes (E − 1 df) and the residual, the variance of the grand mean is (MS_seed + MS_episode −
    MS_residual) / (S·E). The residual term is left out, so the variance taken is an upper bound, and the
    critical values are Cochran and Cox's: the mean of the t quantiles at S − 1 and E − 1 df weighted by
    the two terms. Welch–Satterthwaite degrees of freedom ran to α = 0.06 with 3 seeds in simulated nulls
    with strong seed variance, where this held α (tests/test_stats.py). The mean squares are those of
    statsmodels' `anova_lm` (checked in the tests). With one column (the seeds' rates, no per-episode
    outcomes) it is the one-sample t test over seeds, which takes the episodes as fixed."""
    seeds, episodes = np.shape(values)
    mean, se, terms = _crossed_error(values)
    if se == 0:  # every seed and episode alike: the sign of the mean is certain
        return SeedEpisodeTest(mean, 0.0, mean, mean, float(mean <= 0), float(mean >= 0), seeds, episodes)
    half = _cochran_cox_quantile(0.025, terms) * se
    return SeedEpisodeTest(
        mean,
        se,
        mean - half,
        mean + half,
        _cochran_cox_p(mean / se, terms),
        _cochran_cox_p(-mean / se, terms),
        seeds,
        episodes,
    )


def _crossed_error(values: np.ndarray) -> tuple[float, float, list[tuple[float, int]]]:
    """The mean of a seed × episode matrix, its standard error (see `seed_episode_test`) and the
    (mean square, df) terms the error is made of."""
    values = np.asarray(values, dtype=float)
    seeds, episodes = values.shape
    if seeds < MIN_SEEDS:
        raise ValueError(f"a test over seeds needs at least {MIN_SEEDS} seeds, got {seeds}")
    ms_seed, ms_episode, _ = crossed_mean_squares(values)
    se = math.sqrt(max(ms_seed + ms_episode, 0.0) / (seeds * episodes))
    terms = [(ms_seed, seeds - 1)] + ([(ms_episode, episodes - 1)] if episodes > 1 else [])
    return float(values.mean()), se, terms


def _mean_excluded(values: np.ndarray) -> bool:
    """Whether `seed_episode_test` rejects a mean of 0, two-sided at α (without its p-values)."""
    mean, se, terms = _crossed_error(values)
    if se == 0:
        return mean != 0
    return abs(mean) > _cochran_cox_quantile(ALPHA / 2, terms) * se


def _cochran_cox_quantile(p: float, terms: Sequence[tuple[float, int]]) -> float:
    """The upper-p critical value: the t quantiles of each term's df, weighted by its mean square."""
    from scipy import stats

    total = sum(weight for weight, _ in terms)
    return sum(weight * float(stats.t.isf(p, df)) for weight, df in terms) / total


def _cochran_cox_p(t: float, terms: Sequence[tuple[float, int]]) -> float:
    """The one-sided p-value of t (upper tail) under Cochran and Cox's critical values: the p at which
    the critical value equals t."""
    from scipy import optimize

    def gap(log_p: float) -> float:
        return _cochran_cox_quantile(math.exp(log_p), terms) - t

    low, high = math.log(1e-300), math.log(1 - 1e-12)
    if gap(low) <= 0:
        return 1e-300
    if gap(high) >= 0:
        return 1.0
    return math.exp(optimize.brentq(gap, low, high, xtol=1e-10))


def crossed_mean_squares(values: np.ndarray) -> tuple[float, float, float]:
    """Mean squares of seeds, episodes and the residual of a seed × episode matrix (balanced two-way
    layout, one value a cell)."""
    seeds, episodes = values.shape
    grand = values.mean()
    by_seed = values.mean(axis=1) - grand
    by_episode = values.mean(axis=0) - grand
    residual = values - grand - by_seed[:, None] - by_episode[None, :]
    if episodes == 1:  # one column: only the seeds vary
        return float((by_seed**2).sum() / (seeds - 1)), 0.0, 0.0
    return (
        float(episodes * (by_seed**2).sum() / (seeds - 1)),
        float(seeds * (by_episode**2).sum() / (episodes - 1)),
        float((residual**2).sum() / ((seeds - 1) * (episodes - 1))),
    )


# --- comparisons -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Model b against model a: the difference of success rates b − a with its 95% interval, one-sided
    p-values for b > a and b < a, the test, and the smallest difference b − a the test detects with power
    0.8 at α = 0.05 (None where it cannot detect any)."""

    a: str
    b: str
    rate_a: float
    rate_b: float
    n: int
    diff: float
    ci_low: float
    ci_high: float
    p_greater: float
    p_less: float
    test: str
    detectable: float | None
    paired: bool
    discordant: tuple[int, int] | None = None  # paired: episodes where b is better, where a is better
    seed_rates: tuple[float, ...] | None = None  # b's success per seed, where b is several runs

    def effect_text(self) -> str:
        return f"{100 * self.diff:+.1f} points [{100 * self.ci_low:+.1f}, {100 * self.ci_high:+.1f}]"

    def text(self) -> str:
        pct = self.effect_text()
        extra = f", {self.discordant[0]} vs {self.discordant[1]} discordant episodes" if self.discordant else ""
        over = f"{self.n} episodes" + (f" × {len(self.seed_rates)} seeds" if self.seed_rates else "")
        return f"{self.b} − {self.a}: {pct} over {over}{extra}; {self.test}"

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def compare(a: Arm, b: Arm, draws: int, seed: int) -> Comparison:
    """b against a: paired when both are per-episode outcomes (same episodes required), else unpaired."""
    if isinstance(a, Outcomes) and isinstance(b, Outcomes):
        return compare_paired(a, b, draws, seed)
    return compare_unpaired(a, b)


def compare_paired(a: Outcomes, b: Outcomes, draws: int, seed: int) -> Comparison:
    from scipy import stats

    check_paired(a, b)
    d = b.success - a.success
    up, down = int((d > 0).sum()), int((d < 0).sum())
    m = up + down
    p_greater = float(stats.binomtest(up, m, 0.5, alternative="greater").pvalue) if m else 1.0
    p_less = float(stats.binomtest(down, m, 0.5, alternative="greater").pvalue) if m else 1.0
    low, high = _bootstrap_ci((d,), np.mean, draws, seed)
    return Comparison(
        a.label,
        b.label,
        a.rate,
        b.rate,
        a.n,
        float(d.mean()),
        low,
        high,
        p_greater,
        p_less,
        "exact McNemar test (binomial test on the discordant episodes), paired bootstrap interval",
        detectable_paired(m, a.n),
        True,
        (up, down),
    )


def compare_runs(a: Arm, b: SeedRuns) -> Comparison:
    """Several runs b (seeds) against one model a: the mean difference over seeds and episodes, tested with
    its error from both (`seed_episode_test`; per-episode outcomes on the same episodes), or over the
    seeds' rates alone (counts)."""
    if b.paired != isinstance(a, Outcomes):
        raise ValueError(f"{a.label} and {b.label}: per-episode outcomes for both or for neither")
    if b.paired:
        check_paired(a, *b.runs)  # type: ignore[arg-type]
    test = seed_episode_test(b.matrix - arm_values(a)[None, :])
    test_name = (
        f"t test over {b.seeds} seeds and {a.n} episodes (seed and episode variance, Cochran–Cox)"
        if b.paired
        else f"t test over the {b.seeds} seeds' rates ({b.seeds - 1} df)"
    )
    return Comparison(
        a.label,
        b.label,
        a.rate,
        b.rate,
        a.n,
        test.mean,
        test.ci_low,
        test.ci_high,
        test.p_greater,
        test.p_less,
        test_name,
        detectable_from_interval(test.ci_low, test.ci_high),
        b.paired,
        seed_rates=tuple(b.rates),
    )


def compare_unpaired(a: Arm, b: Arm) -> Comparison:
    from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

    ka, na, kb, nb = round(a.k), a.n, round(b.k), b.n
    p_greater = float(test_proportions_2indep(kb, nb, ka, na, method="score", alternative="larger").pvalue)
    p_less = float(test_proportions_2indep(kb, nb, ka, na, method="score", alternative="smaller").pvalue)
    low, high = confint_proportions_2indep(kb, nb, ka, na, method="newcomb")
    return Comparison(
        a.label,
        b.label,
        ka / na,
        kb / nb,
        min(na, nb),
        kb / nb - ka / na,
        float(low),
        float(high),
        p_greater,
        p_less,
        "score test of two independent proportions, Newcombe interval",
        detectable_unpaired(ka / na, na, nb),
        False,
    )


# --- recovery % ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    """(after − target) / (source − target) in %, with its 95% interval and one-sided bootstrap p-values
    against a threshold: p_below for "recovery ≤ threshold" (small: it lies above), p_above for
    "recovery ≥ threshold" (small: it lies below). NaN where source and target score the same."""

    pct: float
    ci_low: float
    ci_high: float
    p_below: float
    p_above: float
    threshold: float
    method: str

    @property
    def detectable(self) -> float | None:
        return detectable_from_interval(self.ci_low, self.ci_high)

    def text(self) -> str:
        if math.isnan(self.pct):
            return "recovery undefined (no gap)"
        if math.isnan(self.ci_low) and math.isnan(self.ci_high):
            return f"recovery {self.pct:.0f}% (no interval)"
        low = "−∞" if math.isnan(self.ci_low) else f"{self.ci_low:.0f}"
        high = "+∞" if math.isnan(self.ci_high) else f"{self.ci_high:.0f}"
        return f"recovery {self.pct:.0f}% [{low}, {high}]"


def recovery_pct(after: float, target: float, source: float) -> float | None:
    """The paper's recovery: (after − target) / (source − target) in %; None where source = target."""
    if source == target:
        return None
    return 100 * (after - target) / (source - target)


def recovery(after: Arm, target: Arm, source: Arm, threshold: float, draws: int, seed: int) -> Recovery:
    """Recovery % of `after` between `target` (0%) and `source` (100%): a paired bootstrap over episodes
    when all three are per-episode outcomes of the same episodes, else a parametric bootstrap that redraws
    each rate as Binomial(n, rate) / n independently.

    The interval is the percentile interval of the redrawn ratio. The p-values against the threshold θ
    come from the linear contrast (after − target) − θ·(source − target), which is ≥ 0 exactly when the
    recovery is ≥ θ while source lies above target: unlike the ratio it stays well behaved in redraws
    where the gap nearly vanishes (Fieller's argument)."""
    point = recovery_pct(after.rate, target.rate, source.rate)
    point = math.nan if point is None else point
    theta = threshold / 100
    if isinstance(after, Outcomes) and isinstance(target, Outcomes) and isinstance(source, Outcomes):
        check_paired(after, target, source)

        def ratio_and_contrast(a, t, s, axis=-1):
            a, t, s = (np.mean(x, axis=axis) for x in (a, t, s))
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.stack([np.where(s != t, 100 * (a - t) / (s - t), np.nan), a - t - theta * (s - t)])

        values, contrasts = _bootstrap_distribution(
            (after.success, target.success, source.success), ratio_and_contrast, draws, seed
        )
        method = "paired bootstrap over episodes"
    else:
        rng = np.random.default_rng(seed)
        a, t, s = (rng.binomial(arm.n, arm.rate, draws) / arm.n for arm in (after, target, source))
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(s != t, 100 * (a - t) / (s - t), np.nan)
        contrasts = a - t - theta * (s - t)
        method = "parametric bootstrap (independent binomials)"
    valid = values[np.isfinite(values)]
    if len(valid) < draws / 2:  # most redraws had no gap to measure against
        return Recovery(point, math.nan, math.nan, math.nan, math.nan, threshold, method)
    low, high = np.percentile(valid, [2.5, 97.5])
    p_below = (np.sum(contrasts <= 0) + 1) / (len(contrasts) + 1)
    p_above = (np.sum(contrasts >= 0) + 1) / (len(contrasts) + 1)
    return Recovery(point, float(low), float(high), float(p_below), float(p_above), threshold, method)


def recovery_runs(after: SeedRuns, target: Arm, source: Arm, threshold: float) -> Recovery:
    """Recovery % of several runs (seeds) between `target` (0%) and `source` (100%), with its error from
    seeds and episodes (`seed_episode_test`; over the seeds' rates alone with counts): the p-values test
    the contrast (after − target) − θ·(source − target) at the threshold, and the 95% interval holds every
    θ whose contrast is not rejected (Fieller's interval; a NaN bound where it is unbounded on that side,
    as when the gap itself is not significant)."""
    if after.paired:
        check_paired(target, source, *after.runs)  # type: ignore[arg-type]
    gain = after.matrix - arm_values(target)[None, :]
    gap = np.broadcast_to(arm_values(source) - arm_values(target), gain.shape)
    point = recovery_pct(float(gain.mean()), 0.0, float(gap.mean()))
    point = math.nan if point is None else point
    over = f"{after.seeds} seeds and {target.n} episodes" if after.paired else f"the {after.seeds} seeds' rates"
    method = f"t test of the contrast over {over}, Fieller interval"

    def outside(theta_pct: float) -> bool:  # the contrast at θ is rejected two-sided at 0.05
        return _mean_excluded(gain - theta_pct / 100 * gap)

    bounds = [math.nan, math.nan]
    if math.isfinite(point) and not outside(point):
        for side, direction in ((0, -1), (1, 1)):
            far = point + direction * 10_000
            if not outside(far):
                continue  # unbounded on this side
            near = point
            for _ in range(50):
                middle = (near + far) / 2
                near, far = (near, middle) if outside(middle) else (middle, far)
            bounds[side] = (near + far) / 2
    at_threshold = seed_episode_test(gain - threshold / 100 * gap)
    return Recovery(point, bounds[0], bounds[1], at_threshold.p_greater, at_threshold.p_less, threshold, method)


def _bootstrap_distribution(samples, statistic, draws: int, seed: int) -> np.ndarray:
    """The paired bootstrap distribution of a vectorised statistic (resampling episodes); the intervals
    are taken from it here, so scipy's own interval (NaN where some draws had no gap) is not needed."""
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            samples,
            statistic,
            n_resamples=draws,
            paired=True,
            vectorized=True,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    return np.asarray(result.bootstrap_distribution, dtype=float)


def _bootstrap_ci(samples, statistic, draws: int, seed: int) -> tuple[float, float]:
    values = _bootstrap_distribution(samples, statistic, draws, seed)
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


# --- families and detectable effects ---------------------------------------------------------------


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (family-wise error control over the family given)."""
    if not len(pvalues):
        return []
    from statsmodels.stats.multitest import multipletests

    clean = [1.0 if p is None or math.isnan(p) else p for p in pvalues]
    return [float(p) for p in multipletests(clean, alpha=ALPHA, method="holm")[1]]


def detectable_paired(discordant: int, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest difference of paired success rates the one-sided exact McNemar test detects with the
    given power, at the observed number of discordant episodes (None when it cannot reach α at all)."""
    from scipy import optimize, stats

    if discordant <= 0 or n <= 0:
        return None
    ks = np.arange(discordant + 1)
    reachable = ks[stats.binom.sf(ks - 1, discordant, 0.5) <= alpha]
    if not len(reachable):
        return None
    critical = int(reachable[0])

    def shortfall(pi: float) -> float:
        return float(stats.binom.sf(critical - 1, discordant, pi)) - power

    if shortfall(1.0) < 0:
        return None
    pi = optimize.brentq(shortfall, 0.5, 1.0)
    return discordant / n * (2 * pi - 1)


def detectable_unpaired(rate: float, n_a: int, n_b: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest rise above `rate` that a one-sided two-proportion test of n_a and n_b episodes
    detects with the given power (Cohen's h through statsmodels' power solver, turned back into rates)."""
    from statsmodels.stats.power import NormalIndPower

    h = NormalIndPower().solve_power(nobs1=n_a, ratio=n_b / n_a, alpha=alpha, power=power, alternative="larger")
    angle = min(math.pi / 2, math.asin(math.sqrt(min(max(rate, 0.0), 1.0))) + float(h) / 2)
    return math.sin(angle) ** 2 - rate


def detectable_from_interval(low: float, high: float, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest effect an estimate with this 95% interval detects (one-sided, given power), from the
    standard error the interval implies under a normal approximation."""
    from scipy import stats

    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return None
    se = (high - low) / (2 * stats.norm.ppf(0.975))
    return float((stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)) * se)


def detectable_rho(n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest Spearman ρ a one-sided test of n points detects with the given power (Fisher z with
    the Fieller–Hartley–Pearson variance 1.06 / (n − 3)); None when the exact permutation test of n points
    cannot reach α at all (n! ≤ 1 / α) or n ≤ 3."""
    from scipy import stats

    if n <= 3 or math.factorial(n) * alpha < 1:
        return None
    z = (stats.norm.ppf(1 - alpha) + stats.norm.ppf(power)) * math.sqrt(1.06 / (n - 3))
    return math.tanh(z)
