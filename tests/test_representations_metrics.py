"""Representation metrics against cases with known answers, and the bootstrap's recovery Δ."""

import numpy as np
import pytest
from scipy.linalg import sqrtm

from sftrl.representations import metrics
from sftrl.representations.metrics import Comparison, Grams


def gaussian(n, d, shift=0.0, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def test_identical_sets_are_at_zero_distance_and_cka_one():
    x = gaussian(200, 16)
    values = Grams.of(x, x, bandwidth=metrics.median_bandwidth(x)).set_metrics()
    assert values["cka"] == pytest.approx(1.0, abs=1e-12)
    assert values["mmd2"] == pytest.approx(0.0, abs=1e-12)
    assert values["frechet"] == pytest.approx(0.0, abs=1e-8)
    assert metrics.cosine_per_prompt(x, x) == pytest.approx(np.ones(200))


def test_cka_is_invariant_to_rotation_and_scale_and_low_for_independent_sets():
    x = gaussian(300, 8)
    rotation, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((8, 8)))
    assert metrics.cka(x, 3.0 * x @ rotation) == pytest.approx(1.0, abs=1e-10)
    assert metrics.cka(x, gaussian(300, 8, seed=2)) < 0.1


def test_mmd2_of_shifted_gaussians_matches_the_closed_form():
    # X ~ N(0, I_d), Y ~ N(δ, I_d), k = exp(-|x-y|²/2σ²):
    # MMD² = 2 (σ²/(σ²+2))^(d/2) (1 - exp(-|δ|²/(2(σ²+2)))).
    d, sigma, delta = 2, 1.5, np.array([1.0, 0.5])
    x, y = gaussian(2000, d, seed=3), gaussian(2000, d, shift=delta, seed=4)
    ratio = sigma**2 / (sigma**2 + 2)
    expected = 2 * ratio ** (d / 2) * (1 - np.exp(-(delta @ delta) / (2 * (sigma**2 + 2))))
    assert metrics.mmd2(x, y, sigma, unbiased=True) == pytest.approx(expected, rel=0.05)
    # the biased estimator the table uses exceeds it by about 2(1 - E k(x, x'))/n
    assert metrics.mmd2(x, y, sigma) == pytest.approx(expected, rel=0.1)
    small_x, small_y = x[:50], y[:50]
    from_grams = Grams.of(small_x, small_y, sigma).set_metrics()["mmd2"]
    assert from_grams == pytest.approx(metrics.mmd2(small_x, small_y, sigma), rel=1e-10)


def test_frechet_of_shifted_gaussians_is_the_squared_shift():
    delta = np.array([2.0, -1.0, 0.5, 0.0])
    x, y = gaussian(4000, 4, seed=5), gaussian(4000, 4, shift=delta, seed=6)
    assert metrics.frechet(x, y) == pytest.approx(delta @ delta, rel=0.03)


def test_frechet_from_grams_equals_the_covariance_formula():
    """The n×n nuclear-norm route of the table gives the textbook ‖μx−μy‖² + tr(Σx + Σy − 2(Σx Σy)^½)."""
    x = gaussian(40, 6, seed=7)
    y = 0.5 * gaussian(40, 6, seed=8) @ np.random.default_rng(9).standard_normal((6, 6)) + 1.0
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    mean_gap = np.sum((x.mean(0) - y.mean(0)) ** 2)
    expected = mean_gap + np.trace(sx + sy - 2 * np.real(sqrtm(sx @ sy)))
    assert Grams.of(x, y, 1.0).set_metrics()["frechet"] == pytest.approx(expected, rel=1e-6)
    assert metrics.frechet(x, y) == pytest.approx(expected, rel=1e-8)


def test_median_bandwidth_is_the_median_pairwise_distance():
    x = np.array([[0.0], [1.0], [3.0]])  # distances 1, 2, 3
    assert metrics.median_bandwidth(x) == 2.0
    with pytest.raises(ValueError, match="two distinct"):
        metrics.median_bandwidth(np.zeros((4, 3)))


def test_a_bootstrap_draw_equals_the_metrics_of_the_resampled_prompts():
    x, y = gaussian(30, 5, seed=10), gaussian(30, 5, shift=0.3, seed=11)
    js, topk = np.linspace(0, 1, 30), np.linspace(1, 0, 30)
    comparison = Comparison.of(x, y, {"js": js, "topk": topk}, bandwidth=2.0)
    idx = np.random.default_rng(0).integers(0, 30, size=30)
    direct = Comparison.of(x[idx], y[idx], {"js": js[idx], "topk": topk[idx]}, bandwidth=2.0).values()
    assert comparison.values(idx) == pytest.approx(direct, rel=1e-6)


@pytest.mark.filterwarnings("ignore:The BCa confidence interval cannot be calculated")
@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_recovery_delta_is_positive_when_the_rl_model_is_closer():
    reference = gaussian(120, 6, seed=12)
    end = reference + 1.0 * gaussian(120, 6, seed=13)
    rl = reference + 0.3 * gaussian(120, 6, seed=14)
    band = metrics.median_bandwidth(reference)
    rng = np.random.default_rng(15)
    next_token = {"js": rng.uniform(0, 0.1, 120), "topk": rng.uniform(0.8, 1, 120)}
    comparisons = {name: Comparison.of(reference, m, next_token, band) for name, m in (("end", end), ("rl", rl))}
    values, deltas = metrics.paired_bootstrap(comparisons, [("end", "rl")], draws=300, seed=0)
    for metric in ("cosine", "cka", "mmd2", "frechet"):
        assert deltas["rl", metric].low > 0, metric
        assert values["end", metric].low <= values["end", metric].value <= values["end", metric].high, metric
    # the same next-token values for both: no difference on any resample
    assert deltas["rl", "js"].value == 0
    # swapped roles: RL farther than sft_end gives an interval below 0
    _, swapped = metrics.paired_bootstrap(comparisons, [("rl", "end")], draws=300, seed=0)
    assert swapped["end", "mmd2"].high < 0 and swapped["end", "frechet"].high < 0


def test_win_rate_counts_prompts_where_rl_is_closer():
    end, rl = np.array([0.5, 0.5, 0.5, 0.5]), np.array([0.1, 0.9, 0.5, 0.2])
    assert metrics.win_rate("js", end, rl) == pytest.approx((2 + 0.5) / 4)  # lower JS is closer
    assert metrics.win_rate("cosine", end, rl) == pytest.approx((1 + 0.5) / 4)
    assert metrics.win_rate("cka", end, rl) is None


def test_samples_of_different_prompts_are_refused():
    with pytest.raises(ValueError, match="different prompts"):
        metrics.check_same_prompts([["a", "b"], ["a", "c"]])
    with pytest.raises(ValueError, match="same shape"):
        Grams.of(np.zeros((3, 2)), np.zeros((4, 2)), 1.0)
