"""F2 on synthetic spectral pair tables whose right verdict is known."""

import math

import pandas as pd
import pytest
from test_claims_inputs import PEAKED, SETTINGS, curve

from sftrl.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimInputs, evaluate_claims


def spectrum(drifts, proj, top=20.0, bottom=20.0, middle=10.0, k_fraction=0.2):
    """A tidy spectral pair table, one matrix per drift value; top/middle/bottom: subspace angles (degrees)."""
    rows = []
    for i, drift in enumerate(drifts):
        name = f"model.layers.{i}.self_attn.q_proj.weight"

        def add(metric, value, index=-1, i=i, name=name):
            rows.append(
                {"layer": i, "module": "q_proj", "name": name, "index_or_k": index, "metric": metric, "value": value}
            )

        jitter = 0.05 * proj * (i % 5)
        add("drift_median", drift)
        for k, fraction in ((3, 0.05), (13, k_fraction), (64, 1.0)):
            add("k_fraction", fraction, k)
            for side in ("left", "right"):
                add(f"proj_dist_{side}", proj + jitter if fraction == k_fraction else 0.0, k)
                add(f"angle_{side}_mean_deg", math.degrees(math.asin(min(1.0, proj + jitter))), k)
        for side in ("left", "right"):
            add(f"subspace_angle_{side}_top_deg", top + 10 * jitter)
            add(f"subspace_angle_{side}_middle_deg", middle)
            add(f"subspace_angle_{side}_bottom_deg", bottom + 10 * jitter)
    return pd.DataFrame(rows)


def f2_verdicts(table):
    findings = evaluate_claims(ClaimInputs(curve=curve(PEAKED, 300), spectra={"sft": table}), SETTINGS)
    return {c.id: c.verdict for c in findings[1].checks}, findings[1].verdict


def test_f2_supported_small_drift_large_edge_rotation():
    verdicts, overall = f2_verdicts(spectrum([0.004 + 0.0001 * i for i in range(20)], proj=0.5))
    assert verdicts == {"F2.drift_vs_rotation.sft": SUPPORTED, "F2.edges.sft": SUPPORTED}
    assert overall == SUPPORTED


def test_f2_not_supported_large_drift_or_bulk_rotation():
    verdicts, overall = f2_verdicts(spectrum([0.05 + 0.001 * i for i in range(20)], proj=0.5))
    assert verdicts["F2.drift_vs_rotation.sft"] == NOT_SUPPORTED and overall == NOT_SUPPORTED
    verdicts, _ = f2_verdicts(spectrum([0.004] * 20, proj=0.01))  # rotation only 2.5x the drift
    assert verdicts["F2.drift_vs_rotation.sft"] == NOT_SUPPORTED
    verdicts, _ = f2_verdicts(spectrum([0.004] * 20, proj=0.5, top=2.0, bottom=40.0, middle=20.0))
    assert verdicts["F2.edges.sft"] == NOT_SUPPORTED  # the top singular subspace turns less than the middle one


def test_f2_inconclusive_when_drift_straddles_the_threshold_or_is_not_measured():
    drifts = [0.002] * 10 + [0.03] * 10  # the median over matrices sits on either side of 1%
    verdicts, _ = f2_verdicts(spectrum(drifts, proj=0.5))
    assert verdicts["F2.drift_vs_rotation.sft"] == INCONCLUSIVE
    findings = evaluate_claims(ClaimInputs(curve=curve(PEAKED, 300)), SETTINGS)
    assert findings[1].verdict == INCONCLUSIVE and "no spectral tables" in findings[1].checks[0].reason


def test_f2_names_a_missing_k_fraction_or_subspace_angles():
    with pytest.raises(ValueError, match=r"no k fraction 0.2"):
        f2_verdicts(spectrum([0.004] * 5, proj=0.5, k_fraction=0.5))
    table = spectrum([0.004] * 8, proj=0.5)
    with pytest.raises(ValueError, match=r"no subspace_angle_.*_middle_deg rows"):
        f2_verdicts(table[~table["metric"].str.contains("middle")])
