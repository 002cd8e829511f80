"""Claim verdicts on synthetic result tables whose right verdict is known: supported, not supported and
inconclusive for every finding."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from sftrl import claims
from sftrl.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, ClaimInputs, ClaimSettings, Rate
from sftrl.stats import Outcomes, PairingError

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


def history(train, test, ood=None):
    """sft/history.jsonl rows: train loss at every step given, test (ID unseen) and OOD loss where given
    (the OOD loss follows the test loss unless given)."""
    ood = {s: v + 0.1 for s, v in test.items()} if ood is None else ood
    rows = []
    for step in sorted(set(train) | set(test) | set(ood)):
        row = {"step": step}
        if step in train:
            row["loss"] = train[step]
        if step in test:
            row["eval_id_unseen_loss"] = test[step]
        if step in ood:
            row["eval_ood_loss"] = ood[step]
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
        history=history({s: 1 / s for s in range(10, 161, 10)}, {s: 1 / s for s in PEAKED}),  # all fall to the end
    )
    findings = claims.evaluate_claims(inputs, SETTINGS)
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
    # Training and ID test loss fall to the end, but the OOD loss (the authors' test loss) bottoms out at the peak.
    ood_only = history({10: 0.5, 160: 0.1}, {10: 0.5, 20: 0.4, 160: 0.2}, ood={10: 0.6, 20: 0.3, 160: 0.9})
    judged = claims.evaluate_claims(ClaimInputs(curve=curve(PEAKED, 5000), history=ood_only), SETTINGS)
    check = next(c for c in judged[0].checks if c.id == "F1.loss")
    assert check.verdict == NOT_SUPPORTED and "OOD" in check.reason


def test_f1_rl_not_supported_when_moderate_starts_do_not_recover_and_the_late_one_does():
    inputs = ClaimInputs(curve=curve(PEAKED, 5000), rl=rl({40: (0.30, 0.31), 160: (0.10, 0.38)}, "grpo"))
    findings = claims.evaluate_claims(inputs, SETTINGS)
    assert verdict_of(findings, "F1.rl_raises.grpo") == INCONCLUSIVE  # +1 point: not significant
    assert verdict_of(findings, "F1.rl_most.grpo") == NOT_SUPPORTED  # 10%, below 50%
    assert verdict_of(findings, "F1.rl_late.grpo") == NOT_SUPPORTED  # 93% from the most overfitted start


def test_f1_inconclusive_on_small_samples():
    inputs = ClaimInputs(
        curve=curve({10: 0.06, 20: 0.10, 40: 0.08, 80: 0.06}, 50),
        rl=rl({40: (0.08, 0.10), 80: (0.06, 0.10)}),
        history=history({10: 1.0, 80: 0.5}, {10: 1.0, 80: 0.5}),
    )
    findings = claims.evaluate_claims(inputs, SETTINGS)
    assert [c.verdict for c in findings[0].checks] == [INCONCLUSIVE] * 5
    checks = {c.id: c for c in findings[0].checks}
    assert "no significant difference" in checks["F1.peak"].reason
    assert "not established" in checks["F1.loss"].reason
    assert "nothing measurable" in checks["F1.rl_raises.ppo"].reason
    # 50 episodes could only have shown a drop of 10 points or more: the check says so.
    assert checks["F1.peak"].numbers["comparison"]["detectable"] > 0.1
    assert "points" in checks["F1.peak"].detectable


def test_seeds_are_pooled_and_algorithms_can_be_chosen():
    rows = rl({40: (0.30, 0.39)}) + [dict(r, seed="1", after="0.37") for r in rl({40: (0.30, 0.39)})]
    starts = claims.rl_starts(rows + rl({40: (0.3, 0.0)}, "grpo"), algorithms=["ppo"])
    assert list(starts) == ["ppo"]
    (start,) = starts["ppo"]
    assert start.models == ("rl-ppo-from40-s0", "rl-ppo-from40-s1")
    assert start.after == pytest.approx(0.38)


# --- the paper's own numbers -------------------------------------------------------------------------


def stage_table(peak, end, after, peak_step, end_step, n=234):
    """A paper's stage table as the workflow's tables: SFT peak and end, and PPO from the end (rates only)."""
    return ClaimInputs(curve=curve({peak_step: peak, end_step: end}, n), rl=rl({end_step: (end, after)}))


def test_paper_stage_table():
    """The paper's OOD stage tables (234 episodes each): its Llama numbers carry the peak and the recovery
    from the RL start, its Qwen drop (19.67% -> 17.09%) is within noise."""
    llama = claims.evaluate_claims(stage_table(0.1752, 0.0897, 0.1624, 130, 1100), SETTINGS)
    assert verdict_of(llama, "F1.peak") == SUPPORTED  # 41 vs 21 of 234, one-sided p ≈ 0.003
    assert verdict_of(llama, "F1.rl_raises.ppo") == SUPPORTED  # 21 -> 38 of 234
    peak_check = next(c for c in llama[0].checks if c.id == "F1.peak")
    assert peak_check.numbers["comparison"]["p_greater"] == pytest.approx(0.0032, abs=3e-4)
    assert "biased upwards" in " ".join(peak_check.evidence)  # rates only: no selection half
    qwen = claims.evaluate_claims(stage_table(0.1967, 0.1709, 0.1966, 140, 800), SETTINGS)
    assert verdict_of(qwen, "F1.peak") == INCONCLUSIVE
    detectable = next(c for c in qwen[0].checks if c.id == "F1.peak").numbers["comparison"]["detectable"]
    assert 0.08 < detectable < 0.12  # 234 episodes detect a drop of about 10 points, not 2.6


# --- per-episode outcomes: paired tests and the selection half ----------------------------------------


def outcomes(label, success, uids=None):
    success = np.asarray(success, dtype=float)
    uids = tuple(uids or (f"ood-{i:05d}" for i in range(len(success))))
    return Outcomes(label, f"eval/{label}/ood/samples.jsonl", uids, success)


def paired_inputs(rng, rates, n, rl_runs=None):
    """Curve rows and per-episode outcomes: each checkpoint solves the episodes whose difficulty lies
    below its rate (so a better checkpoint solves a superset: strongly paired)."""
    difficulty = rng.random(n)
    models = {f"sft-{step}": outcomes(f"sft-{step}", difficulty < rate) for step, rate in rates.items()}
    rows = curve(rates, n)
    for row in rows:
        if row["split"] == "ood":
            row["success"] = str(models[f"sft-{row['step']}"].rate)
    rl_rows = []
    for step, after in (rl_runs or {}).items():
        models[f"rl-ppo-from{step}-s0"] = outcomes(f"rl-ppo-from{step}-s0", difficulty < after)
        rl_rows += rl({step: (models[f"sft-{step}"].rate, models[f"rl-ppo-from{step}-s0"].rate)})
    return ClaimInputs(curve=rows, rl=rl_rows, outcomes=models)


def test_paired_tests_find_what_unpaired_intervals_miss():
    """A 6-point drop on 400 episodes where the later checkpoint fails a subset of the peak's episodes:
    the paired test carries it; Wilson intervals of the two rates overlap."""
    inputs = paired_inputs(np.random.default_rng(3), {10: 0.30, 20: 0.24}, 400)
    findings = claims.evaluate_claims(inputs, SETTINGS)
    check = next(c for c in findings[0].checks if c.id == "F1.peak")
    comparison = check.numbers["comparison"]
    assert comparison["paired"] and comparison["discordant"][1] == 0  # measured on the report half only
    assert check.verdict == SUPPORTED
    half = comparison["n"]
    peak, end = Rate.of(comparison["rate_b"], half), Rate.of(comparison["rate_a"], half)
    assert peak.ci[0] < end.ci[1]  # the old rule (non-overlapping Wilson intervals) would not have seen it


def test_rl_recovery_is_paired_and_measured_on_the_report_half():
    inputs = paired_inputs(np.random.default_rng(4), {10: 0.40, 20: 0.10}, 600, rl_runs={20: 0.35})
    findings = claims.evaluate_claims(inputs, SETTINGS)
    assert verdict_of(findings, "F1.rl_raises.ppo") == SUPPORTED
    assert verdict_of(findings, "F1.rl_most.ppo") == SUPPORTED
    most = next(c for c in findings[0].checks if c.id == "F1.rl_most.ppo")
    (start,) = most.numbers["starts"]
    assert start["recovery"]["method"] == "paired bootstrap over episodes"
    assert start["loss"]["n"] == 300 and start["raised"]["n"] == 600  # report half vs all episodes


def test_the_peak_is_chosen_on_the_selection_half_against_the_winners_curse():
    """Ten checkpoints of the same true OOD rate: choosing the best and measuring it on the same episodes
    finds a 'peak' far more often than α; choosing it on one half and testing on the other does not."""
    rng = np.random.default_rng(5)
    naive = selected = 0
    trials = 200
    settings = ClaimSettings(bootstrap_draws=200, seed=0)
    for _ in range(trials):
        n = 300
        models = [outcomes(f"sft-{10 * (i + 1)}", rng.random(n) < 0.3) for i in range(10)]
        best = max(models[:-1], key=lambda m: m.rate)
        naive += claims.stats.compare_paired(models[-1], best, 200, 0).p_greater < 0.05
        points = [claims.Point(10 * (i + 1), Rate(int(m.k), n)) for i, m in enumerate(models)]
        evidence = claims.Evidence(ClaimInputs(curve=[], outcomes={m.label: m for m in models}), settings)
        check, _ = claims.check_peak(points, None, evidence)
        selected += check.verdict == SUPPORTED
    assert naive / trials > 0.15
    assert selected / trials < 0.1


def test_episodes_that_do_not_match_cannot_be_paired():
    inputs = paired_inputs(np.random.default_rng(6), {10: 0.40, 20: 0.10}, 100)
    other = inputs.outcomes["sft-20"]
    for changed, detail in ((outcomes("sft-20", other.success[:-1]), "49 episodes against 50"),
                            (outcomes("sft-20", other.success, [f"id-{i}" for i in range(100)]), "'id-1'")):
        inputs.outcomes["sft-20"] = changed
        with pytest.raises(PairingError, match="do not match") as error:
            claims.evaluate_claims(inputs, SETTINGS)
        message = str(error.value)
        assert "eval/sft-10/ood/samples.jsonl" in message and "eval/sft-20/ood/samples.jsonl" in message
        assert detail in message
    del inputs.outcomes["sft-20"]
    with pytest.raises(ValueError, match="no per-episode OOD outcomes .* for sft-20"):
        claims.evaluate_claims(inputs, SETTINGS)


# --- F2 --------------------------------------------------------------------------------------------


def spectrum(drifts, proj, top=20.0, bottom=20.0, middle=10.0, k_fraction=0.2):
    """A tidy spectral pair table, one matrix per drift value; top/middle/bottom: subspace angles (degrees)."""
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
            add(f"subspace_angle_{side}_top_deg", top + 10 * jitter)
            add(f"subspace_angle_{side}_middle_deg", middle)
            add(f"subspace_angle_{side}_bottom_deg", bottom + 10 * jitter)
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
    verdicts, _ = f2_verdicts(spectrum([0.004] * 20, proj=0.5, top=2.0, bottom=40.0, middle=20.0))
    assert verdicts["F2.edges.sft"] == NOT_SUPPORTED  # the top singular subspace turns less than the middle one


def test_f2_inconclusive_when_drift_straddles_the_threshold_or_is_not_measured():
    drifts = [0.002] * 10 + [0.03] * 10  # the median over matrices sits on either side of 1%
    verdicts, _ = f2_verdicts(spectrum(drifts, proj=0.5))
    assert verdicts["F2.drift_vs_rotation.sft"] == INCONCLUSIVE
    findings = claims.evaluate_claims(ClaimInputs(curve=curve(PEAKED, 300)), SETTINGS)
    assert findings[1].verdict == INCONCLUSIVE and "no spectral tables" in findings[1].checks[0].reason


def test_f2_names_a_missing_k_fraction_or_subspace_angles():
    with pytest.raises(ValueError, match="no k fraction 0.2"):
        f2_verdicts(spectrum([0.004] * 5, proj=0.5, k_fraction=0.5))
    table = spectrum([0.004] * 8, proj=0.5)
    with pytest.raises(ValueError, match="no subspace_angle_.*_middle_deg rows"):
        f2_verdicts(table[~table["metric"].str.contains("middle")])


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


def test_combine_and_verdict_rules():
    assert claims.combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert claims.combine([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert claims.combine([SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE]) == NOT_SUPPORTED
    assert claims.combine([]) == INCONCLUSIVE
    assert claims.p_verdict(0.01, 0.99) == SUPPORTED and claims.p_verdict(0.99, 0.01) == NOT_SUPPORTED
    assert claims.p_verdict(0.2, 0.8) == INCONCLUSIVE and claims.p_verdict(None, None) == INCONCLUSIVE


def test_rates():
    rate = Rate.of(0.0533333, 300)
    assert (rate.k, rate.n) == (16, 300)
    assert rate.ci == pytest.approx((0.03309162538404202, 0.08486983874726851))  # as results/tiny's table
    with pytest.raises(ValueError, match="n > 0"):
        Rate.of(0.5, 0)


def test_claims_are_written_as_markdown_and_json(tmp_path):
    inputs = ClaimInputs(curve=curve(PEAKED, 5000), rl=rl({40: (0.30, 0.39), 160: (0.10, 0.11)}))
    findings = claims.evaluate_claims(inputs, SETTINGS)
    claims.write_claims(findings, tmp_path / "c.md", tmp_path / "c.json", SETTINGS, {"seed": 1}, title="Claims: test")
    text = (tmp_path / "c.md").read_text()
    assert text.startswith("# Claims: test") and "## F1: " in text and "### F1.peak: supported" in text
    assert text.count("*Detectable:*") == sum(len(f.checks) for f in findings)
    data = json.loads((tmp_path / "c.json").read_text())
    assert list(data["verdicts"]) == ["F1", "F2", "F3", "F4"]
    assert data["provenance"] == {"seed": 1} and data["settings"]["bootstrap_draws"] == 4000
    assert data == json.loads(json.dumps(data, allow_nan=False))  # no NaN in the file
    again = claims.evaluate_claims(inputs, SETTINGS)
    assert claims.to_json(again, SETTINGS) == claims.to_json(findings, SETTINGS)  # deterministic
    with pytest.raises(ValueError, match="curve is empty"):
        claims.evaluate_claims(ClaimInputs(curve=[]), SETTINGS)


def test_setting_lines_show_whether_the_base_plays_the_game_and_rl_rule_following():
    curve = [
        {"step": "0", "split": "ood", "n": "300", "success": "0.2", "first_attempt_success": "0.15",
         "success_after_failure": "0.25", "rule_following_first": "0.97"},
        {"step": "100", "split": "ood", "n": "300", "success": "0.05", "first_attempt_success": "0.05",
         "success_after_failure": "0.0", "rule_following_first": "0.5"},
    ]
    rl = [
        {"start_step": "100", "algorithm": "ppo", "seed": "0", "split": "ood",
         "rule_following_first_before": "0.5", "rule_following_first_after": "0.9"},
        {"start_step": "100", "algorithm": "ppo", "seed": "0", "split": "id",
         "rule_following_first_before": "1.0", "rule_following_first_after": "1.0"},
    ]
    text = "\n".join(claims.setting_lines(claims.ClaimInputs(curve=curve, rl=rl)))
    assert "| ood | 20.0% [15.9, 24.9] (n = 300) | 15.0% | 15 of 60 (25%) | 0.97 |" in text
    assert "| 100 | ppo | 0 | 0.50 | 0.90 |" in text
    assert "| id |" not in text.split("before → after RL")[1]  # the RL table is of OOD answers only
    assert claims.setting_lines(claims.ClaimInputs(curve=curve[1:])) == []
