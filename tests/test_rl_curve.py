"""The RL curve over updates: its rows from each policy's metrics, and the seeds' band."""

import json

import numpy as np
import pytest

from sftrl import rl_curve
from sftrl.names import EVAL_SPLITS, metrics_path


def write_metrics(root, model, split, rate, n=300):
    path = metrics_path(root, model, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"success": {"rate": rate, "n": n, "ci_low": rate - 0.01, "ci_high": rate + 0.01}}))


def test_rows_run_from_the_start_through_the_exports_to_the_final_policy(tmp_path):
    runs = [f"rl-ppo-from50-s{seed}" for seed in range(3)]
    for split in EVAL_SPLITS:
        write_metrics(tmp_path, "sft-50", split, 0.5)
        for seed, run in enumerate(runs):
            write_metrics(tmp_path, f"{run}-u5", split, 0.4 + 0.01 * seed)
            write_metrics(tmp_path, run, split, 0.6 + 0.01 * seed)
    rows = rl_curve.rl_curve_rows(tmp_path, runs, [5, 10], {"ppo": 10})  # update 10 is the run's end
    ood = [(r["seed"], r["update"], r["model"], r["success"]) for r in rows if r["split"] == "ood"]
    assert ood[:3] == [(0, 0, "sft-50", 0.5), (0, 5, "rl-ppo-from50-s0-u5", 0.4), (0, 10, "rl-ppo-from50-s0", 0.6)]
    assert len(rows) == 3 * 3 * len(EVAL_SPLITS)
    written = rl_curve.plot_rl_curve(rows, tmp_path / "curve.png", analysed=5)
    assert all(path.stat().st_size > 10_000 for path in written)
    with pytest.raises(FileNotFoundError, match="rl-ppo-from50-s3"):
        rl_curve.rl_curve_rows(tmp_path, ["rl-ppo-from50-s3"], [], {"ppo": 10})


def test_the_band_spans_the_seeds_at_the_updates_they_share():
    seeds = [[(0, 10.0), (5, 4.0), (10, 6.0)], [(0, 10.0), (5, 8.0), (10, 2.0)], [(0, 10.0), (10, 7.0)]]
    updates, low, mean, high = rl_curve.seed_band(seeds)
    assert updates == [0, 10]  # the third seed has no update-5 policy
    assert low.tolist() == [10.0, 2.0] and high.tolist() == [10.0, 7.0] and mean == pytest.approx(np.array([10.0, 5.0]))
