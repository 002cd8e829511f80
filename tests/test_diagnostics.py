"""The revision's diagnostics: format-error shares from eval metrics, PPO's advantage distributions."""

import numpy as np
import pytest

from sftrl import diagnostics


def metrics(rate, first_counts, n_first=10, attempts=40):
    return {
        "format_error_rate": rate,
        "n_attempts": attempts,
        "verdicts_first_attempt": {"counts": first_counts, "n": n_first},
    }


def test_format_error_row_counts_both_kinds_on_first_attempts(tmp_path):
    row = diagnostics.format_error_row(50, "ood", metrics(0.25, {"illegal_formula": 2, "unparsable": 1, "correct": 7}))
    assert row == {
        "step": 50,
        "split": "ood",
        "format_error_rate": 0.25,
        "format_error_rate_first": 0.3,
        "attempts": 40,
        "first_attempts": 10,
    }
    rows = [row, diagnostics.format_error_row(0, "ood", metrics(0.0, {"correct": 10}))]
    assert all(p.stat().st_size > 0 for p in diagnostics.plot_format_errors(rows, tmp_path / "f.png"))


def test_advantages_pool_the_updates_and_seeds_of_a_start(tmp_path):
    rng = np.random.default_rng(0)
    skewed = rng.exponential(size=4000)
    histories = {
        "rl-ppo-from50-s0": [{"advantages": list(skewed[:2000])}, {"advantages": list(skewed[2000:3000])}],
        "rl-ppo-from50-s1": [{"advantages": list(skewed[3000:])}],
        "rl-ppo-from600-s0": [{"advantages": [-1.0, 1.0]}, {"update": 2}],  # a row without the key
    }
    pooled = diagnostics.advantages_by_start(histories)
    assert list(pooled) == [("ppo", 50), ("ppo", 600)] and len(pooled["ppo", 50]) == 4000
    rows = {row["start_step"]: row for row in diagnostics.advantage_rows(pooled)}
    assert rows[50]["skewness"] == pytest.approx(2.0, abs=0.3)  # an exponential's skewness is 2
    assert rows[600]["positive_share"] == 0.5 and rows[600]["mean"] == 0.0
    assert all(p.stat().st_size > 0 for p in diagnostics.plot_advantages(pooled, tmp_path / "a.png"))
    assert diagnostics.advantages_by_start({"rl-ppo-from50-s0": [{"update": 1}]}) == {}
    assert diagnostics.plot_advantages({}, tmp_path / "empty.png")  # old logs: a figure that says so
