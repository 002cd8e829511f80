"""F4 on synthetic RL tables whose right verdict is known."""

import pytest
from test_claims_inputs import PEAKED, SETTINGS, curve, rl

from sftrl.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimInputs, evaluate_claims


def test_f4_supported_when_better_starts_give_better_rl():
    runs = {
        40: (0.30, 0.36),
        60: (0.25, 0.33),
        80: (0.20, 0.30),
        100: (0.15, 0.22),
        120: (0.12, 0.15),
        160: (0.10, 0.11),
    }
    inputs = ClaimInputs(curve=curve({**PEAKED, 60: 0.25, 100: 0.15, 120: 0.12}, 5000), rl=rl(runs))
    finding = evaluate_claims(inputs, SETTINGS)[3]
    checks = {c.id: c for c in finding.checks}
    assert checks["F4.better_in_better_out.ppo"].verdict == SUPPORTED
    assert checks["F4.better_in_better_out.ppo"].numbers["p"] == pytest.approx(1 / 720)
    assert checks["F4.overfit_resists.ppo"].verdict == SUPPORTED  # recovery falls with the start step
    assert finding.verdict == SUPPORTED


def test_f4_not_supported_when_worse_starts_give_better_rl():
    runs = {
        40: (0.30, 0.10),
        60: (0.25, 0.15),
        80: (0.20, 0.20),
        100: (0.15, 0.25),
        120: (0.12, 0.30),
        160: (0.10, 0.35),
    }
    inputs = ClaimInputs(curve=curve({**PEAKED, 60: 0.25, 100: 0.15, 120: 0.12}, 5000), rl=rl(runs))
    finding = evaluate_claims(inputs, SETTINGS)[3]
    assert {c.id: c.verdict for c in finding.checks}["F4.better_in_better_out.ppo"] == NOT_SUPPORTED
    assert finding.verdict == NOT_SUPPORTED


def test_f4_inconclusive_with_three_starts():
    inputs = ClaimInputs(curve=curve(PEAKED, 5000), rl=rl({40: (0.30, 0.36), 80: (0.15, 0.20), 160: (0.10, 0.11)}))
    check = evaluate_claims(inputs, SETTINGS)[3].checks[0]
    assert check.verdict == INCONCLUSIVE
    assert check.numbers["p"] == pytest.approx(1 / 6)  # 3! pairings: the best a rank test can do
    assert "smallest p" in check.reason
