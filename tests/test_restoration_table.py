"""The restoration table and figures on synthetic metrics with hand-computed recoveries."""

import csv
import json
import runpy
import sys
from pathlib import Path

import pytest

from sftrl import io
from sftrl.restoration.table import COLUMNS, kinds_in, plot_family, restoration_rows, write_restoration_csv
from sftrl.roles import restore_pairs

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "restoration_table.py"
RL = ["rl-ppo-from100-s0"]
GRID = [
    {
        "source": "sft_peak",
        "target": "sft_end",
        "edits": [{"kind": "direction", "top": 0.2}, {"kind": "layer", "layers": 0.25}],
    },
    {"source": "sft_end", "target": "rl_from_end", "edits": [{"kind": "direction", "top": 0.2}]},
]
RATES = {  # model -> (id, id_unseen, ood)
    "sft-20": (0.30, 0.20, 0.20),
    "sft-100": (0.60, 0.30, 0.04),
    "rl-ppo-from100-s0": (0.60, 0.32, 0.10),
    "edits/sft_peak__sft_end/direction-top20-tail0": (0.50, 0.30, 0.16),
    "edits/sft_peak__sft_end/layer-first25pct": (0.55, 0.25, 0.04),
    "edits/sft_end__rl-ppo-from100-s0/direction-top20-tail0": (0.60, 0.30, 0.07),
}
ROLES = {
    "roles": {"base": "base", "sft_peak": "sft-20", "sft_end": "sft-100"},
    "rl": RL,
}


@pytest.fixture
def eval_root(tmp_path):
    for model, rates in RATES.items():
        for split, rate in zip(("id", "id_unseen", "ood"), rates, strict=False):
            success = {
                "k": round(rate * 100),
                "n": 100,
                "rate": rate,
                "ci_low": max(0, rate - 0.05),
                "ci_high": rate + 0.05,
            }
            io.write_json(tmp_path / "eval" / model / split / "metrics.json", {"split": split, "success": success})
    io.write_json(tmp_path / "roles.json", ROLES)
    return tmp_path / "eval"


@pytest.fixture
def pairs():
    return restore_pairs(GRID, RL, "sft-100", num_layers=4)


def test_rows_hold_success_and_recovery(eval_root, pairs):
    rows = restoration_rows(eval_root, ROLES, pairs)
    assert len(rows) == 3 * 3
    assert [(r["edit"], r["split"]) for r in rows[:3]] == [
        ("direction-top20-tail0", s) for s in ("id", "id_unseen", "ood")
    ]
    ood = rows[2]
    assert (ood["source"], ood["target"], ood["source_step"], ood["target_step"]) == ("sft-20", "sft-100", 20, 100)
    assert (ood["success"], ood["source_success"], ood["target_success"]) == (0.16, 0.20, 0.04)
    assert ood["recovery_pct"] == pytest.approx(100 * (0.16 - 0.04) / (0.20 - 0.04))
    layer_unseen = rows[4]
    assert (layer_unseen["kind"], layer_unseen["layers"], layer_unseen["top"]) == ("layer", 0.25, None)
    assert layer_unseen["recovery_pct"] == pytest.approx(100 * (0.25 - 0.30) / (0.20 - 0.30))
    rl_ood = rows[8]
    assert (rl_ood["source"], rl_ood["target"], rl_ood["target_step"]) == ("sft-100", "rl-ppo-from100-s0", None)
    assert rl_ood["recovery_pct"] == pytest.approx(100 * (0.07 - 0.10) / (0.04 - 0.10))
    assert rows[6]["recovery_pct"] is None  # id: source and target both 60%


def test_csv_and_one_figure_per_family(eval_root, pairs, tmp_path):
    rows = restoration_rows(eval_root, ROLES, pairs)
    write_restoration_csv(rows, tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        assert [r["recovery_pct"] for r in reader][6] == ""
    assert kinds_in(pairs) == ["direction", "layer"]
    written = plot_family(eval_root, ROLES, pairs, "direction", tmp_path / "restoration_direction.png")
    assert [p.name for p in written] == ["restoration_direction.png", "restoration_direction.pdf"]
    assert all(p.stat().st_size > 5000 for p in written)
    with pytest.raises(ValueError, match="no value edits"):
        plot_family(eval_root, ROLES, pairs, "value", tmp_path / "v.png")


def test_missing_evaluation_is_named(eval_root, pairs, tmp_path):
    (eval_root / "edits/sft_peak__sft_end/layer-first25pct/ood/metrics.json").unlink()
    with pytest.raises(FileNotFoundError, match="layer-first25pct, split ood"):
        restoration_rows(eval_root, ROLES, pairs)


def test_script(eval_root, pairs, tmp_path, monkeypatch):
    argv = [
        "restoration_table.py",
        "--eval-root",
        str(eval_root),
        "--roles",
        str(eval_root.parent / "roles.json"),
        "--pairs",
        json.dumps([p.to_dict() for p in pairs]),
        "--table",
        str(tmp_path / "out" / "restoration.csv"),
        "--figure-stem",
        str(tmp_path / "out" / "restoration"),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "restoration.csv",
        "restoration_direction.pdf",
        "restoration_direction.png",
        "restoration_layer.pdf",
        "restoration_layer.png",
    ]
