"""Spectral metrics on matrices with known answers, the tidy table, the ΔW comparison and the figures."""

import json
import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from sftrl import spectral
from sftrl.weights import SINGLE_FILE, SvdCache, WeightsError

Q = "model.layers.0.self_attn.q_proj.weight"
DOWN = "model.layers.1.mlp.down_proj.weight"
THETA = math.radians(20)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "spectrum.py"
SUMMARY_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "spectrum_summary.py"

pytestmark = pytest.mark.usefixtures("one_thread")


def orthonormal(n, seed):
    return torch.linalg.qr(
        torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )[0]


def compose(u, s, v):
    return ((u * s) @ v.T).float().contiguous()


def write_model(path, tensors):
    path.mkdir()
    save_file(tensors, path / SINGLE_FILE)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return path


def value(table, name, metric, index=-1):
    rows = table[(table["name"] == name) & (table["metric"] == metric) & (table["index_or_k"] == index)]
    assert len(rows) == 1, (name, metric, index)
    return float(rows["value"].iloc[0])


@pytest.fixture(scope="module")
def factors():
    """An 8-rank 20×8 "q" matrix and a 8×24 "down" matrix with distinct singular values."""
    s = torch.linspace(8, 1, 8, dtype=torch.float64)
    return {Q: (orthonormal(20, 0), s, orthonormal(8, 1)), DOWN: (orthonormal(8, 2), s, orthonormal(24, 3))}


def plane_rotation(n, i, j, theta):
    r = torch.eye(n, dtype=torch.float64)
    r[i, i] = r[j, j] = math.cos(theta)
    r[i, j], r[j, i] = -math.sin(theta), math.sin(theta)
    return r


@pytest.fixture(scope="module")
def rotated_pair(tmp_path_factory, factors):
    """B = A with u_1 rotated by THETA towards u_2 (q) and v_1 rotated towards v_2 (down)."""
    root = tmp_path_factory.mktemp("pair")
    a = {name: compose(u[:, :8], s, v[:, :8]) for name, (u, s, v) in factors.items()}
    (uq, sq, vq), (ud, sd, vd) = factors[Q], factors[DOWN]
    b = {
        Q: compose(uq[:, :8] @ plane_rotation(8, 0, 1, THETA), sq, vq),
        DOWN: compose(ud, sd, vd[:, :8] @ plane_rotation(8, 0, 1, THETA)),
    }
    return write_model(root / "a", a), write_model(root / "b", b)


FRACTIONS = (0.125, 0.25, 1.0)  # k = 1, 2, 8 of rank 8


def test_known_principal_angles_and_rotation(rotated_pair):
    table = spectral.analyse_pair(*rotated_pair, k_fractions=FRACTIONS)
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
    turned = torch.cat(
        [basis[:, :2], math.cos(0.3) * basis[:, 2:] + math.sin(0.3) * orthonormal(6, 7)[:, 3:4]], 1
    )
    angles = spectral.principal_angles((basis.T @ turned).float())
    assert angles.numpy() == pytest.approx([0, 0, 0.3], abs=1e-3)


def test_magnitude_only_change_has_zero_rotation_share(tmp_path, factors):
    a = {name: compose(u[:, :8], s, v[:, :8]) for name, (u, s, v) in factors.items()}
    b = {name: compose(u[:, :8], s * 1.01, v[:, :8]) for name, (u, s, v) in factors.items()}
    table = spectral.analyse_pair(write_model(tmp_path / "a", a), write_model(tmp_path / "b", b))
    drift = table.loc[table["metric"] == "drift", "value"]
    assert drift.to_numpy() == pytest.approx(0.01, abs=1e-5)
    for name in (Q, DOWN):
        assert value(table, name, "energy_rotation_share") == pytest.approx(0, abs=1e-6)
        assert value(table, name, "energy_diag_share") == pytest.approx(1, abs=1e-6)
        assert value(table, name, "stable_rank_b") == pytest.approx(
            value(table, name, "stable_rank_a"), rel=1e-5
        )
        assert value(table, name, "spectral_norm_b") == pytest.approx(8.08, rel=1e-5)


def test_identical_models_and_schema(rotated_pair, tmp_path):
    a, _ = rotated_pair
    table = spectral.analyse_pair(a, a)
    assert list(table.columns) == spectral.COLUMNS
    assert table["layer"].dtype == np.int64 and table["index_or_k"].dtype == np.int64
    assert table["value"].dtype == np.float64
    assert set(table["module"]) == {"q_proj", "down_proj"} and set(table["layer"]) == {0, 1}
    assert (table.loc[table["metric"] == "drift", "value"] == 0).all()
    angles = table.loc[table["metric"].str.startswith("angle_"), "value"]
    assert angles.max() < 0.1  # degrees; arccos near 1 in float32
    assert math.isnan(value(table, Q, "energy_rotation_share"))  # ΔW = 0: no split to make
    summary = spectral.summarize(table)
    assert summary["drift_median"] == 0 and summary["align_left_top"] == pytest.approx(1, abs=1e-5)
    assert set(summary) >= {"angle_left_deg@0.2", "angle_right_deg@1", "align_right_bottom", "matrices"}

    out = tmp_path / "spectrum" / "a__a.parquet"
    spectral.write_table(table, out, {"name_a": "a"})
    pd.testing.assert_frame_equal(pd.read_parquet(out), table)
    assert spectral.read_meta(out) == {"name_a": "a"}
    assert list(out.parent.iterdir()) == [out]


def test_cache_shares_svds_between_runs(rotated_pair, tmp_path):
    first = spectral.analyse_pair(*rotated_pair, cache=SvdCache(tmp_path, device="cpu"))
    cache = SvdCache(tmp_path, device="cpu")
    second = spectral.analyse_pair(*rotated_pair, cache=cache)
    assert cache.computed == 0 and cache.hits == 4
    pd.testing.assert_frame_equal(first, second)


def test_bad_inputs(rotated_pair, tmp_path):
    a, _ = rotated_pair
    with pytest.raises(WeightsError, match="'nothing' matches no tensor"):
        spectral.analyse_pair(a, a, patterns=["nothing"])
    other = write_model(tmp_path / "other", {Q: torch.zeros(20, 9), DOWN: torch.zeros(8, 24)})
    with pytest.raises(WeightsError, match="q_proj.weight' has shape"):
        spectral.analyse_pair(a, other)
    with pytest.raises(ValueError, match="k fraction 1.5"):
        spectral.analyse_pair(a, a, k_fractions=[1.5])


def test_update_comparison(tmp_path, factors):
    torch.manual_seed(0)
    base = {Q: torch.randn(20, 8), DOWN: torch.randn(8, 24)}
    step = {name: 0.01 * torch.randn_like(w) for name, w in base.items()}
    mid = {name: base[name] + step[name] for name in base}
    same_way = {name: mid[name] + 2 * step[name] for name in base}
    back = {name: mid[name] - step[name] for name in base}
    dirs = [
        write_model(tmp_path / n, t)
        for n, t in (("base", base), ("mid", mid), ("same", same_way), ("back", back))
    ]
    table = spectral.compare_updates(*dirs[:3], k_fractions=(0.25, 1.0))
    assert list(table.columns) == spectral.COLUMNS
    assert value(table, Q, "update_cosine") == pytest.approx(1, abs=1e-3)
    assert value(table, Q, "update_norm_2") == pytest.approx(2 * value(table, Q, "update_norm_1"), rel=1e-3)
    assert value(table, DOWN, "angle_right_max_deg", 2) < 1
    assert spectral.summarize(table)["update_cosine"] == pytest.approx(1, abs=1e-3)
    reverse = spectral.compare_updates(dirs[0], dirs[1], dirs[3])
    assert value(reverse, DOWN, "update_cosine") == pytest.approx(-1, abs=1e-3)


def test_figures_and_script(rotated_pair, tmp_path, monkeypatch):
    a, b = rotated_pair
    table = spectral.analyse_pair(a, b, k_fractions=FRACTIONS)
    made = spectral.plot_drift({"base": spectral.analyse_pair(a, a), "sft": table}, tmp_path / "drift")
    made += spectral.plot_angles(table, tmp_path / "angles.png")
    made += spectral.plot_heatmap(table, tmp_path / "heat")
    made += spectral.plot_heatmap(table, tmp_path / "heat-angle", "angle_left_mean_deg", k_fraction=0.125)
    assert sorted(p.name for p in made) == sorted(
        f"{stem}.{ext}" for stem in ("drift", "angles", "heat", "heat-angle") for ext in ("png", "pdf")
    )
    assert all(p.stat().st_size > 1000 for p in made)
    by_module = spectral.summary_by(table)
    assert list(by_module.index) == ["down_proj", "q_proj"]

    out = tmp_path / "res" / "a__b.parquet"
    argv = [
        "spectrum.py",
        "--a",
        str(a),
        "--b",
        str(b),
        "--name-a",
        "base",
        "--name-b",
        "sft-100",
        "--out",
        str(out),
        "--k-fractions",
        "0.125",
        "1",
        "--cache",
        str(tmp_path / "cache"),
        "--plots",
        str(tmp_path / "res" / "a__b"),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    assert spectral.read_meta(out)["name_b"] == "sft-100"
    assert (tmp_path / "res" / "a__b-heatmap.pdf").is_file()
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "spectrum.py",
            "delta",
            "--base",
            str(a),
            "--mid",
            str(b),
            "--end",
            str(a),
            "--out",
            str(tmp_path / "delta.parquet"),
        ],
    )
    runpy.run_path(str(SCRIPT), run_name="__main__")
    delta = pd.read_parquet(tmp_path / "delta.parquet")
    assert value(delta, Q, "update_cosine") == pytest.approx(-1, abs=1e-4)


def test_summary_of_many_pairs(rotated_pair, tmp_path):
    a, b = rotated_pair
    same = spectral.analyse_pair(a, a, k_fractions=FRACTIONS)
    moved = spectral.analyse_pair(a, b, k_fractions=FRACTIONS)
    updates = spectral.compare_updates(a, b, a, k_fractions=FRACTIONS)
    rows = [
        spectral.summary_row("base_to_sft", "base", "sft-10", same),
        spectral.summary_row("base_to_sft", "base", "sft-20", moved),
        spectral.summary_row("sft_vs_rl", "sft-20", "rl-ppo-from20-s0", updates),
    ]
    summary = spectral.summary_frame(rows)
    assert list(summary.columns[:4]) == ["kind", "a", "b", "matrices"]
    assert summary.loc[0, "drift_median"] == pytest.approx(0, abs=1e-6)
    assert summary.loc[0, "drift_median_q_proj"] == pytest.approx(0, abs=1e-6)
    # q's u_1 turns by THETA within span(u_1, u_2) and down's left vectors stay: the mean over both
    # matrices of the top-1 angle is THETA / 2, and the whole subspaces do not turn
    assert summary.loc[1, "angle_left_deg@0.125"] == pytest.approx(math.degrees(THETA) / 2, abs=0.05)
    assert summary.loc[1, "angle_left_deg@1"] == pytest.approx(0, abs=0.05)
    assert np.isnan(summary.loc[2, "drift_median"])  # an update table has no drift
    assert summary.loc[2, "update_cosine"] == pytest.approx(-1, abs=1e-4)

    spectral.write_summary(summary, tmp_path / "summary.csv")
    assert pd.read_csv(tmp_path / "summary.csv")["b"].tolist() == ["sft-10", "sft-20", "rl-ppo-from20-s0"]
    made = spectral.plot_drift_summary(summary, tmp_path / "drift.png")
    made += spectral.plot_angle_summary(summary, tmp_path / "angles.png")
    assert sorted(p.name for p in made) == ["angles.pdf", "angles.png", "drift.pdf", "drift.png"]
    with pytest.raises(ValueError, match="no singular-value drift"):
        spectral.plot_drift_summary(summary, tmp_path / "x.png", kinds=["peak_to_later"])
    with pytest.raises(ValueError, match="unknown pair kind 'sft_to_rl'"):
        spectral.summary_row("sft_to_rl", "a", "b", same)


def test_summary_script(rotated_pair, tmp_path, monkeypatch):
    a, b = rotated_pair
    tables = {}
    for name, (x, y) in {"base__sft-5": (a, b), "sft-5__sft-10": (b, a)}.items():
        tables[name] = tmp_path / f"{name}.parquet"
        spectral.write_table(spectral.analyse_pair(x, y, k_fractions=FRACTIONS), tables[name], {"name_a": "base", "name_b": "sft-5"})
    out = tmp_path / "out"
    argv = [
        "spectrum_summary.py",
        "--pair",
        f"base_to_sft:base:sft-5={tables['base__sft-5']}",
        f"peak_to_later:sft-5:sft-10={tables['sft-5__sft-10']}",
        "--csv",
        str(out / "summary.csv"),
        "--drift",
        str(out / "drift.png"),
        "--angles",
        str(out / "angles.png"),
        "--heatmap-table",
        str(tables["base__sft-5"]),
        "--heatmap",
        str(out / "heatmap.png"),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SUMMARY_SCRIPT), run_name="__main__")
    assert {p.name for p in out.iterdir()} == {"summary.csv"} | {
        f"{stem}.{ext}" for stem in ("drift", "angles", "heatmap") for ext in ("png", "pdf")
    }
    assert pd.read_csv(out / "summary.csv")["kind"].tolist() == ["base_to_sft", "peak_to_later"]
    monkeypatch.setattr(sys, "argv", ["spectrum_summary.py", "--pair", "base:sft-5=x.parquet", "--csv", "x.csv"])
    with pytest.raises(SystemExit):
        runpy.run_path(str(SUMMARY_SCRIPT), run_name="__main__")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(rotated_pair):
    cpu = spectral.analyse_pair(*rotated_pair, k_fractions=FRACTIONS, cache=SvdCache(device="cpu"))
    gpu = spectral.analyse_pair(*rotated_pair, k_fractions=FRACTIONS, cache=SvdCache(device="cuda"))
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
    rows = spectral.TidyRows()
    spectral.compare_matrices(rows, "model.layers.0.mlp.down_proj.weight", wa, wb,
                              spectral.thin_svd(wa), spectral.thin_svd(wb), [1.0])
    table = rows.frame().set_index("metric")["value"]
    assert table["subspace_angle_left_top_deg"] == pytest.approx(30, abs=1e-3)
    for metric in ("left_middle", "left_bottom", "right_top", "right_middle", "right_bottom"):
        assert table[f"subspace_angle_{metric}_deg"] == pytest.approx(0, abs=0.2)  # float32 arccos near 1
