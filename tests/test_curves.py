"""RL-from-SFT table: recovery against the OOD peak on synthetic metrics with hand-computed answers."""

import csv

import pytest
from conftest import write_ood_samples

from sftrl import io
from sftrl.curves import RL_COLUMNS, curve_rows, plot_rl_from_sft, rl_rows
from sftrl.outputs import write_rows_csv
from sftrl.peak import ood_peak
from sftrl.stats import recovery_pct

RATES = {  # model -> split -> success rate
    "base": {"id": 0.10, "id_unseen": 0.10, "ood": 0.10},
    "sft-10": {"id": 0.20, "id_unseen": 0.15, "ood": 0.20},
    "sft-50": {"id": 0.40, "id_unseen": 0.30, "ood": 0.12},
    "sft-100": {"id": 0.60, "id_unseen": 0.35, "ood": 0.04},
    "rl-ppo-from50-s0": {"id": 0.45, "id_unseen": 0.33, "ood": 0.18},
    "rl-ppo-from100-s0": {"id": 0.62, "id_unseen": 0.35, "ood": 0.05},
}


@pytest.fixture
def eval_root(tmp_path):
    for model, splits in RATES.items():
        for split, rate in splits.items():
            success = {"k": round(rate * 100), "n": 100, "rate": rate, "ci_low": rate - 0.05, "ci_high": rate + 0.05}
            metrics = {
                "split": split,
                "success": success,
                "first_attempt_success": success,
                "success_after_failure": {"rate": 0.0},
                "mean_reward_per_episode": 0.0,
                "rule_following": {"rate": 1.0},
                "rule_following_first": {"rate": 1.0 - rate},
                "format_error_rate": 0.0,
            }
            io.write_json(tmp_path / model / split / "metrics.json", metrics)
            if split == "ood":
                write_ood_samples(tmp_path / model / split / "samples.jsonl", rate)
    return tmp_path


def test_recovery_definition():
    assert recovery_pct(after=0.16, target=0.08, source=0.18) == pytest.approx(80.0)
    assert recovery_pct(after=0.1, target=0.2, source=0.2) is None


def test_peak_is_best_ood_checkpoint(eval_root):
    assert ood_peak(eval_root, ["sft-100", "sft-50", "sft-10"]) == "sft-10"


def test_rows_hold_before_after_and_recovery(eval_root, tmp_path):
    rows = rl_rows(eval_root, ["sft-10", "sft-50", "sft-100"], ["rl-ppo-from100-s0", "rl-ppo-from50-s0"])
    assert len(rows) == 6
    ood50 = next(r for r in rows if r["start_step"] == 50 and r["split"] == "ood")
    assert (ood50["before"], ood50["after"], ood50["peak_step"], ood50["peak"]) == (0.12, 0.18, 10, 0.20)
    assert ood50["recovery_pct"] == pytest.approx(100 * (0.18 - 0.12) / (0.20 - 0.12))
    # rule following on first attempts, of the start checkpoint and of the RL model
    assert (ood50["rule_following_first_before"], ood50["rule_following_first_after"]) == pytest.approx((0.88, 0.82))
    ood100 = next(r for r in rows if r["start_step"] == 100 and r["split"] == "ood")
    assert ood100["recovery_pct"] == pytest.approx(100 * (0.05 - 0.04) / (0.20 - 0.04))

    write_rows_csv(rows, RL_COLUMNS, tmp_path / "t.csv")
    with open(tmp_path / "t.csv") as handle:
        assert [r["algorithm"] for r in csv.DictReader(handle)] == ["ppo"] * 6
    curve = curve_rows({"ood": [(0, eval_root / "base/ood/metrics.json"), (50, eval_root / "sft-50/ood/metrics.json")]})
    written = plot_rl_from_sft(curve, rows, tmp_path / "rl.png")
    assert all(p.stat().st_size > 5000 for p in written)


def test_bad_names_are_errors(eval_root):
    with pytest.raises(ValueError, match="not an RL model name"):
        rl_rows(eval_root, ["sft-10"], ["ppo-50"])
    with pytest.raises(ValueError, match="sft-70, which is not among"):
        rl_rows(eval_root, ["sft-10", "sft-50"], ["rl-ppo-from70-s0"])
