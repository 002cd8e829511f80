"""Paired and unpaired comparisons, recovery %, Holm and detectable effects against known answers."""

import json
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower

from sftrl import peak, stats
from sftrl.stats import Counts, Outcomes, PairingError


def outcomes(label, success, uids=None):
    success = np.asarray(success, dtype=float)
    return Outcomes(label, f"{label}.jsonl", tuple(uids or (f"u{i}" for i in range(len(success)))), success)


def test_outcomes_are_read_from_samples_in_file_order(tmp_path):
    path = tmp_path / "samples.jsonl"
    records = [
        {"uid": "ood-1", "sample": 0, "success": True},
        {"uid": "ood-0", "sample": 0, "success": False},
        {"uid": "ood-0", "sample": 1, "success": True},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    read = Outcomes.read(path, "m")
    assert read.uids == ("ood-1", "ood-0", "ood-0#1") and read.success.tolist() == [1.0, 0.0, 1.0]
    path.write_text(json.dumps({"uid": "a"}) + "\n")
    with pytest.raises(ValueError, match="lacks 'success'"):
        Outcomes.read(path, "m")


def test_paired_comparison_is_the_exact_mcnemar_test():
    a = outcomes("a", [1] * 10 + [0] * 90)
    b = outcomes("b", [1] * 10 + [1] * 9 + [0] * 81)  # 9 episodes better, none worse
    result = stats.compare_paired(a, b, 2000, 0)
    assert result.discordant == (9, 0) and result.diff == pytest.approx(0.09)
    assert result.p_greater == pytest.approx(0.5**9) and result.p_less == 1.0
    assert result.ci_low > 0 and result.ci_high <= 0.15
    # the one-sided exact test reaches α with 5 discordant episodes, all one way (1/32 < 0.05)
    assert stats.detectable_paired(4, 100) is None and stats.detectable_paired(5, 100) == pytest.approx(
        0.05 * (2 * 0.8 ** (1 / 5) - 1)
    )


def test_detectable_effects_have_the_stated_power():
    for discordant in (12, 40, 150):
        delta = stats.detectable_paired(discordant, 300)
        pi = (1 + delta * 300 / discordant) / 2
        ks = np.arange(discordant + 1)
        critical = ks[sps.binom.sf(ks - 1, discordant, 0.5) <= 0.05][0]
        assert sps.binom.sf(critical - 1, discordant, pi) == pytest.approx(0.8, abs=1e-6)
    rise = stats.detectable_unpaired(0.09, 234, 234)
    h = 2 * math.asin(math.sqrt(0.09 + rise)) - 2 * math.asin(math.sqrt(0.09))
    assert NormalIndPower().power(h, 234, 0.05, ratio=1, alternative="larger") == pytest.approx(0.8, abs=1e-6)
    assert stats.detectable_rho(3) is None and stats.detectable_rho(4) > 0.95 and 0.7 < stats.detectable_rho(10) < 0.8
    assert stats.detectable_from_interval(-1.96, 1.96) == pytest.approx(1.645 + 0.8416, abs=1e-3)


def test_unpaired_comparison_matches_statsmodels_on_the_papers_llama_numbers():
    result = stats.compare(Counts("end", 21, 234), Counts("peak", 41, 234), 100, 0)
    assert not result.paired and result.p_greater == pytest.approx(0.00322, abs=2e-4)
    assert result.ci_low > 0 and result.diff == pytest.approx(20 / 234)


def test_pairing_needs_the_same_episodes_in_the_same_order():
    a, b = outcomes("a", [1, 0, 1]), outcomes("b", [1, 0, 1], ["u0", "u2", "u1"])
    with pytest.raises(PairingError, match=r"a \(a.jsonl\) and b \(b.jsonl\) do not match \(episode 1 is 'u1'"):
        stats.compare(a, b, 100, 0)
    pooled = stats.pool([outcomes("s0", [1, 0, 1]), outcomes("s1", [1, 1, 0])], "both")
    assert pooled.success.tolist() == [1.0, 0.5, 0.5] and pooled.path == "s0.jsonl, s1.jsonl"


def test_recovery_paired_and_parametric():
    rng = np.random.default_rng(0)
    difficulty = rng.random(1000)
    source, target, after = (outcomes(n, difficulty < r) for n, r in (("s", 0.4), ("t", 0.2), ("a", 0.38)))
    paired = stats.recovery(after, target, source, 50.0, 2000, 0)
    assert paired.pct == pytest.approx(100 * (after.rate - target.rate) / (source.rate - target.rate))
    assert paired.method == "paired bootstrap over episodes" and paired.p_below < 0.01 and paired.p_above > 0.5
    unpaired = stats.recovery(*(Counts(o.label, int(o.k), o.n) for o in (after, target, source)), 50.0, 2000, 0)
    assert unpaired.pct == pytest.approx(paired.pct)
    assert unpaired.ci_high - unpaired.ci_low > 2 * (paired.ci_high - paired.ci_low)  # pairing removes shared noise
    assert math.isnan(stats.recovery(after, target, target, 50.0, 500, 0).ci_low)  # no gap to measure


def test_holm_matches_its_definition():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([]) == []


def test_selection_and_report_halves_split_items_not_sampled_copies():
    uids = ["a", "b", "c", "d", "e"]
    assert peak.selection_mask(uids).tolist() == [True, False, True, False, True]
    sampled = ["a", "a#1", "b", "b#1", "c", "c#1"]
    assert peak.selection_mask(sampled).tolist() == [True, True, False, False, True, True]
    assert peak.peak_index([0.1, 0.3, 0.3, 0.2]) == 1
    split = peak.halves(outcomes("m", [1, 0, 1, 1], uids[:4]))
    assert split == {"selection_rate": 1.0, "selection_n": 2, "report_rate": 0.5, "report_n": 2, "all_rate": 0.75}


# --- runs with seeds ---------------------------------------------------------------------------------


def seed_null(rng, seeds, episodes, spread):
    """RL that moves OOD by a seed's own relative shift (normal, sd `spread`, symmetric about 0): no effect
    on average over seeds. Episodes differ in difficulty; before and after play them independently."""
    p = 0.5 * rng.beta(1.0, 3.5, episodes)
    before = (rng.random(episodes) < p).astype(float)
    shift = np.clip(rng.normal(0.0, spread, seeds), -0.9, 0.9)
    after = (rng.random((seeds, episodes)) < p[None, :] * (1 + shift[:, None])).astype(float)
    return before, after


def test_the_seed_episode_test_holds_alpha_where_the_per_run_and_pooled_mcnemar_tests_do_not():
    """A null with real seed variance (a seed's relative shift of sd 0.5, as large as the default's PPO
    seeds): RL raises OOD on average over seeds no more than it lowers it. The test over seeds and episodes
    rejects at most 5% of the time; the exact McNemar test of one run against its start rejects its
    run's own shift, and McNemar on the seeds pooled per episode counts each episode once per seed."""
    rng = np.random.default_rng(26)
    trials = 600
    rejected = {"seeds × episodes": 0, "one run, McNemar": 0, "seeds pooled, McNemar": 0}
    for _ in range(trials):
        before, after = seed_null(rng, 3, 300, 0.5)
        start = outcomes("start", before)
        runs = stats.SeedRuns("rl", tuple(outcomes(f"rl-s{s}", row) for s, row in enumerate(after)))
        rejected["seeds × episodes"] += stats.compare_runs(start, runs).p_greater < 0.05
        rejected["one run, McNemar"] += stats.compare_paired(start, runs.runs[0], 100, 0).p_greater < 0.05
        rejected["seeds pooled, McNemar"] += stats.compare_paired(start, runs.pooled(), 100, 0).p_greater < 0.05
    rates = {name: count / trials for name, count in rejected.items()}
    assert rates["seeds × episodes"] <= 0.05, rates
    assert rates["one run, McNemar"] > 0.1, rates
    assert rates["seeds pooled, McNemar"] > 0.5, rates


def test_the_seed_episode_test_finds_a_real_rise_and_lists_each_seed():
    rng = np.random.default_rng(1)
    p = 0.5 * rng.beta(1.0, 3.5, 300)
    start = outcomes("start", rng.random(300) < p)
    runs = stats.SeedRuns("rl", tuple(outcomes(f"s{s}", rng.random(300) < 1.8 * p) for s in range(3)))
    result = stats.compare_runs(start, runs)
    assert result.p_greater < 0.01 and result.ci_low > 0 and result.seed_rates == tuple(runs.rates)
    assert result.diff == pytest.approx(runs.rate - start.rate)
    assert "300 episodes × 3 seeds" in result.text() and "Cochran–Cox" in result.test


def test_crossed_mean_squares_are_statsmodels_two_way_anova():
    import pandas as pd
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    values = np.random.default_rng(2).normal(size=(3, 7)) + np.arange(3)[:, None]
    frame = pd.DataFrame([(s, e, values[s, e]) for s in range(3) for e in range(7)], columns=["seed", "episode", "y"])
    table = anova_lm(smf.ols("y ~ C(seed) + C(episode)", frame).fit())
    assert stats.crossed_mean_squares(values) == pytest.approx(tuple(table["mean_sq"]))


def test_with_rates_only_the_seed_test_is_the_one_sample_t_test_over_seeds():
    before = Counts("start", 30, 100)
    runs = stats.SeedRuns("rl", (Counts("s0", 36, 100), Counts("s1", 33, 100), Counts("s2", 41, 100)))
    result = stats.compare_runs(before, runs)
    t_test = sps.ttest_1samp([0.06, 0.03, 0.11], 0.0, alternative="greater")
    assert result.p_greater == pytest.approx(t_test.pvalue, rel=1e-6) and not result.paired
    interval = sps.ttest_1samp([0.06, 0.03, 0.11], 0.0).confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high))
    with pytest.raises(ValueError, match="per-episode outcomes for both or for neither"):
        stats.compare_runs(outcomes("start", [1, 0]), runs)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.compare_runs(before, stats.SeedRuns("rl", runs.runs[:1]))


def test_recovery_over_seeds_has_fieller_bounds_where_the_contrast_turns_significant():
    rng = np.random.default_rng(3)
    difficulty = rng.random(600)
    target, source = outcomes("t", difficulty < 0.2), outcomes("s", difficulty < 0.5)
    after = stats.SeedRuns("rl", tuple(outcomes(f"s{s}", difficulty < r) for s, r in enumerate((0.33, 0.36, 0.39))))
    result = stats.recovery_runs(after, target, source, 50.0)
    assert result.pct == pytest.approx(100 * (after.rate - target.rate) / (source.rate - target.rate))
    assert result.ci_low < result.pct < result.ci_high
    gain = after.matrix - target.success
    gap = source.success - target.success
    for bound in (result.ci_low, result.ci_high):  # the contrast's test is on the edge of α at each bound
        test = stats.seed_episode_test(gain - bound / 100 * gap)
        assert min(test.p_greater, test.p_less) == pytest.approx(0.025, abs=1e-4)
    assert result.p_below + result.p_above == pytest.approx(1.0)
    assert min(result.p_below, result.p_above) > 0.05  # 52%, its interval over 50%: neither above nor below
    assert stats.recovery_runs(after, target, source, 20.0).p_below < 0.05  # but above 20%
    no_gap = stats.recovery_runs(after, target, target, 50.0)
    assert math.isnan(no_gap.pct) and math.isnan(no_gap.ci_low) and no_gap.text() == "recovery undefined (no gap)"
    one_sided = stats.Recovery(-73.0, math.nan, -2.0, 1.0, 0.0, 50.0, "")
    assert one_sided.text() == "recovery -73% [−∞, -2]"  # Fieller's interval, unbounded below
