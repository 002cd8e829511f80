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
    records = [{"uid": "ood-1", "sample": 0, "success": True}, {"uid": "ood-0", "sample": 0, "success": False},
               {"uid": "ood-0", "sample": 1, "success": True}]
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
    assert stats.detectable_paired(4, 100) is None and stats.detectable_paired(5, 100) == pytest.approx(0.05 * (2 * 0.8 ** (1 / 5) - 1))


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
