"""The report's figures and tables on small synthetic results: the numbers behind each figure."""

import pandas as pd
import pytest

from sftrl import report
from sftrl.evaluate.metrics import wilson_interval
from sftrl.outputs import write_table


def curve_rows(rates, n=1000):
    rows = []
    for split in ("id", "ood"):
        for step, rate in rates.items():
            low, high = wilson_interval(round(rate * n), n)
            rows.append(
                {
                    "step": str(step),
                    "split": split,
                    "n": str(n),
                    "success": str(rate),
                    "ci_low": str(low),
                    "ci_high": str(high),
                }
            )
    return rows


CURVE = curve_rows({0: 0.1, 10: 0.4, 20: 0.3, 40: 0.1})
RL = [
    {"start_step": "20", "algorithm": "ppo", "seed": "0", "split": s, "before": "0.3", "after": "0.38"}
    for s in ("id", "ood")
] + [
    {"start_step": "40", "algorithm": "ppo", "seed": "0", "split": s, "before": "0.1", "after": "0.1"}
    for s in ("id", "ood")
]


def test_loss_rows_merge_the_log_and_the_curve():
    history = [{"step": 5, "loss": 1.0}, {"step": 10, "loss": 0.8, "eval_id_unseen_loss": 0.9, "eval_ood_loss": 1.2}]
    rows = report.loss_rows(history, CURVE)
    assert [r["step"] for r in rows] == [0, 5, 10, 20, 40]
    assert rows[2] == {
        "step": 10,
        "train_loss": 0.8,
        "test_loss_id_unseen": 0.9,
        "loss_ood": 1.2,
        "ood_success": 0.4,
        "ood_ci_low": pytest.approx(0.3700, abs=1e-3),
        "ood_ci_high": pytest.approx(0.4308, abs=1e-3),
    }
    assert rows[1]["ood_success"] is None and rows[0]["train_loss"] is None


def test_window_rows_give_recovery_against_the_peak_with_intervals():
    rows = report.window_rows(CURVE, RL, draws=2000, seed=0)
    by_step = {r["start_step"]: r for r in rows}
    assert by_step[20]["recovery_pct"] == pytest.approx(80.0)  # (0.38 - 0.30) / (0.40 - 0.30)
    assert by_step[20]["gap_significant"] and by_step[20]["ci_low"] < 80 < by_step[20]["ci_high"]
    assert by_step[40]["recovery_pct"] == pytest.approx(0.0) and by_step[40]["peak_step"] == 10
    seeds = [dict(r, seed=str(s), after=a) for s, a in enumerate(("0.36", "0.38", "0.40")) for r in RL[:2]]
    (three,) = [r for r in report.window_rows(CURVE, seeds, draws=500) if r["start_step"] == 20]
    assert (
        three["seeds"] == 3
        and three["recovery_pct_per_seed"] == "60 80 100"
        and three["after_per_seed"] == "0.36 0.38 0.4"
    )
    assert (
        three["recovery_pct"] == pytest.approx(80.0) and three["ci_low"] < 60 and three["ci_high"] > 100
    )  # over 3 seeds


def test_restoration_rows_add_the_planned_edit_with_its_prediction():
    restoration = [
        {
            "split": "ood",
            "n": "1000",
            "source_role": "sft_peak",
            "target_role": "sft_end",
            "source": "sft-10",
            "target": "sft-40",
            "edit": "direction-top20-tail0",
            "kind": "direction",
            "success": "0.3",
            "source_success": "0.4",
            "target_success": "0.1",
        },
        {
            "split": "id",
            "n": "1000",
            "source_role": "sft_peak",
            "target_role": "sft_end",
            "source": "sft-10",
            "target": "sft-40",
            "edit": "direction-top20-tail0",
            "kind": "direction",
            "success": "0.5",
            "source_success": "0.5",
            "target_success": "0.5",
        },
    ]
    plan = {
        "status": "Optimal",
        "tensors": ["a"],
        "blocks": 4,
        "params_share": 0.25,
        "predicted_recovery": 0.7,
        "edit": "direction-top20-tail0",
    }
    rows = report.restoration_recovery_rows(restoration, plan, {"success": {"k": 250, "n": 1000}}, draws=1000)
    assert len(rows) == 2  # the OOD row and the planned edit
    assert rows[0]["recovery_pct"] == pytest.approx(200 / 3)
    assert rows[1]["edit"].startswith(report.PLANNED) and rows[1]["predicted_recovery_pct"] == pytest.approx(70.0)
    assert rows[1]["recovery_pct"] == pytest.approx(50.0)
    infeasible = report.restoration_recovery_rows(restoration, {"status": "Infeasible"}, None, draws=1000)
    assert len(infeasible) == 1


def test_figures_and_tables_are_written(tmp_path):
    written = report.plot_success_panels(CURVE, RL, tmp_path / "success.png")
    rows = report.loss_rows([{"step": 10, "loss": 0.5, "eval_id_unseen_loss": 0.6}], CURVE)
    written += report.plot_loss_vs_ood(rows, tmp_path / "loss.png")
    window = report.window_rows(CURVE, RL + [dict(r, seed="1", after="0.36") for r in RL[:2]], draws=500)
    written += report.plot_recovery_window(window, tmp_path / "window.png")
    assert all(path.stat().st_size > 5000 for path in written)
    assert {p.suffix for p in written} == {".png", ".pdf"}
    paths = write_table(window, report.WINDOW_COLUMNS, tmp_path / "window.csv")
    frame = pd.read_parquet(paths[1])
    assert list(frame.columns) == list(report.WINDOW_COLUMNS)
    assert frame["recovery_pct"].tolist() == pytest.approx([r["recovery_pct"] for r in window])
    assert pd.read_csv(paths[0])["start_step"].tolist() == [20, 40]
    with pytest.raises(ValueError, match="no restoration rows"):
        report.plot_restoration_recovery([], tmp_path / "r.png")
