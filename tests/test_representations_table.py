"""The representation table from pair files: values, the RL runs' recovery Δ, the figure."""

import numpy as np
import pandas as pd
import pytest

from sftrl.representations import table
from sftrl.representations.table import PairFeatures

ROLES = {"roles": {"sft_peak": "sft-5", "sft_end": "sft-600"}, "rl_from_end": ["rl-ppo-from600-s0"]}


def pair_file(path, b, spread, seed, n=60, uids=None):
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((n, 8)).astype(np.float32)
    noise = np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32)
    data = {
        "uids": np.array(uids or [f"u{i}" for i in range(n)]),
        "a": reference,
        "b": reference + spread * noise,
        "js": spread / 10 * np.random.default_rng(seed).uniform(0.5, 1.5, n),
        "topk": 1 - spread / 10 * np.random.default_rng(seed).uniform(0.5, 1.5, n),
    }
    table.write_pair(path, PairFeatures("sft-5", b, {"ood": data}, {"note": "test"}))
    return path


def test_pair_files_round_trip(tmp_path):
    path = pair_file(tmp_path / "p.npz", "sft-600", 1.0, seed=1)
    pair = table.read_pair(path)
    assert (pair.a, pair.b, list(pair.splits)) == ("sft-5", "sft-600", ["ood"])
    assert pair.meta["note"] == "test" and pair.splits["ood"]["a"].shape == (60, 8)


def test_an_rl_run_closer_to_the_peak_has_a_positive_delta(tmp_path):
    pairs = [
        table.read_pair(pair_file(tmp_path / "end.npz", "sft-600", 1.0, seed=1)),
        table.read_pair(pair_file(tmp_path / "rl.npz", "rl-ppo-from600-s0", 0.3, seed=2)),
    ]
    rows = table.summary_rows(pairs, ROLES, draws=200, seed=0)
    frame = pd.DataFrame(rows)
    assert list(frame.model.unique()) == ["sft-600", "rl-ppo-from600-s0"]  # sft_end first
    end, rl = frame[frame.role == "sft_end"], frame[frame.role == "rl_from_end"]
    assert end.delta.isna().all() and len(rl) == len(end) == 6
    assert (rl.delta_low > 0).all(), rl[["metric", "delta", "delta_low"]]
    assert (rl.ci_low < rl.ci_high).all() and (rl.delta_low < rl.delta_high).all()
    per_prompt = rl.set_index("metric").win_rate
    assert per_prompt["cosine"] > 0.8 and per_prompt["js"] > 0.8 and np.isnan(per_prompt["cka"])
    table.write_summary(rows, tmp_path / "representations.csv")
    assert pd.read_csv(tmp_path / "representations.csv").shape == (12, len(table.COLUMNS))
    written = table.plot_summary(rows, tmp_path / "representations.png", reference="sft-5")
    assert all(p.stat().st_size > 0 for p in written)


def test_comparisons_over_different_prompts_are_refused(tmp_path):
    pairs = [
        table.read_pair(pair_file(tmp_path / "end.npz", "sft-600", 1.0, seed=1)),
        table.read_pair(
            pair_file(tmp_path / "rl.npz", "rl-ppo-from600-s0", 0.3, seed=2, uids=[f"v{i}" for i in range(60)])
        ),
    ]
    with pytest.raises(ValueError, match="different prompts"):
        table.summary_rows(pairs, ROLES, draws=100, seed=0)
