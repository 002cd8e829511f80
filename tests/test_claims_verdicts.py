"""The rules from tests to verdicts."""

from sftrl.claims import verdicts
from sftrl.claims.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED


def test_combine_and_verdict_rules():
    assert verdicts.combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert verdicts.combine([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert verdicts.combine([SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE]) == NOT_SUPPORTED
    assert verdicts.combine([]) == INCONCLUSIVE
    assert verdicts.p_verdict(0.01, 0.99) == SUPPORTED and verdicts.p_verdict(0.99, 0.01) == NOT_SUPPORTED
    assert verdicts.p_verdict(0.2, 0.8) == INCONCLUSIVE and verdicts.p_verdict(None, None) == INCONCLUSIVE
