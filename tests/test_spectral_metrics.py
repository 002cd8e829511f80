"""Spectral metrics on matrices with known answers, the tidy table, the ΔW comparison and the summaries."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from spectral_pairs import (  # noqa: F401 - factors and rotated_pair are fixtures
    DOWN,
    FRACTIONS,
    THETA,
    Q,
    compose,
    factors,
    orthonormal,
    rotated_pair,
    three_summary_rows,
    value,
    write_model,
)

from sftrl.spectral import metrics
from sftrl.spectral.svd import SvdCache, thin_svd
from sftrl.spectral.weights import WeightsError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_known_principal_angles_and_rotation(rotated_pair):
    table = metrics.analyse_pair(*rotated_pair, k_fractions=FRACTIONS)
    # top-1 left subspace of q turned by THETA; the top-2 span is unchanged.
    assert value(table, Q, "angle_left_mean_deg", 1) == pytest.approx(20, abs=1e-3)
    assert value(table, Q, "angle_left_max_deg", 2) == pytest.approx(0, abs=0.05)
    assert value(table, Q, "proj_dist_left", 1) == pytest.approx(math.sin(THETA), abs=1e-5)
    assert value(table, Q, "angle_right_max_deg", 8) == pytest.approx(0, abs=0.05)
    assert value(table, DOWN, "angle_right_mean_deg", 1) == pytest.approx(20, abs=1e-3)
    assert value(table, DOWN, "angle_left_max_deg", 1) == pytest.approx(0, abs=0.05)
    assert value(table, Q, "align_left", 0) == pytest.approx(math.cos(THETA), abs=1e-5)
    assert value(table, Q, "align_left", 2) == pytest.approx(1, abs=1e-5)
    # Singular values do not move; the change is all rotation inside A's basis.
    assert np.nanmax(table.loc[table["metric"] == "drift", "value"]) < 1e-5
    for name in (Q, DOWN):
        assert value(table, name, "energy_rotation_share") > 0.5
        assert value(table, name, "energy_outside_share") == pytest.approx(0, abs=1e-5)


def test_principal_angles_of_planes_at_known_angle():
    basis = orthonormal(6, 7)[:, :3]
    turned = torch.cat([basis[:, :2], math.cos(0.3) * basis[:, 2:] + math.sin(0.3) * orthonormal(6, 7)[:, 3:4]], 1)
    angles = metrics.principal_angles((basis.T @ turned).float())
    assert angles.numpy() == pytest.approx([0, 0, 0.3], abs=1e-3)


def test_magnitude_only_change_has_zero_rotation_share(tmp_path, factors):
    a = {name: compose(u[:, :8], s, v[:, :8]) for name, (u, s, v) in factors.items()}
    b = {name: compose(u[:, :8], s * 1.01, v[:, :8]) for name, (u, s, v) in factors.items()}
    table = metrics.analyse_pair(write_model(tmp_path / "a", a), write_model(tmp_path / "b", b))
    drift = table.loc[table["metric"] == "drift", "value"]
    assert drift.to_numpy() == pytest.approx(0.01, abs=1e-5)
    for name in (Q, DOWN):
        assert value(table, name, "energy_rotation_share") == pytest.approx(0, abs=1e-6)
        assert value(table, name, "energy_diag_share") == pytest.approx(1, abs=1e-6)
        assert value(table, name, "stable_rank_b") == pytest.approx(value(table, name, "stable_rank_a"), rel=1e-5)
        assert value(table, name, "spectral_norm_b") == pytest.approx(8.08, rel=1e-5)


def test_identical_models_and_schema(rotated_pair, tmp_path):
    a, _ = rotated_pair
    table = metrics.analyse_pair(a, a)
    assert list(table.columns) == metrics.COLUMNS
    assert table["layer"].dtype == np.int64 and table["index_or_k"].dtype == np.int64
    assert table["value"].dtype == np.float64
    assert set(table["module"]) == {"q_proj", "down_proj"} and set(table["layer"]) == {0, 1}
    assert (table.loc[table["metric"] == "drift", "value"] == 0).all()
    angles = table.loc[table["metric"].str.startswith("angle_"), "value"]
    assert angles.max() < 0.1  # degrees; arccos near 1 in float32
    assert math.isnan(value(table, Q, "energy_rotation_share"))  # ΔW = 0: no split to make
    summary = metrics.summarize(table)
    assert summary["drift_median"] == 0 and summary["align_left_top"] == pytest.approx(1, abs=1e-5)
    assert set(summary) >= {"angle_left_deg@0.2", "angle_right_deg@1", "align_right_bottom", "matrices"}

    out = tmp_path / "spectrum" / "a__a.parquet"
    metrics.write_table(table, out, {"name_a": "a"})
    pd.testing.assert_frame_equal(pd.read_parquet(out), table)
    assert metrics.read_meta(out) == {"name_a": "a"}
    assert list(out.parent.iterdir()) == [out]


def test_cache_shares_svds_between_runs(rotated_pair, tmp_path):
    first = metrics.analyse_pair(*rotated_pair, cache=SvdCache(tmp_path, device="cpu"))
    cache = SvdCache(tmp_path, device="cpu")
    second = metrics.analyse_pair(*rotated_pair, cache=cache)
    assert cache.computed == 0 and cache.hits == 4
    pd.testing.assert_frame_equal(first, second)


def test_bad_inputs(rotated_pair, tmp_path):
    a, _ = rotated_pair
    with pytest.raises(WeightsError, match="'nothing' matches no tensor"):
        metrics.analyse_pair(a, a, patterns=["nothing"])
    other = write_model(tmp_path / "other", {Q: torch.zeros(20, 9), DOWN: torch.zeros(8, 24)})
    with pytest.raises(WeightsError, match=r"q_proj.weight' has shape"):
        metrics.analyse_pair(a, other)
    with pytest.raises(ValueError, match=r"k fraction 1.5"):
        metrics.analyse_pair(a, a, k_fractions=[1.5])


def test_update_comparison(tmp_path, factors):
    torch.manual_seed(0)
    base = {Q: torch.randn(20, 8), DOWN: torch.randn(8, 24)}
    step = {name: 0.01 * torch.randn_like(w) for name, w in base.items()}
    mid = {name: base[name] + step[name] for name in base}
    same_way = {name: mid[name] + 2 * step[name] for name in base}
    back = {name: mid[name] - step[name] for name in base}
    dirs = [write_model(tmp_path / n, t) for n, t in (("base", base), ("mid", mid), ("same", same_way), ("back", back))]
    table = metrics.compare_updates(*dirs[:3], k_fractions=(0.25, 1.0))
    assert list(table.columns) == metrics.COLUMNS
    assert value(table, Q, "update_cosine") == pytest.approx(1, abs=1e-3)
    assert value(table, Q, "update_norm_2") == pytest.approx(2 * value(table, Q, "update_norm_1"), rel=1e-3)
    assert value(table, DOWN, "angle_right_max_deg", 2) < 1
    assert metrics.summarize(table)["update_cosine"] == pytest.approx(1, abs=1e-3)
    reverse = metrics.compare_updates(dirs[0], dirs[1], dirs[3])
    assert value(reverse, DOWN, "update_cosine") == pytest.approx(-1, abs=1e-3)


def test_summary_by_module(rotated_pair):
    table = metrics.analyse_pair(*rotated_pair, k_fractions=FRACTIONS)
    by_module = metrics.summary_by(table)
    assert list(by_module.index) == ["down_proj", "q_proj"]


def test_summary_of_many_pairs(rotated_pair, tmp_path):
    a, b = rotated_pair
    rows = three_summary_rows(a, b)
    summary = metrics.summary_frame(rows)
    assert list(summary.columns[:4]) == ["kind", "a", "b", "matrices"]
    assert summary.loc[0, "drift_median"] == pytest.approx(0, abs=1e-6)
    assert summary.loc[0, "drift_median_q_proj"] == pytest.approx(0, abs=1e-6)
    # q's u_1 turns by THETA within span(u_1, u_2) and down's left vectors stay: the mean over both
    # matrices of the top-1 angle is THETA / 2, and the whole subspaces do not turn
    assert summary.loc[1, "angle_left_deg@0.125"] == pytest.approx(math.degrees(THETA) / 2, abs=0.05)
    assert summary.loc[1, "angle_left_deg@1"] == pytest.approx(0, abs=0.05)
    assert np.isnan(summary.loc[2, "drift_median"])  # an update table has no drift
    assert summary.loc[2, "update_cosine"] == pytest.approx(-1, abs=1e-4)

    metrics.write_summary(summary, tmp_path / "summary.csv")
    assert pd.read_csv(tmp_path / "summary.csv")["b"].tolist() == ["sft-10", "sft-20", "rl-ppo-from20-s0"]
    with pytest.raises(ValueError, match="unknown pair kind 'sft_to_rl'"):
        metrics.summary_row("sft_to_rl", "a", "b", metrics.analyse_pair(a, a, k_fractions=FRACTIONS))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(rotated_pair):
    cpu = metrics.analyse_pair(*rotated_pair, k_fractions=FRACTIONS, cache=SvdCache(device="cpu"))
    gpu = metrics.analyse_pair(*rotated_pair, k_fractions=FRACTIONS, cache=SvdCache(device="cuda"))
    pd.testing.assert_frame_equal(cpu.drop(columns="value"), gpu.drop(columns="value"))
    assert gpu["value"].to_numpy() == pytest.approx(cpu["value"].to_numpy(), abs=0.1, nan_ok=True)


def test_subspace_angles_of_the_top_middle_and_bottom_blocks():
    """A turns only its top left singular vector by 30° (towards a direction outside its column space):
    the top block's subspace angle is 30°, the middle and bottom blocks' 0°; the right side does not move."""
    generator = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(20, 20, generator=generator))
    vh, _ = torch.linalg.qr(torch.randn(10, 10, generator=generator))
    s = torch.linspace(10, 1, 10)
    u_a = q[:, :10]
    u_b = u_a.clone()
    theta = math.radians(30)
    u_b[:, 0] = math.cos(theta) * q[:, 0] + math.sin(theta) * q[:, 15]
    wa, wb = u_a @ torch.diag(s) @ vh, u_b @ torch.diag(s) @ vh
    rows = metrics.TidyRows()
    metrics.compare_matrices(rows, "model.layers.0.mlp.down_proj.weight", wa, wb, thin_svd(wa), thin_svd(wb), [1.0])
    table = rows.frame().set_index("metric")["value"]
    assert table["subspace_angle_left_top_deg"] == pytest.approx(30, abs=1e-3)
    for metric in ("left_middle", "left_bottom", "right_top", "right_middle", "right_bottom"):
        assert table[f"subspace_angle_{metric}_deg"] == pytest.approx(0, abs=0.2)  # float32 arccos near 1
