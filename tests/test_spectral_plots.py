"""Spectral figures, of one pair table and of the summary of many, and the scripts that write them."""

import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest
from spectral_pairs import FRACTIONS, Q, factors, rotated_pair, three_summary_rows, value  # noqa: F401 - fixtures

from sftrl.spectral import metrics, plots

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "spectrum.py"
SUMMARY_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "spectrum_summary.py"

pytestmark = pytest.mark.usefixtures("one_thread")


def test_figures_and_script(rotated_pair, tmp_path, monkeypatch):
    a, b = rotated_pair
    table = metrics.analyse_pair(a, b, k_fractions=FRACTIONS)
    made = plots.plot_drift({"base": metrics.analyse_pair(a, a), "sft": table}, tmp_path / "drift")
    made += plots.plot_angles(table, tmp_path / "angles.png")
    made += plots.plot_heatmap(table, tmp_path / "heat")
    made += plots.plot_heatmap(table, tmp_path / "heat-angle", "angle_left_mean_deg", k_fraction=0.125)
    assert sorted(p.name for p in made) == sorted(
        f"{stem}.{ext}" for stem in ("drift", "angles", "heat", "heat-angle") for ext in ("png", "pdf")
    )
    assert all(p.stat().st_size > 1000 for p in made)

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
    assert metrics.read_meta(out)["name_b"] == "sft-100"
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


def test_summary_figures(rotated_pair, tmp_path):
    """The summary of three pairs drawn as drift and angle figures; kinds without drift are refused."""
    a, b = rotated_pair
    rows = three_summary_rows(a, b)
    summary = metrics.summary_frame(rows)
    made = plots.plot_drift_summary(summary, tmp_path / "drift.png")
    made += plots.plot_angle_summary(summary, tmp_path / "angles.png")
    assert sorted(p.name for p in made) == ["angles.pdf", "angles.png", "drift.pdf", "drift.png"]
    with pytest.raises(ValueError, match="no singular-value drift"):
        plots.plot_drift_summary(summary, tmp_path / "x.png", kinds=["peak_to_later"])


def test_summary_script(rotated_pair, tmp_path, monkeypatch):
    a, b = rotated_pair
    tables = {}
    for name, (x, y) in {"base__sft-5": (a, b), "sft-5__sft-10": (b, a)}.items():
        tables[name] = tmp_path / f"{name}.parquet"
        metrics.write_table(
            metrics.analyse_pair(x, y, k_fractions=FRACTIONS), tables[name], {"name_a": "base", "name_b": "sft-5"}
        )
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
