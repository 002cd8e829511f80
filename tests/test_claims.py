"""Claim verdicts on synthetic result tables whose right verdict is known: supported, not supported and
inconclusive for every finding."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from sftrl import claims
from sftrl.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimInputs, ClaimSettings, Rate

SETTINGS = ClaimSettings(bootstrap_draws=4000, seed=1)


def curve(rates, n, base=None):
    """sft_curve.csv rows of the OOD split (strings, as csv.DictReader gives them)."""
    rows = []
    items = ([(0, base)] if base is not None else []) + list(rates.items())
    for step, rate in items:
        low, high = claims.wilson_interval(round(rate * n), n)
        rows.append({"step": str(step), "split": "ood", "n": str(n), "success": str(rate), "ci_low": str(low), "ci_high": str(high)})
        rows.append({"step": str(step), "split": "id", "n": str(n), "success": "0.9", "ci_low": "0.8", "ci_high": "0.95"})
    return rows


def rl(runs, algorithm="ppo"):
    """rl_from_sft.csv rows: runs = {start_step: (before, after)}."""
    return [
        {"start_step": str(step), "algorithm": algorithm, "seed": "0", "split": "ood", "before": str(b), "after": str(a)}
        for step, (b, a) in runs.items()
    ]


def history(train, test):
    """sft/history.jsonl rows: train loss at every step given, test loss where given."""
    rows = []
    for step in sorted(set(train) | set(test)):
        row = {"step": step}
        if step in train:
            row["loss"] = train[step]
        if step in test:
            row["eval_id_unseen_loss"] = test[step]
            row["eval_ood_loss"] = test[step] + 0.1
        rows.append(row)
    return rows


def verdict_of(findings, check_id):
    return next(c for f in findings for c in f.checks if c.id == check_id).verdict


# --- F1 --------------------------------------------------------------------------------------------

PEAKED = {10: 0.20, 20: 0.40, 40: 0.30, 80: 0.15, 160: 0.10}  # peak at 20, well above the end


def test_f1_supported_peak_loss_and_rl_recovery():
    inputs = ClaimInputs(
        curve=curve(PEAKED, 5000, base=0.1),
        rl=rl({40: (0.30, 0.39), 80: (0.15, 0.20), 160: (0.10, 0.11)}),
        history=history({s: 1 / s for s in range(10, 161, 10)}, {s: 1 / s for s in PEAKED}),  # both fall to the end
    )
    findings = claims.evaluate_claims(inputs, SETTINGS)
    f1 = findings[0]
    assert {c.id: c.verdict for c in f1.checks} == {
        "F1.peak": SUPPORTED,
        "F1.loss": SUPPORTED,
        "F1.rl_moderate.ppo": SUPPORTED,  # from 40: recovery 90%, interval above 50%
        "F1.rl_late.ppo": SUPPORTED,  # from 160: recovery 3%, interval below 50%
    }
    assert f1.verdict == SUPPORTED
    loss = next(c for c in f1.checks if c.id == "F1.loss")
    assert loss.numbers["window"] == [10, 40]
    moderate = next(c for c in f1.checks if c.id == "F1.rl_moderate.ppo")
    recovery = {s["start_step"]: s["recovery_pct"] for s in moderate.numbers["starts"]}
    assert recovery == pytest.approx({40: 90.0, 80: 20.0})


def test_f1_not_supported_when_ood_still_rises_or_loss_shows_the_peak():
    rising = claims.evaluate_claims(ClaimInputs(curve=curve({10: 0.1, 20: 0.2, 40: 0.4}, 2000)), SETTINGS)
    assert verdict_of(rising, "F1.peak") == NOT_SUPPORTED
    assert rising[0].verdict == NOT_SUPPORTED
    # The test loss is lowest at the OOD peak: the loss does show it.
    shown = claims.evaluate_claims(
        ClaimInputs(curve=curve(PEAKED, 5000), history=history({160: 0.1, 20: 0.5}, {10: 0.5, 20: 0.2, 160: 0.6})),
        SETTINGS,
    )
    assert verdict_of(shown, "F1.peak") == SUPPORTED
    assert verdict_of(shown, "F1.loss") == NOT_SUPPORTED


def test_f1_rl_not_supported_when_moderate_starts_do_not_recover_and_the_late_one_does():
    inputs = ClaimInputs(curve=curve(PEAKED, 5000), rl=rl({40: (0.30, 0.31), 160: (0.10, 0.38)}, "grpo"))
    findings = claims.evaluate_claims(inputs, SETTINGS)
    assert verdict_of(findings, "F1.rl_moderate.grpo") == NOT_SUPPORTED  # 10%, interval below 50%
    assert verdict_of(findings, "F1.rl_late.grpo") == NOT_SUPPORTED  # 93% from the most overfitted start


def test_f1_inconclusive_on_small_samples():
    inputs = ClaimInputs(
        curve=curve({10: 0.06, 20: 0.10, 40: 0.08, 80: 0.06}, 50),
        rl=rl({40: (0.08, 0.10), 80: (0.06, 0.10)}),
        history=history({10: 1.0, 80: 0.5}, {10: 1.0, 80: 0.5}),
    )
    findings = claims.evaluate_claims(inputs, SETTINGS)
    assert [c.verdict for c in findings[0].checks] == [INCONCLUSIVE] * 4
    reasons = {c.id: c.reason for c in findings[0].checks}
    assert "overlap" in reasons["F1.peak"]
    assert "not established" in reasons["F1.loss"]
    assert "nothing measurable" in reasons["F1.rl_moderate.ppo"]


def test_seeds_are_pooled_and_algorithms_can_be_chosen():
    rows = rl({40: (0.30, 0.39)}) + [dict(r, seed="1", after="0.37") for r in rl({40: (0.30, 0.39)})]
    starts = claims.rl_starts(rows + rl({40: (0.3, 0.0)}, "grpo"), 5000, algorithms=["ppo"])
    assert list(starts) == ["ppo"]
    (start,) = starts["ppo"]
    assert (start.seeds, start.after.n, start.after.k) == (2, 10_000, 1950 + 1850)


# --- F2 --------------------------------------------------------------------------------------------


def spectrum(drifts, proj, top=0.5, bottom=0.5, bulk=0.1, k_fraction=0.2):
    """A tidy spectral pair table, one matrix per drift value."""
    rows = []
    for i, drift in enumerate(drifts):
        name = f"model.layers.{i}.self_attn.q_proj.weight"

        def add(metric, value, index=-1):
            rows.append({"layer": i, "module": "q_proj", "name": name, "index_or_k": index, "metric": metric, "value": value})

        jitter = 0.05 * proj * (i % 5)
        add("drift_median", drift)
        for k, fraction in ((3, 0.05), (13, k_fraction), (64, 1.0)):
            add("k_fraction", fraction, k)
            for side in ("left", "right"):
                add(f"proj_dist_{side}", proj + jitter if fraction == k_fraction else 0.0, k)
                add(f"angle_{side}_mean_deg", math.degrees(math.asin(min(1.0, proj + jitter))), k)
        for side in ("left", "right"):
            add(f"align_{side}_top", 1 - top - jitter)
            add(f"align_{side}_bulk", 1 - bulk)
            add(f"align_{side}_bottom", 1 - bottom - jitter)
    return pd.DataFrame(rows)


def f2_verdicts(table):
    findings = claims.evaluate_claims(ClaimInputs(curve=curve(PEAKED, 300), spectra={"sft": table}), SETTINGS)
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
    verdicts, _ = f2_verdicts(spectrum([0.004] * 20, proj=0.5, top=0.02, bottom=0.6, bulk=0.3))
    assert verdicts["F2.edges.sft"] == NOT_SUPPORTED  # the top singular vectors rotate less than the bulk


def test_f2_inconclusive_when_drift_straddles_the_threshold_or_is_not_measured():
    drifts = [0.002] * 10 + [0.03] * 10  # the median over matrices sits on either side of 1%
    verdicts, _ = f2_verdicts(spectrum(drifts, proj=0.5))
    assert verdicts["F2.drift_vs_rotation.sft"] == INCONCLUSIVE
    findings = claims.evaluate_claims(ClaimInputs(curve=curve(PEAKED, 300)), SETTINGS)
    assert findings[1].verdict == INCONCLUSIVE and "no spectral tables" in findings[1].checks[0].reason


def test_f2_names_a_missing_k_fraction():
    with pytest.raises(ValueError, match="no k fraction 0.2"):
        f2_verdicts(spectrum([0.004] * 5, proj=0.5, k_fraction=0.5))


# --- F3 --------------------------------------------------------------------------------------------


def restoration(n, source, target, edits):
    rows = []
    for edit, kind, top, tail, layers, success in edits:
        rows.append(
            {
                "source_role": "sft_peak", "target_role": "sft_end", "source": "sft-20", "target": "sft-160",
                "edit": edit, "kind": kind, "top": top, "tail": tail, "layers": layers, "split": "ood",
                "n": str(n), "success": str(success), "source_success": str(source), "target_success": str(target),
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
    inputs = ClaimInputs(curve=curve(PEAKED, 300), restoration=restoration(n, source, target, grid(direction, layer, value)))
    finding = claims.evaluate_claims(inputs, SETTINGS)[2]
    return {c.id: c.verdict for c in finding.checks}, finding


def test_f3_supported_when_both_edits_recover_most_and_directions_beat_values():
    verdicts, finding = f3(5000, direction=0.38, layer=0.385, value=0.22)
    assert verdicts == {"F3.direction_top20": SUPPORTED, "F3.layers_first25": SUPPORTED, "F3.direction_vs_value": SUPPORTED}
    assert finding.verdict == SUPPORTED
    assert finding.checks[0].numbers["recovery_pct"] == pytest.approx(90.0)


def test_f3_not_supported_when_an_edit_falls_short_or_values_win():
    verdicts, finding = f3(5000, direction=0.24, layer=0.38, value=0.36)
    assert verdicts["F3.direction_top20"] == NOT_SUPPORTED  # 20%
    assert verdicts["F3.layers_first25"] == SUPPORTED
    assert verdicts["F3.direction_vs_value"] == NOT_SUPPORTED
    assert finding.verdict == NOT_SUPPORTED


def test_f3_inconclusive_on_small_samples_no_gap_or_no_grid():
    verdicts, _ = f3(60, direction=0.38, layer=0.38, value=0.22)
    assert set(verdicts.values()) == {INCONCLUSIVE}
    verdicts, finding = f3(5000, direction=0.38, layer=0.38, value=0.22, source=0.205, target=0.20)
    assert set(verdicts.values()) == {INCONCLUSIVE} and "no measurable gap" in finding.checks[0].reason
    missing = claims.evaluate_claims(ClaimInputs(curve=curve(PEAKED, 300)), SETTINGS)[2]
    assert {c.verdict for c in missing.checks} == {INCONCLUSIVE}
    assert "not run" in missing.checks[0].reason


# --- F4 --------------------------------------------------------------------------------------------


def test_f4_supported_when_better_starts_give_better_rl():
    runs = {40: (0.30, 0.36), 60: (0.25, 0.33), 80: (0.20, 0.30), 100: (0.15, 0.22), 120: (0.12, 0.15), 160: (0.10, 0.11)}
    inputs = ClaimInputs(curve=curve({**PEAKED, 60: 0.25, 100: 0.15, 120: 0.12}, 5000), rl=rl(runs))
    finding = claims.evaluate_claims(inputs, SETTINGS)[3]
    checks = {c.id: c for c in finding.checks}
    assert checks["F4.better_in_better_out.ppo"].verdict == SUPPORTED
    assert checks["F4.better_in_better_out.ppo"].numbers["p"] == pytest.approx(1 / 720)
    assert checks["F4.overfit_resists.ppo"].verdict == SUPPORTED  # recovery falls with the start step
    assert finding.verdict == SUPPORTED


def test_f4_not_supported_when_worse_starts_give_better_rl():
    runs = {40: (0.30, 0.10), 60: (0.25, 0.15), 80: (0.20, 0.20), 100: (0.15, 0.25), 120: (0.12, 0.30), 160: (0.10, 0.35)}
    inputs = ClaimInputs(curve=curve({**PEAKED, 60: 0.25, 100: 0.15, 120: 0.12}, 5000), rl=rl(runs))
    finding = claims.evaluate_claims(inputs, SETTINGS)[3]
    assert {c.id: c.verdict for c in finding.checks}["F4.better_in_better_out.ppo"] == NOT_SUPPORTED
    assert finding.verdict == NOT_SUPPORTED


def test_f4_inconclusive_with_three_starts():
    inputs = ClaimInputs(curve=curve(PEAKED, 5000), rl=rl({40: (0.30, 0.36), 80: (0.15, 0.20), 160: (0.10, 0.11)}))
    check = claims.evaluate_claims(inputs, SETTINGS)[3].checks[0]
    assert check.verdict == INCONCLUSIVE
    assert check.numbers["p"] == pytest.approx(1 / 6)  # 3! pairings: the best a rank test can do
    assert "smallest p" in check.reason


# --- statistics and output ------------------------------------------------------------------------


def test_combine_and_interval_rules():
    assert claims.combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert claims.combine([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert claims.combine([SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE]) == NOT_SUPPORTED
    assert claims.combine([]) == INCONCLUSIVE
    assert claims.three_way(70, 90, 70) == SUPPORTED and claims.three_way(10, 69.9, 70) == NOT_SUPPORTED
    assert claims.three_way(60, 80, 70) == INCONCLUSIVE and claims.three_way(math.nan, 1, 0) == INCONCLUSIVE
    assert claims.sign_verdict(0.0, 1.0) == INCONCLUSIVE and claims.sign_verdict(0.1, 1.0) == SUPPORTED


def test_rates_and_recovery_interval():
    rate = Rate.of(0.0533333, 300)
    assert (rate.k, rate.n) == (16, 300)
    assert rate.ci == pytest.approx((0.03309162538404202, 0.08486983874726851))  # as results/tiny's table
    with pytest.raises(ValueError, match="n > 0"):
        Rate.of(0.5, 0)
    rng = np.random.default_rng(0)
    point, low, high = claims.recovery_interval(Rate(380, 1000), Rate(200, 1000), Rate(400, 1000), 4000, rng)
    assert point == pytest.approx(90.0) and low < 90 < high and high - low < 60


def test_claims_are_written_as_markdown_and_json(tmp_path):
    inputs = ClaimInputs(curve=curve(PEAKED, 5000), rl=rl({40: (0.30, 0.39), 160: (0.10, 0.11)}))
    findings = claims.evaluate_claims(inputs, SETTINGS)
    claims.write_claims(findings, tmp_path / "c.md", tmp_path / "c.json", SETTINGS, {"seed": 1}, title="Claims: test")
    text = (tmp_path / "c.md").read_text()
    assert text.startswith("# Claims: test") and "## F1: " in text and "### F1.peak: supported" in text
    data = json.loads((tmp_path / "c.json").read_text())
    assert list(data["verdicts"]) == ["F1", "F2", "F3", "F4"]
    assert data["provenance"] == {"seed": 1} and data["settings"]["bootstrap_draws"] == 4000
    assert data == json.loads(json.dumps(data, allow_nan=False))  # no NaN in the file
    again = claims.evaluate_claims(inputs, SETTINGS)
    assert claims.to_json(again, SETTINGS) == claims.to_json(findings, SETTINGS)  # deterministic
    with pytest.raises(ValueError, match="curve is empty"):
        claims.evaluate_claims(ClaimInputs(curve=[]), SETTINGS)
