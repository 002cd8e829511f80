"""The results document: every number read from the run's tables, the figures copied beside it."""

import csv
import json
import subprocess
import sys

from conftest import ROOT

from sftrl import results_doc


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def make_run(root):
    curve = [
        {
            "step": step,
            "split": split,
            "n": 200,
            "success": rate,
            "ci_low": rate - 0.05,
            "ci_high": rate + 0.05,
            "first_attempt_any_layout": 0.3 if split == "ood" and step == 0 else 0.1,
        }
        for step, rates in ((0, (0.0, 0.0, 0.0)), (50, (0.6, 0.4, 0.2)))
        for split, rate in zip(("id", "id_unseen", "ood"), rates, strict=True)
    ]
    write_csv(root / "tables" / "sft_curve.csv", curve)
    rl = [
        {"start_step": 50, "algorithm": "ppo", "seed": seed, "split": split, "before": 0.2, "after": after}
        for seed, after in ((1, 0.07), (0, 0.087))
        for split in ("id", "ood")
    ]
    write_csv(root / "tables" / "rl_from_sft.csv", rl)
    check = {
        "id": "F1.peak",
        "verdict": "supported",
        "effect": "+11.3 points [+4.0, +18.7]",
        "p": 0.00228,
        "detectable": "a drop of 9.5 points",
    }
    (root / "report").mkdir()
    claims = {
        "findings": [{"id": "F1", "verdict": "supported", "checks": [check]}],
        "provenance": {"git_commit": "abc123def456"},
    }
    (root / "report" / "claims.json").write_text(json.dumps(claims))
    (root / "figures").mkdir()
    (root / "figures" / "sft_curve.png").write_bytes(b"\x89PNG fake")


def test_the_document_is_the_runs_tables(tmp_path):
    run = tmp_path / "results" / "tiny"
    make_run(run)
    out = tmp_path / "docs" / "run.md"
    results_doc.write(run, out, tmp_path / "docs" / "figures")
    text = out.read_text()
    assert "(commit abc123def4)" in text
    assert "| base | 0.0% [-5.0, 5.0] | 0.0% [-5.0, 5.0] | 0.0% [-5.0, 5.0] | 30.0% |" in text
    assert "| 50 | 60.0% [55.0, 65.0] | 40.0% [35.0, 45.0] | 20.0% [15.0, 25.0] | 10.0% |" in text
    assert "| 50 | 20.0% | 8.7 / 7.0 (mean 7.8) |" in text  # seeds in seed order, whatever the table's order
    assert "| F1.peak | supported | +11.3 points [+4.0, +18.7] | 0.00228 | a drop of 9.5 points |" in text
    assert "![success over the SFT ladder](figures/sft_curve.png)" in text
    assert (tmp_path / "docs" / "figures" / "sft_curve.png").read_bytes() == b"\x89PNG fake"
    assert "Restoration" not in text  # the run made no edits


def test_the_script_refuses_a_run_that_has_not_ended(tmp_path):
    run = tmp_path / "results" / "tiny"
    make_run(run)
    (run / "report" / "claims.json").unlink()
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "results_doc.py"),
            "--results",
            str(run),
            "--out",
            str(tmp_path / "d.md"),
            "--figures",
            str(tmp_path / "figures"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "claims.json is missing: run the workflow to its end first" in result.stderr
    assert not (tmp_path / "d.md").exists()
