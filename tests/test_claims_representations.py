"""F1's representation check on synthetic rows of representations.csv whose right verdict is known."""

from test_claims_inputs import PEAKED, SETTINGS, curve

from sftrl.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimInputs, evaluate_claims
from sftrl.claims.representations import check_representations

METRICS = ("cosine", "cka", "mmd2", "frechet", "js", "topk")


def rows(model, intervals, split="ood", role="rl_from_end"):
    """One row per metric; `intervals` gives each metric's (delta_low, delta_high)."""
    return [
        {
            "split": split,
            "metric": m,
            "model": model,
            "role": role,
            "value": "0.5",
            "delta": str((lo + hi) / 2),
            "delta_low": str(lo),
            "delta_high": str(hi),
            "win_rate": "0.7" if m in ("cosine", "js", "topk") else "",
        }
        for m, (lo, hi) in zip(METRICS, intervals, strict=True)
    ]


CLOSER, FARTHER, UNSURE = (0.01, 0.03), (-0.03, -0.01), (-0.01, 0.01)


def verdicts(table):
    return {c.id: c.verdict for c in check_representations(table)}


def test_most_metrics_closer_supports_and_most_farther_refutes():
    table = [
        *rows("rl-ppo-from600-s0", [CLOSER] * 4 + [FARTHER, UNSURE]),
        *rows("rl-grpo-from600-s0", [FARTHER] * 4 + [CLOSER, CLOSER]),
        *rows("rl-grpo-from600-s0", [CLOSER] * 6, split="id"),  # ID rows do not count
        *rows("sft-600", [UNSURE] * 6, role="sft_end"),
    ]
    assert verdicts(table) == {"F1.representations.grpo": NOT_SUPPORTED, "F1.representations.ppo": SUPPORTED}
    ppo = next(c for c in check_representations(table) if c.id.endswith("ppo"))
    assert len(ppo.evidence) == 6 and "closer on 70% of prompts" in ppo.evidence[0]


def test_half_the_metrics_or_seeds_that_disagree_are_inconclusive():
    split_metrics = rows("rl-ppo-from600-s0", [CLOSER] * 3 + [UNSURE] * 3)
    assert verdicts(split_metrics) == {"F1.representations.ppo": INCONCLUSIVE}
    seeds = rows("rl-ppo-from600-s0", [CLOSER] * 6) + rows("rl-ppo-from600-s1", [FARTHER] * 6)
    assert verdicts(seeds) == {"F1.representations.ppo": INCONCLUSIVE}


def test_no_table_no_check_and_an_empty_one_is_inconclusive():
    assert check_representations(None) == []
    assert verdicts([]) == {"F1.representations": INCONCLUSIVE}
    no_delta = [
        {**row, "delta": "", "delta_low": "", "delta_high": ""} for row in rows("rl-ppo-from10-s0", [CLOSER] * 6)
    ]
    (check,) = check_representations(no_delta)  # sft_peak is sft_end: nothing to move back to
    assert check.verdict == INCONCLUSIVE and "no recovery Δ" in check.reason


def test_the_check_counts_in_finding_1():
    inputs = ClaimInputs(curve=curve(PEAKED, 5000, base=0.1), representations=rows("rl-ppo-from600-s0", [FARTHER] * 6))
    f1 = evaluate_claims(inputs, SETTINGS)[0]
    assert "F1.representations.ppo" in {c.id for c in f1.checks}
    assert f1.verdict == NOT_SUPPORTED
