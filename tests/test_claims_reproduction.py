"""The "Reproduces the paper?" section: this run's numbers beside the paper's stage table, with an
equivalence test at the configured margin (sftrl.claims.reproduction)."""

import math

import pytest

from sftrl.claims.inputs import ClaimInputs
from sftrl.claims.reproduction import reproduction_lines, reproduction_rows, smallest_margin
from sftrl.paper import EPISODES, PAPER_TABLES, paper_count

QWEN = PAPER_TABLES["qwen2.5-7b"].rates


def inputs(rates: dict, n: int, seeds=(0,)) -> ClaimInputs:
    """A run whose peak (step 140), end (step 800) and PPO from the end score `rates` (split -> stage -> %)."""
    curve = [
        {"step": step, "split": split, "n": n, "success": rates[split][stage] / 100}
        for split in ("id", "ood")
        for step, stage in ((140, "peak"), (800, "end"))
    ]
    rl = [
        {"start_step": 800, "algorithm": "ppo", "seed": seed, "split": split, "after": rates[split]["rl"] / 100}
        for split in ("id", "ood")
        for seed in seeds
    ]
    roles = {"steps": {"sft_peak": 140, "sft_end": 800}}
    return ClaimInputs(curve=curve, rl=rl, roles=roles)


def test_the_paper_counts_are_whole_episodes():
    """Every printed rate is k/234 to its two decimals (Qwen's OOD peak, 19.67%, is 46/234 = 19.658%, which
    its RL column prints as 19.66%)."""
    for table in PAPER_TABLES.values():
        for stages in table.rates.values():
            for rate in stages.values():
                assert math.isclose(100 * paper_count(rate) / EPISODES, rate, abs_tol=0.015), rate


def test_a_run_at_the_papers_numbers_is_equivalent_where_its_size_allows():
    large = reproduction_rows(inputs(QWEN, 20000), "qwen2.5-7b", 8.0)
    assert len(large) == 6 and all(r["equivalent"] for r in large)
    assert all(abs(r["difference_pct"]) < 0.02 for r in large)
    small = reproduction_rows(inputs(QWEN, 234), "qwen2.5-7b", 3.0)  # 234 a side cannot show ±3 points
    assert not any(r["equivalent"] for r in small)
    for row in small:  # at 234 a side the best case is about 1.645 standard errors of the difference
        p = row["paper_pct"] / 100
        assert row["best_case_pct"] == pytest.approx(100 * 1.645 * math.sqrt(2 * p * (1 - p) / 234), rel=0.15)
        assert row["shown_within_pct"] == pytest.approx(row["best_case_pct"], rel=0.05)


def test_a_run_far_from_the_paper_is_not_equivalent_and_the_section_says_so():
    far = {split: {stage: rate + 15 for stage, rate in stages.items()} for split, stages in QWEN.items()}
    rows = reproduction_rows(inputs(far, 234), "qwen2.5-7b", 5.0)
    assert not any(r["equivalent"] for r in rows)
    assert all(r["ci_low_pct"] > 0 for r in rows)  # the interval of the difference excludes 0
    assert all(r["shown_within_pct"] > 15 for r in rows)
    text = "\n".join(reproduction_lines(rows, "qwen2.5-7b"))
    assert "0 of 6 numbers are equivalent to the paper's within ±5 points" in text
    assert "| OOD | RL from the end | 34.66% (n = 234) | 19.66% |" in text


def test_the_rl_row_averages_seeds_and_a_missing_run_is_said():
    two_seeds = inputs(QWEN, 234, seeds=(0, 1))
    two_seeds.rl[1]["after"] = 0.5  # ID, seed 1
    rows = {(r["split"], r["stage"]): r for r in reproduction_rows(two_seeds, "qwen2.5-7b", 5.0)}
    assert rows["id", "rl"]["run_pct"] == pytest.approx((40.60 + 50) / 2)
    no_rl = inputs(QWEN, 234)
    no_rl.rl = []
    rows = reproduction_rows(no_rl, "qwen2.5-7b", 5.0)
    assert [r["run_pct"] is None for r in rows] == [False, False, True, False, False, True]
    assert "| ID | RL from the end | not run |" in "\n".join(reproduction_lines(rows, "qwen2.5-7b"))


def test_smallest_margin_is_where_the_test_starts_to_pass():
    margin = smallest_margin(50, 234, 46)
    from statsmodels.stats.proportion import tost_proportions_2indep

    assert tost_proportions_2indep(50, 234, 46, 234, -margin - 1e-4, margin + 1e-4, method="score").pvalue < 0.05
    assert tost_proportions_2indep(50, 234, 46, 234, -margin + 1e-3, margin - 1e-3, method="score").pvalue >= 0.05
