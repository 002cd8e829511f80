"""F1 on synthetic result tables whose right verdict is known, and on the paper's own stage tables:
supported, not supported and inconclusive."""

import pytest
from test_claims_inputs import PEAKED, SETTINGS, curve, history, rl, seeds

from sftrl.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimInputs, evaluate_claims


def verdict_of(findings, check_id):
    return next(c for f in findings for c in f.checks if c.id == check_id).verdict


def test_f1_supported_peak_loss_and_rl_recovery():
    inputs = ClaimInputs(
        curve=curve(PEAKED, 5000, base=0.1),
        rl=rl({40: (0.30, seeds(0.39)), 80: (0.15, seeds(0.20)), 160: (0.10, seeds(0.11))}),
        history=history({s: 1 / s for s in range(10, 161, 10)}, {s: 1 / s for s in PEAKED}),  # all fall to the end
    )
    findings = evaluate_claims(inputs, SETTINGS)
    f1 = findings[0]
    assert {c.id: c.verdict for c in f1.checks} == {
        "F1.peak": SUPPORTED,
        "F1.loss": SUPPORTED,
        "F1.rl_raises.ppo": SUPPORTED,  # 30% -> 39% from step 40
        "F1.rl_most.ppo": SUPPORTED,  # from 40: recovery 90%, above 50%
        "F1.rl_late.ppo": SUPPORTED,  # from 160: recovery 3%, below 50%
    }
    assert f1.verdict == SUPPORTED
    loss = next(c for c in f1.checks if c.id == "F1.loss")
    assert loss.numbers["window"] == [10, 40]
    moderate = next(c for c in f1.checks if c.id == "F1.rl_most.ppo")
    recovery = {s["start_step"]: s["recovery"]["pct"] for s in moderate.numbers["starts"]}
    assert recovery == pytest.approx({40: 90.0, 80: 20.0})
    assert all(c.detectable for c in f1.checks)


def test_f1_not_supported_when_ood_still_rises_or_a_loss_shows_the_peak():
    rising = evaluate_claims(ClaimInputs(curve=curve({10: 0.1, 20: 0.2, 40: 0.4}, 2000)), SETTINGS)
    assert verdict_of(rising, "F1.peak") == NOT_SUPPORTED
    assert rising[0].verdict == NOT_SUPPORTED
    # The test loss is lowest at the OOD peak: the loss does show it.
    shown = evaluate_claims(
        ClaimInputs(curve=curve(PEAKED, 5000), history=history({160: 0.1, 20: 0.5}, {10: 0.5, 20: 0.2, 160: 0.6})),
        SETTINGS,
    )
    assert verdict_of(shown, "F1.peak") == SUPPORTED
    assert verdict_of(shown, "F1.loss") == NOT_SUPPORTED
    # Training and ID test loss fall to the end, but the OOD loss (the authors' test loss) bottoms out at the peak.
    ood_only = history({10: 0.5, 160: 0.1}, {10: 0.5, 20: 0.4, 160: 0.2}, ood={10: 0.6, 20: 0.3, 160: 0.9})
    judged = evaluate_claims(ClaimInputs(curve=curve(PEAKED, 5000), history=ood_only), SETTINGS)
    check = next(c for c in judged[0].checks if c.id == "F1.loss")
    assert check.verdict == NOT_SUPPORTED and "OOD" in check.reason


def test_f1_rl_not_supported_when_moderate_starts_do_not_recover_and_the_late_one_does():
    inputs = ClaimInputs(curve=curve(PEAKED, 5000), rl=rl({40: (0.30, seeds(0.31)), 160: (0.10, seeds(0.38))}, "grpo"))
    findings = evaluate_claims(inputs, SETTINGS)
    assert verdict_of(findings, "F1.rl_raises.grpo") == INCONCLUSIVE  # +1 point: not significant
    assert verdict_of(findings, "F1.rl_most.grpo") == NOT_SUPPORTED  # 10%, below 50%
    assert verdict_of(findings, "F1.rl_late.grpo") == NOT_SUPPORTED  # 93% from the most overfitted start


def test_f1_inconclusive_on_small_samples():
    inputs = ClaimInputs(
        curve=curve({10: 0.06, 20: 0.10, 40: 0.08, 80: 0.06}, 50),
        rl=rl({40: (0.08, 0.10), 80: (0.06, 0.10)}),
        history=history({10: 1.0, 80: 0.5}, {10: 1.0, 80: 0.5}),
    )
    findings = evaluate_claims(inputs, SETTINGS)
    assert [c.verdict for c in findings[0].checks] == [INCONCLUSIVE] * 5
    checks = {c.id: c for c in findings[0].checks}
    assert "no significant difference" in checks["F1.peak"].reason
    assert "not established" in checks["F1.loss"].reason
    assert "nothing measurable" in checks["F1.rl_raises.ppo"].reason
    # 50 episodes could only have shown a drop of 10 points or more: the check says so.
    assert checks["F1.peak"].numbers["comparison"]["detectable"] > 0.1
    assert "points" in checks["F1.peak"].detectable


# --- the paper's own numbers -------------------------------------------------------------------------


def stage_table(peak, end, after, peak_step, end_step, n=234):
    """A paper's stage table as the workflow's tables: SFT peak and end, and PPO from the end (rates only)."""
    return ClaimInputs(curve=curve({peak_step: peak, end_step: end}, n), rl=rl({end_step: (end, after)}))


def test_paper_stage_table():
    """The paper's OOD stage tables (234 episodes each): its Llama numbers carry the peak, and its one PPO
    run rises from its start, which says nothing of another seed; its Qwen drop (19.67% -> 17.09%) is
    within noise."""
    llama = evaluate_claims(stage_table(0.1752, 0.0897, 0.1624, 130, 1100), SETTINGS)
    assert verdict_of(llama, "F1.peak") == SUPPORTED  # 41 vs 21 of 234, one-sided p ≈ 0.003
    raises = next(c for c in llama[0].checks if c.id == "F1.rl_raises.ppo")
    assert raises.verdict == INCONCLUSIVE and "needs at least 2 seeds" in raises.reason
    (run,) = raises.numbers["starts"]
    assert run["seeds"] == 1 and run["raised"]["p_greater"] < 0.01  # 21 -> 38 of 234: the one run did rise
    assert "(one run)" in raises.evidence[0]
    peak_check = next(c for c in llama[0].checks if c.id == "F1.peak")
    assert peak_check.numbers["comparison"]["p_greater"] == pytest.approx(0.0032, abs=3e-4)
    assert "biased upwards" in " ".join(peak_check.evidence)  # rates only: no selection half
    qwen = evaluate_claims(stage_table(0.1967, 0.1709, 0.1966, 140, 800), SETTINGS)
    assert verdict_of(qwen, "F1.peak") == INCONCLUSIVE
    detectable = next(c for c in qwen[0].checks if c.id == "F1.peak").numbers["comparison"]["detectable"]
    assert 0.08 < detectable < 0.12  # 234 episodes detect a drop of about 10 points, not 2.6
