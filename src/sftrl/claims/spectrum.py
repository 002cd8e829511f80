"""F2: singular values barely move during SFT or RL while the singular vectors turn, most at the largest
and smallest singular values; from the spectral pair tables of the base against each model."""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from sftrl import stats
from sftrl.claims.evidence import Evidence
from sftrl.claims.inputs import ClaimInputs
from sftrl.claims.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Check, ClaimSettings, Finding, combine
from sftrl.stats import ALPHA

STATEMENT = (
    "Singular values of the weight matrices barely move during SFT or RL (relative drift about 0.3-0.7%); "
    "what moves are the singular vectors' directions, concentrated at the largest and smallest singular values."
)
# the singular subspaces compared (each spectral.metrics.EDGE_FRACTION of the rank at the ends)
EDGE_PARTS = ("top", "middle", "bottom")


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
            f"median drift {100 * d_med:.2g}% [{100 * d_low:.2g}, {100 * d_high:.2g}], rotation/drift {r_med:.3g} "
            f"[{r_low:.3g}, {r_high:.3g}]",
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
    evidence, p_for, p_against, widths, effects = [], [], [], [], []
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
        effects.append(f"{part} − middle {med:.2g}° [{low:.2g}, {high:.2g}]")
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
    p = None
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
        # both ends must turn more (the larger adjusted p); one end turning less suffices against (the smaller)
        p = min(adjusted_against) if verdict == NOT_SUPPORTED else max(adjusted_for)
    detectable = "a median difference of " + " and ".join(
        f"{'—' if w is None else f'{w:.2g}°'} ({part})" for w, part in zip(widths, ("top", "bottom"), strict=False)
    )
    return Check(
        f"F2.edges.{label}", claim, verdict, reason, test, evidence, numbers, detectable, ", ".join(effects), p
    )


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
    return Finding("F2", STATEMENT, combine(c.verdict for c in checks), checks)
