"""Both integer programs of sftrl.plan on small instances whose optimum is worked out by hand."""

import math

import pandas as pd
import pytest

from sftrl import plan
from sftrl.curves import CurvePoint
from sftrl.plan import Block, PlanError, PlanInfeasible


def point(step, success):
    return CurvePoint(step, success, max(0.0, success - 0.05), min(1.0, success + 0.05), 300)


# OOD peaks at step 20 (0.30) and falls: drops 30: .05, 40: .20, 50: .15, 60 (last): .18.
CURVE = [point(10, 0.20), point(20, 0.30), point(30, 0.25), point(40, 0.10), point(50, 0.15), point(60, 0.12)]


def test_spacing_keeps_starts_apart_and_unused_budget_is_not_spent():
    # Radius 0: a start covers its own checkpoint only. Spacing 15 rules out 30 (10 from the peak)
    # and 50 (10 from the last), so 40 (the largest drop) is the only extra start, even with budget left.
    result = plan.plan_rl_starts(CURVE, budget=4.0, cost_per_start=1.0, min_spacing=15, coverage_radius=0)
    assert result["status"] == "Optimal"
    assert result["steps"] == [20, 40, 60]
    assert result["budget_used"] == 3.0
    assert result["objective"]["coverage"] == pytest.approx(0.20 + 0.18)
    assert result["objective"]["coverage_share"] == pytest.approx(0.38 / 0.58)
    assert {c["step"]: c["why"] for c in result["chosen"]} == {20: ["peak"], 40: ["coverage"], 60: ["last"]}


def test_budget_buys_the_largest_drops_first():
    # No spacing, radius 0: with room for two extra starts they go to 40 (.20) and 50 (.15), not 30 (.05).
    result = plan.plan_rl_starts(CURVE, budget=4.0, cost_per_start=1.0)
    assert result["steps"] == [20, 40, 50, 60]
    assert result["objective"]["coverage"] == pytest.approx(0.53)
    every = plan.plan_rl_starts(CURVE, budget=10.0, cost_per_start=1.0)
    assert every["steps"] == [20, 30, 40, 50, 60] and every["objective"]["coverage_share"] == pytest.approx(1.0)
    assert every["budget_used"] == 5.0  # the step before the peak is not in the falling stretch


def test_coverage_radius_spreads_the_starts():
    # Radius 10: the peak covers 30, the last covers 50 and 60; one extra start at 40 covers the rest,
    # and is enough: a second solve keeps the fewest starts of the best coverage.
    result = plan.plan_rl_starts(CURVE, budget=5.0, cost_per_start=1.0, coverage_radius=10)
    assert result["objective"]["coverage_share"] == pytest.approx(1.0)
    assert len(result["steps"]) == 3 and {20, 60} <= set(result["steps"])


def test_budget_below_the_mandatory_starts_names_the_smallest_feasible_one():
    with pytest.raises(PlanInfeasible, match="smallest feasible budget is 5") as error:
        plan.plan_rl_starts(CURVE, budget=4.9, cost_per_start=2.5)
    assert error.value.bound == 5.0
    with pytest.raises(PlanInfeasible, match=r"smallest feasible budget is 7.5") as error:
        plan.plan_rl_starts(CURVE, budget=5.0, cost_per_start=2.5, required=[10])  # a third mandatory start
    exact = plan.plan_rl_starts(CURVE, budget=5.0, cost_per_start=2.5)
    assert exact["steps"] == [20, 60] and exact["budget_used"] == 5.0


def test_peak_ties_go_to_the_earliest_step_and_a_rising_curve_needs_one_start():
    tied = [point(10, 0.3), point(20, 0.3), point(30, 0.1)]
    assert plan.plan_rl_starts(tied, budget=2, cost_per_start=1)["peak_step"] == 10
    rising = [point(10, 0.1), point(20, 0.2), point(30, 0.3)]
    result = plan.plan_rl_starts(rising, budget=3, cost_per_start=1)
    assert result["steps"] == [30] and result["chosen"][0]["why"] == ["peak", "last"]
    assert result["objective"]["coverage_share"] == 1.0


@pytest.mark.parametrize("budget", [0, -1.0, math.nan, math.inf, None, "10"])
def test_bad_budgets_are_errors(budget):
    with pytest.raises(PlanError, match="RL budget"):
        plan.plan_rl_starts(CURVE, budget=budget, cost_per_start=1.0)


def test_bad_curves_costs_and_steps_are_errors():
    with pytest.raises(PlanError, match="curve is empty"):
        plan.plan_rl_starts([], budget=10, cost_per_start=1)
    with pytest.raises(PlanError, match="one start"):
        plan.plan_rl_starts(CURVE, budget=10, cost_per_start=None)
    with pytest.raises(PlanError, match="one start"):
        plan.plan_rl_starts(CURVE, budget=10, cost_per_start=0)
    with pytest.raises(PlanError, match=r"step 20 twice|twice"):
        plan.plan_rl_starts([*CURVE, point(20, 0.1)], budget=10, cost_per_start=1)
    with pytest.raises(PlanError, match="not on the SFT curve"):
        plan.plan_rl_starts(CURVE, budget=10, cost_per_start=1, required=[35])
    with pytest.raises(PlanError, match="spacing"):
        plan.plan_rl_starts(CURVE, budget=10, cost_per_start=1, min_spacing=-5)


def test_curve_rows_leave_out_the_base_model(tmp_path):
    rows = [
        {"step": "0", "split": "ood", "n": "300", "success": "0.1", "ci_low": "0.05", "ci_high": "0.15"},
        {"step": "10", "split": "ood", "n": "300", "success": "0.2", "ci_low": "0.15", "ci_high": "0.25"},
        {"step": "10", "split": "id", "n": "300", "success": "0.9", "ci_low": "0.85", "ci_high": "0.95"},
    ]
    path = tmp_path / "sft_curve.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    assert plan.read_curve(path) == [CurvePoint(10, 0.2, 0.15, 0.25, 300)]
    pd.DataFrame([{"step": "x", "split": "ood", "n": "1", "success": "0", "ci_low": "0", "ci_high": "0"}]).to_csv(
        path, index=False
    )
    with pytest.raises(PlanError, match="bad SFT curve row"):
        plan.read_curve(path)


def write_benchmark(path, seconds):
    path.write_text("s\th:m:s\tmax_rss\n" + "".join(f"{s}\t0:00:00\t1.0\n" for s in seconds))
    return path


def test_run_cost_from_benchmark_files(tmp_path):
    a = write_benchmark(tmp_path / "a.tsv", [3600.0])
    b = write_benchmark(tmp_path / "b.tsv", [7000.0, 7400.0])  # a job benchmarked twice: its mean
    assert plan.read_benchmark_seconds(b) == pytest.approx(7200.0)
    assert plan.run_cost_from_benchmarks([a, b], gpus_per_run=4) == pytest.approx(4 * 1.5)
    total, per_run = plan.start_cost(["ppo", "grpo"], seeds=2, benchmarks={"ppo": [a], "grpo": [b]})
    assert per_run == {"ppo": pytest.approx(1.0), "grpo": pytest.approx(2.0)}
    assert total == pytest.approx(2 * 3.0)
    assert plan.start_cost(["ppo", "grpo"], seeds=1, run_cost=10.0)[0] == 20.0


def test_missing_or_broken_costs_are_errors(tmp_path):
    with pytest.raises(PlanError, match=r"plan.rl_run_cost"):
        plan.start_cost(["ppo"], seeds=1, benchmarks={"grpo": [tmp_path / "x.tsv"]})
    with pytest.raises(PlanError, match="does not exist"):
        plan.run_cost_from_benchmarks([tmp_path / "missing.tsv"])
    (tmp_path / "bad.tsv").write_text("wall\n12\n")
    with pytest.raises(PlanError, match="no `s` column"):
        plan.read_benchmark_seconds(tmp_path / "bad.tsv")
    with pytest.raises(PlanError, match="no benchmark files"):
        plan.run_cost_from_benchmarks([])
    with pytest.raises(PlanError, match="cost of one RL run"):
        plan.start_cost(["ppo"], seeds=1, run_cost=-1.0)


BLOCKS = [
    Block("a", 0, "q_proj", 100, 0.50),
    Block("b", 0, "k_proj", 60, 0.30),
    Block("c", 1, "q_proj", 50, 0.25),
    Block("d", 1, "k_proj", 30, 0.10),
]


def test_cheapest_restoration_reaches_the_target_with_fewest_parameters():
    # Without a (0.5) the others reach 0.65 < 0.7; with it the cheapest partner is c (150 params, 0.75).
    result = plan.plan_restoration(BLOCKS, target=0.7)
    assert result["status"] == "Optimal"
    assert result["tensors"] == ["a", "c"]
    assert result["objective"]["params"] == 150
    assert result["predicted_recovery"] == pytest.approx(0.75)
    assert result["params_share"] == pytest.approx(150 / 240)
    assert plan.plan_restoration(BLOCKS, target=0.3)["tensors"] == ["b"]  # 60 params, 0.30
    assert plan.plan_restoration(BLOCKS, target=0.32)["tensors"] == ["d", "c"]  # 80 params, 0.35 (layer, module order)


def test_ties_in_cost_go_to_the_larger_predicted_recovery():
    blocks = [Block("x", 0, "q", 50, 0.40), Block("y", 0, "k", 50, 0.45), Block("z", 0, "v", 50, 0.30)]
    result = plan.plan_restoration(blocks, target=0.7)
    assert sorted(result["tensors"]) == ["x", "y"]
    assert result["predicted_recovery"] == pytest.approx(0.85)


def test_unreachable_target_states_the_most_reachable():
    blocks = [Block("a", 0, "q", 10, 0.4), Block("b", 0, "k", 10, 0.2), Block("c", 0, "v", 10, -0.3)]
    with pytest.raises(PlanInfeasible, match=r"at most 60.0%") as error:
        plan.plan_restoration(blocks, target=0.7)
    assert error.value.bound == pytest.approx(0.6)


def test_bad_restoration_input_is_an_error():
    with pytest.raises(PlanError, match="no weight blocks"):
        plan.plan_restoration([], target=0.7)
    with pytest.raises(PlanError, match="at most 1"):
        plan.plan_restoration(BLOCKS, target=1.5)
    with pytest.raises(PlanError, match="positive"):
        plan.plan_restoration(BLOCKS, target=0)
    with pytest.raises(PlanError, match="parameter count"):
        plan.plan_restoration([Block("a", 0, "q", 0, 0.9)], target=0.7)
    with pytest.raises(PlanError, match="given twice"):
        plan.plan_restoration([BLOCKS[0], BLOCKS[0]], target=0.3)


def spectral_table(blocks):
    """A tidy spectral table holding, per block, delta_fro and energy_rotation_share."""
    rows = []
    for name, layer, module, delta, share in blocks:
        rows.append(
            {"layer": layer, "module": module, "name": name, "index_or_k": -1, "metric": "delta_fro", "value": delta}
        )
        rows.append(
            {
                "layer": layer,
                "module": module,
                "name": name,
                "index_or_k": -1,
                "metric": "energy_rotation_share",
                "value": share,
            }
        )
        rows.append({"layer": layer, "module": module, "name": name, "index_or_k": 0, "metric": "drift", "value": 0.01})
    return pd.DataFrame(rows)


def test_block_estimates_spread_the_measured_recovery_by_rotation_energy():
    table = spectral_table(
        [("w1", 1, "q_proj", 2.0, 0.75), ("w0", 0, "q_proj", 1.0, 1.0), ("w2", 1, "k_proj", 0.0, math.nan)]
    )
    blocks = plan.block_recovery_estimates(table, 0.8, {"w0": 10, "w1": 20, "w2": 30})
    # rotation energies: w0 1.0, w1 4 * 0.75 = 3.0, w2 0 -> shares 1/4 and 3/4 of 0.8
    assert [(b.name, b.layer, b.params) for b in blocks] == [("w0", 0, 10), ("w2", 1, 30), ("w1", 1, 20)]
    assert {b.name: b.recovery for b in blocks} == pytest.approx({"w0": 0.2, "w1": 0.6, "w2": 0.0})
    assert plan.plan_restoration(blocks, target=0.5)["tensors"] == ["w1"]
    with pytest.raises(PlanError, match="no parameter count"):
        plan.block_recovery_estimates(table, 0.8, {"w0": 10})
    with pytest.raises(PlanError, match="do not differ"):
        plan.block_recovery_estimates(spectral_table([("w0", 0, "q", 0.0, math.nan)]), 0.8, {"w0": 1})


def test_exact_patterns_select_only_the_named_tensors():
    from sftrl.spectral.weights import select

    names = ["model.layers.1.self_attn.q_proj.weight", "model.layers.11.self_attn.q_proj.weight"]
    assert select(names, plan.exact_patterns(names[:1])) == names[:1]
