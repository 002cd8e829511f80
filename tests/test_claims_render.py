"""claims.md and claims.json, and the table of what the findings rest on."""

import json

import pytest
from test_claims_inputs import PEAKED, SETTINGS, curve, rl

from sftrl.claims import ClaimInputs, evaluate_claims, render


def test_claims_are_written_as_markdown_and_json(tmp_path):
    inputs = ClaimInputs(curve=curve(PEAKED, 5000), rl=rl({40: (0.30, 0.39), 160: (0.10, 0.11)}))
    findings = evaluate_claims(inputs, SETTINGS)
    render.write_claims(findings, tmp_path / "c.md", tmp_path / "c.json", SETTINGS, {"seed": 1}, title="Claims: test")
    text = (tmp_path / "c.md").read_text()
    assert text.startswith("# Claims: test") and "## F1: " in text and "### F1.peak: supported" in text
    assert text.count("*Detectable:*") == sum(len(f.checks) for f in findings)
    data = json.loads((tmp_path / "c.json").read_text())
    assert list(data["verdicts"]) == ["F1", "F2", "F3", "F4"]
    assert data["provenance"] == {"seed": 1} and data["settings"]["bootstrap_draws"] == 4000
    assert data == json.loads(json.dumps(data, allow_nan=False))  # no NaN in the file
    again = evaluate_claims(inputs, SETTINGS)
    assert render.to_json(again, SETTINGS) == render.to_json(findings, SETTINGS)  # deterministic
    with pytest.raises(ValueError, match="curve is empty"):
        evaluate_claims(ClaimInputs(curve=[]), SETTINGS)


def test_setting_lines_show_whether_the_base_plays_the_game_and_rl_rule_following():
    curve = [
        {
            "step": "0",
            "split": "ood",
            "n": "300",
            "success": "0.2",
            "first_attempt_success": "0.15",
            "first_attempt_any_layout": "0.3",
            "success_after_failure": "0.25",
            "rule_following_first": "0.97",
        },
        {
            "step": "100",
            "split": "ood",
            "n": "300",
            "success": "0.05",
            "first_attempt_success": "0.05",
            "success_after_failure": "0.0",
            "rule_following_first": "0.5",
        },
    ]
    rl = [
        {
            "start_step": "100",
            "algorithm": "ppo",
            "seed": "0",
            "split": "ood",
            "rule_following_first_before": "0.5",
            "rule_following_first_after": "0.9",
        },
        {
            "start_step": "100",
            "algorithm": "ppo",
            "seed": "0",
            "split": "id",
            "rule_following_first_before": "1.0",
            "rule_following_first_after": "1.0",
        },
    ]
    text = "\n".join(render.setting_lines(ClaimInputs(curve=curve, rl=rl)))
    assert "| ood | 20.0% [15.9, 24.9] (n = 300) | 15.0% | 30.0% | 15 of 60 (25%) | 0.97 |" in text
    assert "| 100 | ppo | 0 | 0.50 | 0.90 |" in text
    assert "| id |" not in text.split("before → after RL")[1]  # the RL table is of OOD answers only
    assert render.setting_lines(ClaimInputs(curve=curve[1:])) == []


def test_the_ood_peak_of_both_rules_is_shown_with_the_one_playing_sft_peak_first():
    from sftrl.claims.render import peak_lines

    roles = {
        "peak_rule": "all_episodes",
        "peaks": {"all_episodes": {"model": "sft-100", "step": 100}, "selection_half": {"model": "sft-50", "step": 50}},
        "ood": [
            {"model": "sft-50", "all_rate": 0.15, "selection_rate": 0.20, "report_rate": 0.10},
            {"model": "sft-100", "all_rate": 0.30, "selection_rate": 0.20, "report_rate": 0.40},
        ],
    }
    lines = peak_lines(roles)
    assert (
        lines[4] == "| best on all episodes, the authors' argmax (plays sft_peak) | sft-100 | 30.0% | 20.0% | 40.0% |"
    )
    assert lines[5] == "| best on the selection half, this workflow's rule | sft-50 | 15.0% | 20.0% | 10.0% |"
    assert any("biased upwards by the choice" in line for line in lines)
    assert peak_lines({"roles": {}}) == []  # roles.json of an older run


def test_one_table_holds_every_check_and_shared_lines_are_listed_once():
    inputs = ClaimInputs(curve=curve(PEAKED, 5000), rl=rl({40: (0.30, 0.39), 160: (0.10, 0.11)}))
    findings = evaluate_claims(inputs, SETTINGS)
    text = render.to_markdown(findings)
    table = text.split("| check | verdict |", 1)[1].split("\n\n", 1)[0]
    checks = [c for f in findings for c in f.checks]
    assert all(f"| {c.id} | {c.verdict} |" in table for c in checks)
    peak = next(c for c in checks if c.id == "F1.peak")
    assert peak.effect.startswith("+") and " points [" in peak.effect and peak.p is not None and peak.p < 0.05
    assert f"| F1.peak | supported | {peak.effect} | {peak.p:.3g} |" in table
    # a line two checks share is written under the first and pointed to from the second
    shared = {line for c in checks for line in c.evidence if sum(line in d.evidence for d in checks) > 1}
    assert shared, "the fixture's checks share lines (the RL starts, the restoration gap)"
    body = text.split("\n## F1", 1)[1]
    assert all(body.count(f"- {line}\n") == 1 for line in shared)
    assert "(not repeated)" in body
