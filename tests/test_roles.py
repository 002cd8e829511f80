"""Roles (sft_peak from the OOD results, sft_end, RL groups) and the restoration grid as pairs of roles."""

import json
import runpy
import sys
from pathlib import Path

import pytest
from conftest import write_ood_samples

from sftrl import io
from sftrl.restoration.spec import EditError
from sftrl.roles import (
    RestorePair,
    RoleError,
    choose_roles,
    expand_role,
    resolve,
    restore_pairs,
    rl_start,
    sft_end_model,
    static_model,
)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "roles.py"
SFT = ["sft-10", "sft-50", "sft-100", "sft-200"]
RL = ["rl-ppo-from100-s0", "rl-grpo-from100-s0", "rl-ppo-from200-s0"]
OOD = {"sft-10": 0.10, "sft-50": 0.20, "sft-100": 0.20, "sft-200": 0.06}  # selection half: a tie at 50 and 100
REPORT = {"sft-10": 0.30, "sft-50": 0.10, "sft-100": 0.40, "sft-200": 0.00}  # the other half


@pytest.fixture
def eval_root(tmp_path):
    for model, rate in OOD.items():
        total = (rate + REPORT[model]) / 2
        success = {"k": round(total * 100), "n": 100, "rate": total, "ci_low": total - 0.05, "ci_high": total + 0.05}
        io.write_json(tmp_path / "eval" / model / "ood" / "metrics.json", {"split": "ood", "success": success})
        write_ood_samples(tmp_path / "eval" / model / "ood" / "samples.jsonl", rate, REPORT[model])
    return tmp_path / "eval"


def test_start_of_an_rl_model():
    assert rl_start("rl-grpo-from40-s3") == "sft-40"
    with pytest.raises(RoleError, match="not an RL model name"):
        rl_start("sft-40")


def test_sft_end_is_the_last_step_or_the_configured_one():
    assert sft_end_model([10, 50, 100]) == "sft-100"
    assert sft_end_model([10, 50, 100], 50) == "sft-50"
    with pytest.raises(RoleError, match=r"restore.sft_end = 60 is not on the SFT ladder \[10, 50, 100\]"):
        sft_end_model([10, 50, 100], 60)


def test_roles_expand_into_models():
    assert expand_role("sft_peak", RL, "sft-100") == ["sft_peak"]
    assert expand_role("rl", RL, "sft-100") == RL
    assert expand_role("rl_from_end", RL, "sft-100") == RL[:2]
    assert expand_role("rl-ppo-from200-s0", RL, "sft-100") == ["rl-ppo-from200-s0"]
    with pytest.raises(RoleError, match=r"no RL run starts from sft_end \(sft-50\); RL starts from steps \[100, 200\]"):
        expand_role("rl_from_end", RL, "sft-50")
    with pytest.raises(RoleError, match="'rl-ppo-from50-s0' is not among the RL runs"):
        expand_role("rl-ppo-from50-s0", RL, "sft-100")
    with pytest.raises(RoleError, match="unknown role 'sft_top'"):
        expand_role("sft_top", RL, "sft-100")


def test_static_models_and_the_data_dependent_peak():
    assert [static_model(t, "sft-200") for t in ("base", "sft_end", "sft_peak", RL[0])] == [
        "base",
        "sft-200",
        None,
        RL[0],
    ]
    with pytest.raises(RoleError, match="unknown role"):
        static_model("sft-peak", "sft-200")


def test_peak_is_the_best_on_the_selection_half_earliest_on_a_tie(eval_root):
    """sft-100 has the best OOD success over all episodes, but the peak is chosen on the selection half,
    where sft-50 ties with it and comes first."""
    roles = choose_roles(eval_root, SFT[::-1], RL, "sft-200")
    assert roles["roles"] == {"base": "base", "sft_peak": "sft-50", "sft_end": "sft-200"}
    assert roles["steps"] == {"base": 0, "sft_peak": 50, "sft_end": 200}
    assert [row["model"] for row in roles["ood"]] == SFT
    assert [row["selection_rate"] for row in roles["ood"]] == [OOD[m] for m in SFT]
    assert [row["report_rate"] for row in roles["ood"]] == [REPORT[m] for m in SFT]
    assert max(roles["ood"], key=lambda row: row["rate"])["model"] == "sft-100"
    assert roles["selection"]["split"] == "ood" and "selection half" in roles["rule"]
    assert roles["rl_from_end"] == ["rl-ppo-from200-s0"]
    assert "earliest" in roles["rule"]
    assert resolve(roles, "sft_peak") == "sft-50"
    assert resolve(roles, RL[1]) == RL[1]
    with pytest.raises(RoleError, match="unknown role 'rl-ppo-from10-s0'"):
        resolve(roles, "rl-ppo-from10-s0")
    with pytest.raises(RoleError, match="sft_end 'sft-300' is not among"):
        choose_roles(eval_root, SFT, RL, "sft-300")
    with pytest.raises(FileNotFoundError, match="sft-400"):
        choose_roles(eval_root, [*SFT, "sft-400"], RL, "sft-200")


def test_script_writes_roles_with_provenance(eval_root, tmp_path, monkeypatch):
    out = tmp_path / "tables" / "roles.json"
    argv = [
        "roles.py",
        "--eval-root",
        str(eval_root),
        "--sft",
        *SFT,
        "--rl",
        *RL,
        "--sft-end",
        "sft-100",
        "--out",
        str(out),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    written = json.loads(out.read_text())
    assert written["roles"]["sft_peak"] == "sft-50"
    assert written["provenance"]["config"]["sft_end"] == "sft-100"


GRID: list[dict] = [
    {
        "source": "sft_peak",
        "target": "sft_end",
        "edits": [
            {"kind": "direction", "top": 0.2},
            {"kind": "layer", "layers": 0.25},
            {"kind": "layer", "layers": "0:0.25"},
        ],
    },
    {"source": "sft_end", "target": "rl_from_end", "edits": [{"kind": "direction", "tail": 0.2}]},
]


def test_restore_grid_expands_groups_and_names_models():
    pairs = restore_pairs(GRID, RL, "sft-100", num_layers=4)
    assert [p.group for p in pairs] == [
        "sft_peak__sft_end",
        "sft_end__rl-ppo-from100-s0",
        "sft_end__rl-grpo-from100-s0",
    ]
    assert pairs[0].models == [
        "edits/sft_peak__sft_end/direction-top20-tail0",
        "edits/sft_peak__sft_end/layer-first25pct",
    ]
    assert pairs[1].models == ["edits/sft_end__rl-ppo-from100-s0/direction-top0-tail20"]
    assert json.loads(pairs[1].edits_json())[0]["tail"] == 0.2
    assert RestorePair.from_dict(json.loads(json.dumps(pairs[0].to_dict()))) == pairs[0]
    assert len(restore_pairs(GRID, RL, "sft-100", num_layers=None)[0].specs) == 3  # layer count unknown


@pytest.mark.parametrize(
    ("grid", "error", "message"),
    [
        ([{**GRID[0], "source": "sft_best"}], RoleError, r"restore.pairs\[0\]: unknown role 'sft_best'"),
        (
            [GRID[0], {**GRID[1], "target": "rl-ppo-from50-s0"}],
            RoleError,
            r"pairs\[1\]: role 'rl-ppo-from50-s0' is not among",
        ),
        ([{**GRID[1], "target": "sft_end"}], RoleError, "source and target are both 'sft_end'"),
        ([GRID[0], {**GRID[0], "edits": [{"kind": "value", "top": 1.0}]}], RoleError, r"also in restore.pairs\[0\]"),
        ([{**GRID[0], "edits": [{"kind": "direction", "top": 2}]}], EditError, r"pairs\[0\].edits\[0\]: top = 2"),
        (
            [{**GRID[0], "edits": [{"kind": "layer", "layers": [7]}]}],
            EditError,
            r"pairs\[0\].edits: .*only 4 decoder layers",
        ),
        ([{**GRID[0], "edit": []}], RoleError, r"unknown key\(s\) \['edit'\]"),
    ],
)
def test_bad_grids_name_the_entry(grid, error, message):
    with pytest.raises(error, match=message):
        restore_pairs(grid, RL, "sft-100", num_layers=4)


def test_the_authors_peak_is_reported_and_can_play_sft_peak(eval_root):
    """Over all episodes sft-100 is best (0.30); on the selection half sft-50 and sft-100 tie (0.20) and
    the earliest wins. Both peaks are recorded whichever rule picks sft_peak."""
    ours = choose_roles(eval_root, SFT, RL, "sft-200")
    theirs = choose_roles(eval_root, SFT, RL, "sft-200", peak_rule="all_episodes")
    expected = {"selection_half": {"model": "sft-50", "step": 50}, "all_episodes": {"model": "sft-100", "step": 100}}
    assert ours["peaks"] == theirs["peaks"] == expected
    assert (ours["roles"]["sft_peak"], theirs["roles"]["sft_peak"]) == ("sft-50", "sft-100")
    assert theirs["peak_rule"] == "all_episodes" and "over all OOD episodes" in theirs["rule"]
    assert {row["model"]: row["all_rate"] for row in ours["ood"]}["sft-100"] == pytest.approx(0.30)
    with pytest.raises(ValueError, match="unknown peak rule 'best'"):
        choose_roles(eval_root, SFT, RL, "sft-200", peak_rule="best")
