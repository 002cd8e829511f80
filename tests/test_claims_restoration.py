"""F3 on synthetic restoration grids whose right verdict is known."""

import pytest
from test_claims_inputs import PEAKED, SETTINGS, curve

from sftrl.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimInputs, evaluate_claims


def restoration(n, source, target, edits):
    rows = []
    for edit, kind, top, tail, layers, success in edits:
        rows.append(
            {
                "source_role": "sft_peak",
                "target_role": "sft_end",
                "source": "sft-20",
                "target": "sft-160",
                "edit": edit,
                "kind": kind,
                "top": top,
                "tail": tail,
                "layers": layers,
                "split": "ood",
                "n": str(n),
                "success": str(success),
                "source_success": str(source),
                "target_success": str(target),
            }
        )
    return rows


def grid(direction, layer, value):
    return [
        ("direction-top20-tail0", "direction", "0.2", "0.0", "", direction),
        ("layer-first25pct", "layer", "", "", "0.25", layer),
        ("value-top100-tail0", "value", "1.0", "0.0", "", value),
    ]


def f3(n, direction, layer, value, source=0.40, target=0.20):
    inputs = ClaimInputs(
        curve=curve(PEAKED, 300), restoration=restoration(n, source, target, grid(direction, layer, value))
    )
    finding = evaluate_claims(inputs, SETTINGS)[2]
    return {c.id: c.verdict for c in finding.checks}, finding


def test_f3_supported_when_both_edits_recover_most_and_directions_beat_values():
    verdicts, finding = f3(5000, direction=0.38, layer=0.385, value=0.22)
    assert verdicts == {
        "F3.direction_top20": SUPPORTED,
        "F3.layers_first25": SUPPORTED,
        "F3.direction_vs_value": SUPPORTED,
    }
    assert finding.verdict == SUPPORTED
    assert finding.checks[0].numbers["recovery"]["pct"] == pytest.approx(90.0)


def test_f3_not_supported_when_an_edit_falls_short_or_values_win():
    verdicts, finding = f3(5000, direction=0.24, layer=0.38, value=0.36)
    assert verdicts["F3.direction_top20"] == NOT_SUPPORTED  # 20%
    assert verdicts["F3.layers_first25"] == SUPPORTED
    assert verdicts["F3.direction_vs_value"] == NOT_SUPPORTED
    assert finding.verdict == NOT_SUPPORTED


def test_f3_inconclusive_on_small_samples_no_gap_or_no_grid():
    verdicts, _ = f3(20, direction=0.38, layer=0.38, value=0.22)  # 8 vs 4 of 20: no significant gap
    assert set(verdicts.values()) == {INCONCLUSIVE}
    verdicts, finding = f3(5000, direction=0.38, layer=0.38, value=0.22, source=0.205, target=0.20)
    assert set(verdicts.values()) == {INCONCLUSIVE} and "no measurable gap" in finding.checks[0].reason
    missing = evaluate_claims(ClaimInputs(curve=curve(PEAKED, 300)), SETTINGS)[2]
    assert {c.verdict for c in missing.checks} == {INCONCLUSIVE}
    assert "not run" in missing.checks[0].reason
