"""All four findings of the study, each judged by its checks (`evaluate_claims`)."""

from __future__ import annotations

from sftrl.claims.evidence import Evidence
from sftrl.claims.inputs import ClaimInputs
from sftrl.claims.peak_recovery import finding_1
from sftrl.claims.restoration import finding_3
from sftrl.claims.spectrum import finding_2
from sftrl.claims.start_quality import finding_4
from sftrl.claims.verdicts import ClaimSettings, Finding

FINDINGS = (finding_1, finding_2, finding_3, finding_4)
DEFAULT_SETTINGS = ClaimSettings()  # frozen: one instance serves every call


def evaluate_claims(inputs: ClaimInputs, settings: ClaimSettings = DEFAULT_SETTINGS) -> list[Finding]:
    """One Finding per finding of the study, each with its checks. Deterministic for a fixed seed."""
    if not inputs.curve:
        raise ValueError("the SFT curve is empty: there is nothing to judge the claims on")
    evidence = Evidence(inputs, settings)
    return [finding(inputs, settings, evidence) for finding in FINDINGS]
