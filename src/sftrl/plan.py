"""Plans under a budget, as integer programs solved by PuLP with its bundled CBC solver.

Two plans:

- **Where to start RL** (`plan_rl_starts`). Given the measured SFT curve (step → OOD success with its
  95% interval), a budget in GPU-hours and the cost of the RL runs started from one checkpoint, choose
  the start checkpoints: always the OOD peak (best OOD success, the earliest step on a tie, as
  `sftrl.roles`) and the last checkpoint, plus any step the caller requires, then more starts over the
  stretch where OOD falls. Each checkpoint j after the peak carries the weight w_j = max(0, peak − ood_j)
  (the OOD success SFT has lost by then), and counts as covered when a chosen start lies within
  `coverage_radius` steps of it. Integer program, with x_i = 1 when RL starts from checkpoint i and
  y_j ∈ [0, 1] the coverage of checkpoint j:

      maximise   Σ_j w_j y_j
      subject to y_j ≤ Σ_{i : |s_i − s_j| ≤ radius} x_i      (covered only by a start close enough)
                 x_i + x_k ≤ 1 for 0 < |s_i − s_k| < min_spacing, unless both are mandatory
                 Σ_i cost · x_i ≤ budget,   x_i = 1 for the mandatory starts.

  Among the plans of maximal coverage, the one with the fewest starts is taken (a second solve), so
  GPU-hours are not spent on a start that covers nothing new. A budget below the cost of the mandatory
  starts is infeasible, and the error names the smallest feasible budget.

- **The cheapest restoration** (`plan_restoration`). Given weight blocks (one matrix per layer and
  module) with their parameter counts and a predicted recovery share each (`block_recovery_estimates`:
  the measured recovery of a whole-model edit spread over the blocks in proportion to how far each
  block's singular vectors rotated between source and target), choose the blocks with the fewest
  parameters whose predicted recoveries add up to the target share (default 0.7):

      minimise   Σ_i params_i x_i   subject to   Σ_i recovery_i x_i ≥ target,   x_i ∈ {0, 1}.

  When even every block together is predicted to fall short, the error states the most that can be
  reached. Among the cheapest plans, the one with the largest predicted recovery is taken.

A plan is a JSON-ready dict: the chosen items, the objective, the budget used, the solver status.
"""

from __future__ import annotations

import csv
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pulp

from sftrl.curves import CurvePoint, read_ood_curve
from sftrl.names import OOD, is_rl_model, rl_run
from sftrl.peak import peak_index

SOLVER = "PuLP CBC"
TOLERANCE = 1e-9


class PlanError(ValueError):
    """Bad input to a plan: the message names what is wrong."""


class PlanInfeasible(PlanError):
    """No plan satisfies the constraints; `bound` is the smallest feasible budget or the most reachable."""

    def __init__(self, message: str, bound: float):
        super().__init__(message)
        self.bound = bound


def _solver() -> pulp.LpSolver:
    """CBC as bundled with PuLP (no solver to install); PuLP 4 moves it to an extra, hence its warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(msg=False)


def _solve(problem: pulp.LpProblem) -> str:
    problem.solve(_solver())
    status = pulp.LpStatus[problem.status]
    if status != "Optimal":
        raise PlanError(f"the solver ended with status {status!r} on {problem.name}")
    return status


def _chosen(variable: pulp.LpVariable) -> bool:
    return (variable.value() or 0.0) > 0.5


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PlanError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise PlanError(f"{what} must be positive, got {value!r}")
    return float(value)


# --- where to start RL -----------------------------------------------------------------------------


def read_curve(path: str | Path) -> list[CurvePoint]:
    """The SFT checkpoints of sft_curve.csv's OOD split in step order; step 0, the base model, is not an RL
    start and is left out."""
    try:
        points, _ = read_ood_curve(path)
    except ValueError as error:
        raise PlanError(str(error)) from None
    return points


def read_benchmark_seconds(path: str | Path) -> float:
    """Wall-clock seconds of one job from a Snakemake benchmark file (tab-separated, column `s`; the mean
    when the job was benchmarked several times)."""
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"benchmark file {path} does not exist")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise PlanError(f"benchmark file {path} has no `s` column of wall-clock seconds")
    try:
        seconds = [float(row["s"]) for row in rows]
    except ValueError:
        raise PlanError(f"benchmark file {path}: the `s` column is not numeric") from None
    return sum(seconds) / len(seconds)


def run_cost_from_benchmarks(paths: Sequence[str | Path], gpus_per_run: float = 1.0) -> float:
    """GPU-hours of one run: the mean wall time of the benchmarked runs times the GPUs a run holds."""
    gpus = _positive(gpus_per_run, "GPUs per run")
    if not paths:
        raise PlanError("no benchmark files of RL runs to take the cost of a run from; give the cost instead")
    hours = [read_benchmark_seconds(path) / 3600 for path in paths]
    return _positive(gpus * sum(hours) / len(hours), f"the mean cost of the runs in {[str(p) for p in paths]}")


def start_cost(
    algorithms: Sequence[str],
    seeds: int,
    run_cost: float | None = None,
    benchmarks: Mapping[str, Sequence[str | Path]] | None = None,
    gpus_per_run: float = 1.0,
) -> tuple[float, dict[str, float]]:
    """GPU-hours of the RL runs started from one checkpoint: one run per algorithm and seed.

    The cost of one run is `run_cost` when given, else per algorithm the mean of its benchmark files
    (`benchmarks`: algorithm → paths). Returns the total per start and the cost of one run per algorithm.
    """
    if not algorithms:
        raise PlanError("no RL algorithms: nothing to plan")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise PlanError(f"the number of seeds must be a positive integer, got {seeds!r}")
    per_run: dict[str, float] = {}
    for algorithm in algorithms:
        if run_cost is not None:
            per_run[algorithm] = _positive(run_cost, "the cost of one RL run (GPU-hours)")
            continue
        paths = (benchmarks or {}).get(algorithm) or []
        if not paths:
            raise PlanError(
                f"the cost of an RL run is missing: no cost given and no benchmark file of a {algorithm} run; "
                "set plan.rl_run_cost (GPU-hours per run)"
            )
        per_run[algorithm] = run_cost_from_benchmarks(paths, gpus_per_run)
    return seeds * sum(per_run.values()), per_run


def ood_peak_point(curve: Sequence[CurvePoint]) -> CurvePoint:
    """The checkpoint with the best OOD success on the curve, by the rule of `sftrl.peak` (the earliest
    step on a tie; `curve` in step order)."""
    return curve[peak_index([p.success for p in curve])]


def _check_curve(curve: Sequence[CurvePoint]) -> list[CurvePoint]:
    if not curve:
        raise PlanError("the SFT curve is empty: no checkpoint to start RL from")
    curve = sorted(curve, key=lambda p: p.step)
    steps = [p.step for p in curve]
    if len(set(steps)) != len(steps):
        raise PlanError(f"the SFT curve gives a step twice: {steps}")
    for point in curve:
        if not 0 <= point.success <= 1 or not math.isfinite(point.success):
            raise PlanError(f"step {point.step}: OOD success {point.success!r} is not a rate in [0, 1]")
    return curve


def plan_rl_starts(
    curve: Sequence[CurvePoint],
    budget: float,
    cost_per_start: float,
    min_spacing: int = 0,
    coverage_radius: int | None = None,
    required: Iterable[int] = (),
) -> dict[str, Any]:
    """The RL start checkpoints within `budget` GPU-hours (see the module docstring).

    cost_per_start: GPU-hours of the RL runs from one checkpoint; min_spacing: the least distance in
    steps between two chosen starts (mandatory starts exempt); coverage_radius: how far in steps a start
    covers the curve (default: min_spacing); required: steps that must be starts besides the peak and
    the last checkpoint.
    """
    curve = _check_curve(curve)
    budget = _positive(budget, "the RL budget (GPU-hours)")
    cost = _positive(cost_per_start, "the cost of the RL runs of one start (GPU-hours)")
    if isinstance(min_spacing, bool) or not isinstance(min_spacing, int) or min_spacing < 0:
        raise PlanError(f"the minimum spacing must be a non-negative number of steps, got {min_spacing!r}")
    radius = min_spacing if coverage_radius is None else coverage_radius
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise PlanError(f"the coverage radius must be a non-negative number of steps, got {radius!r}")
    steps = {p.step: p for p in curve}
    peak, last = ood_peak_point(curve), curve[-1]
    roles: dict[int, list[str]] = {peak.step: ["peak"]}
    roles.setdefault(last.step, []).append("last")
    for step in required:
        if step not in steps:
            raise PlanError(f"required start step {step} is not on the SFT curve {sorted(steps)}")
        roles.setdefault(step, []).append("required")
    mandatory = sorted(roles)
    smallest = len(mandatory) * cost
    if smallest > budget * (1 + TOLERANCE):
        names = ", ".join(f"step {s} ({'/'.join(roles[s])})" for s in mandatory)
        raise PlanInfeasible(
            f"an RL budget of {budget:g} GPU-hours is below the cost of the mandatory starts {names}: "
            f"{len(mandatory)} × {cost:g} = {smallest:g} GPU-hours; the smallest feasible budget is {smallest:g}",
            smallest,
        )

    candidates = sorted({p.step for p in curve if p.step >= peak.step} | set(mandatory))
    stretch = [p for p in curve if p.step > peak.step]
    weight = {p.step: max(0.0, peak.success - p.success) for p in stretch}
    problem = pulp.LpProblem("rl_starts", pulp.LpMaximize)
    x = {s: problem.add_variable(f"start_{s}", cat="Binary") for s in candidates}
    y = {p.step: problem.add_variable(f"covered_{p.step}", lowBound=0, upBound=1) for p in stretch}
    coverage = pulp.lpSum(weight[s] * y[s] for s in y)
    problem += coverage
    for s in y:
        near = [x[i] for i in candidates if abs(i - s) <= radius]
        problem += y[s] <= pulp.lpSum(near), f"cover_{s}"
    for position, i in enumerate(candidates):
        for k in candidates[position + 1 :]:
            if k - i < min_spacing and not (i in roles and k in roles):
                problem += x[i] + x[k] <= 1, f"spacing_{i}_{k}"
    for s in mandatory:
        problem += x[s] == 1, f"mandatory_{s}"
    problem += pulp.lpSum(cost * x[s] for s in candidates) <= budget, "budget"
    _solve(problem)
    best = pulp.value(coverage) or 0.0

    # Second solve: the fewest starts among the plans of maximal coverage.
    problem.sense = pulp.LpMinimize
    problem.setObjective(pulp.lpSum(x.values()))
    problem += coverage >= best - 1e-7, "max_coverage"
    status = _solve(problem)

    chosen = [s for s in candidates if _chosen(x[s])]
    total = sum(weight.values())
    covered = {s for s in y if any(abs(i - s) <= radius for i in chosen)}
    return {
        "plan": "rl_starts",
        "solver": SOLVER,
        "status": status,
        "steps": chosen,
        "chosen": [
            {
                "step": s,
                "ood": steps[s].success,
                "ci_low": steps[s].ci_low,
                "ci_high": steps[s].ci_high,
                "ood_drop": weight.get(s, 0.0),
                "why": roles.get(s, ["coverage"]),
                "covers": sorted(j for j in covered if abs(s - j) <= radius),
            }
            for s in chosen
        ],
        "objective": {
            "coverage": sum(weight[s] for s in covered),
            "coverage_share": sum(weight[s] for s in covered) / total if total > 0 else 1.0,
            "total_drop_weight": total,
        },
        "budget": budget,
        "budget_used": len(chosen) * cost,
        "cost_per_start": cost,
        "smallest_feasible_budget": smallest,
        "min_spacing": min_spacing,
        "coverage_radius": radius,
        "peak_step": peak.step,
        "last_step": last.step,
        "curve": [asdict(p) | {"ood_drop": weight.get(p.step, 0.0)} for p in curve],
    }


# --- the cheapest restoration ----------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One weight matrix of the model: its tensor name, layer and module, size and predicted recovery
    (as a share of the source−target gap: 1.0 is the whole gap)."""

    name: str
    layer: int
    module: str
    params: int
    recovery: float


def plan_restoration(blocks: Sequence[Block], target: float = 0.7) -> dict[str, Any]:
    """The blocks with the fewest parameters whose predicted recovery reaches `target` (see the module
    docstring); PlanInfeasible states the most that every block together is predicted to reach."""
    if not blocks:
        raise PlanError("no weight blocks to choose from")
    target = _positive(target, "the target recovery share")
    if target > 1:
        raise PlanError(f"the target recovery share must be at most 1 (the whole gap), got {target}")
    names = [b.name for b in blocks]
    if len(set(names)) != len(names):
        raise PlanError("a weight block is given twice: " + ", ".join(sorted({n for n in names if names.count(n) > 1})))
    for block in blocks:
        if isinstance(block.params, bool) or not isinstance(block.params, int) or block.params <= 0:
            raise PlanError(f"block {block.name}: parameter count {block.params!r} is not a positive integer")
        if not math.isfinite(block.recovery):
            raise PlanError(f"block {block.name}: predicted recovery {block.recovery!r} is not a number")
    reachable = sum(max(0.0, b.recovery) for b in blocks)
    if reachable < target - TOLERANCE:
        raise PlanInfeasible(
            f"the target recovery {100 * target:g}% cannot be reached: all {len(blocks)} blocks together are "
            f"predicted to recover at most {100 * reachable:.1f}% of the OOD gap",
            reachable,
        )
    problem = pulp.LpProblem("cheapest_restoration", pulp.LpMinimize)
    x = {b.name: problem.add_variable(f"block_{i}", cat="Binary") for i, b in enumerate(blocks)}
    params = pulp.lpSum(b.params * x[b.name] for b in blocks)
    recovery = pulp.lpSum(b.recovery * x[b.name] for b in blocks)
    problem += params
    problem += recovery >= target, "target"
    _solve(problem)
    cheapest = pulp.value(params)

    # Second solve: the largest predicted recovery among the cheapest plans.
    problem.sense = pulp.LpMaximize
    problem.setObjective(recovery)
    problem += params <= cheapest + 0.5, "cheapest"
    status = _solve(problem)

    chosen = [b for b in blocks if _chosen(x[b.name])]
    total = sum(b.params for b in blocks)
    used = sum(b.params for b in chosen)
    return {
        "plan": "cheapest_restoration",
        "solver": SOLVER,
        "status": status,
        "target": target,
        "chosen": [asdict(b) for b in sorted(chosen, key=lambda b: (b.layer, b.module, b.name))],
        "tensors": [b.name for b in sorted(chosen, key=lambda b: (b.layer, b.module, b.name))],
        "objective": {"params": used},
        "predicted_recovery": sum(b.recovery for b in chosen),
        "max_predicted_recovery": reachable,
        "params_total": total,
        "params_share": used / total,
        "blocks": len(blocks),
    }


def exact_patterns(names: Iterable[str]) -> list[str]:
    """Tensor-name patterns (`sftrl.spectral.weights.select`) matching exactly these names."""
    return [f"re:^{re.escape(name)}$" for name in names]


def block_recovery_estimates(
    table,
    measured_recovery: float,
    params: Mapping[str, int],
) -> list[Block]:
    """Predicted recovery per weight block from a spectral pair table of source A against target B
    (`sftrl.spectral.metrics.analyse_pair`, tidy format) and the measured recovery share of the edit that put
    back every block at once.

    The measured share is spread over the blocks in proportion to the rotational energy of each block's
    difference, ‖W_B − W_A‖_F² × energy_rotation_share (the off-diagonal part of ΔW in A's singular
    basis: how far the singular directions moved), assuming the blocks' contributions add up. `params`
    maps tensor names to their parameter counts; every block of the table needs one.
    """
    if not math.isfinite(measured_recovery):
        raise PlanError(f"the measured recovery {measured_recovery!r} is not a number")
    scalars = table.loc[table["metric"].isin(["delta_fro", "energy_rotation_share"])]
    if scalars.empty:
        raise PlanError("the spectral table has no delta_fro / energy_rotation_share rows")
    wide = scalars.pivot(index=["name", "layer", "module"], columns="metric", values="value").reset_index()
    energy = {}
    for _, row in wide.iterrows():
        delta, share = float(row.get("delta_fro", math.nan)), float(row.get("energy_rotation_share", math.nan))
        energy[row["name"]] = 0.0 if math.isnan(delta) or math.isnan(share) else delta**2 * share
    total = sum(energy.values())
    if total <= 0:
        raise PlanError("source and target do not differ in any analysed block: nothing to restore")
    missing = sorted(set(energy) - set(params))
    if missing:
        raise PlanError(f"no parameter count for block(s) {missing[:5]}{' …' if len(missing) > 5 else ''}")
    return [
        Block(
            name=row["name"],
            layer=int(row["layer"]),
            module=str(row["module"]),
            params=int(params[row["name"]]),
            recovery=measured_recovery * energy[row["name"]] / total,
        )
        for _, row in wide.sort_values(["layer", "module", "name"]).iterrows()
    ]


# --- plans from the workflow's files ---------------------------------------------------------------


def rl_benchmarks(directory: str | Path, algorithms: Sequence[str]) -> dict[str, list[Path]]:
    """Benchmark files of the RL runs already done, per algorithm (files named like the runs: RUN.tsv)."""
    found: dict[str, list[Path]] = {algorithm: [] for algorithm in algorithms}
    directory = Path(directory)
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.suffix == ".tsv" and is_rl_model(path.stem) and rl_run(path.stem).algorithm in found:
                found[rl_run(path.stem).algorithm].append(path)
    return found


def plan_rl_from_files(
    curve_csv: str | Path,
    algorithms: Sequence[str],
    seeds: int,
    budget: float | None = None,
    configured_starts: int | None = None,
    run_cost: float | None = None,
    benchmark_dir: str | Path | None = None,
    gpus_per_run: float = 1.0,
    min_spacing: int = 0,
    coverage_radius: int | None = None,
    required: Iterable[int] = (),
) -> dict[str, Any]:
    """`plan_rl_starts` on sft_curve.csv. Without a budget, the budget is what `configured_starts` start
    checkpoints cost (the plan then says what the same GPU-hours would have bought)."""
    benchmarks = rl_benchmarks(benchmark_dir, algorithms) if benchmark_dir is not None else {}
    cost, per_run = start_cost(algorithms, seeds, run_cost, benchmarks, gpus_per_run)
    if budget is None:
        if not configured_starts:
            raise PlanError("no RL budget given, and no configured RL starts to take one from")
        budget, source = configured_starts * cost, f"the cost of the {configured_starts} configured RL start(s)"
    else:
        source = "the configured budget"
    result = plan_rl_starts(read_curve(curve_csv), budget, cost, min_spacing, coverage_radius, required)
    result.update(
        budget_source=source,
        run_cost=per_run,
        run_cost_source="configured" if run_cost is not None else "benchmarks of RL runs done",
        runs_per_start={"algorithms": list(algorithms), "seeds": seeds},
    )
    return result


def param_counts(model_dir: str | Path, names: Iterable[str]) -> dict[str, int]:
    """Parameter counts of tensors, read from the safetensors headers (no tensor is loaded)."""
    from sftrl.spectral.weights import ModelWeights

    weights = ModelWeights(model_dir)
    return {name: math.prod(weights.info(name).shape) for name in names}


def measured_recovery(restoration_csv: str | Path, edit: str, split: str = OOD) -> dict[str, Any]:
    """The sft_peak → sft_end row of one edit in restoration.csv (recovery_pct empty when source and
    target score the same)."""
    with open(restoration_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if (row["source_role"], row["target_role"], row["edit"], row["split"]) == (
                "sft_peak",
                "sft_end",
                edit,
                split,
            ):
                return row
    raise PlanError(f"{restoration_csv} has no {split} row of the sft_peak → sft_end edit {edit!r}")


def plan_restoration_from_files(
    spectrum_table: str | Path | None,
    restoration_csv: str | Path,
    edit: str,
    model_dir: str | Path,
    target: float = 0.7,
) -> dict[str, Any]:
    """`plan_restoration` from the workflow's files: the spectral table of sft_peak against sft_end, the
    measured recovery of `edit` in restoration.csv, the parameter counts of the target model. Returns a
    record with status `Not applicable` (and the reason) where no prediction can be made."""
    import pandas as pd

    base = {
        "plan": "cheapest_restoration",
        "solver": SOLVER,
        "target": target,
        "edit": edit,
        "chosen": [],
        "tensors": [],
    }
    row = measured_recovery(restoration_csv, edit)
    if spectrum_table is None:
        return {**base, "status": "Not applicable", "message": "sft_peak is not an earlier checkpoint than sft_end"}
    if row["recovery_pct"] in ("", None):
        return {
            **base,
            "status": "Not applicable",
            "message": f"sft_peak and sft_end have the same OOD success ({row['target_success']}): no gap to recover",
        }
    recovery = float(row["recovery_pct"]) / 100
    table = pd.read_parquet(spectrum_table)
    blocks = block_recovery_estimates(table, recovery, param_counts(model_dir, sorted(set(table["name"]))))
    result = plan_restoration(blocks, target)
    result.update(
        edit=edit,
        measured_whole_edit={
            "recovery_pct": 100 * recovery,
            "success": float(row["success"]),
            "source_success": float(row["source_success"]),
            "target_success": float(row["target_success"]),
            "n": int(row["n"]),
        },
        estimate="the measured recovery of the whole edit spread over the blocks by their rotational energy",
    )
    return result


# What a planned edit keeps of the measured edit it narrows (its scope becomes the chosen tensors).
PLANNED_EDIT_FIELDS = ("kind", "top", "tail", "top_k", "tail_k", "covering", "round_trip")


def planned_edit(plan: Mapping[str, Any], measured: Mapping[str, Any]) -> dict[str, Any]:
    """The EditSpec dict that builds a restoration plan: the `measured` edit (its dict) restricted to the
    chosen tensors."""
    if plan.get("status") != "Optimal" or not plan.get("tensors"):
        raise PlanError(f"the restoration plan has no edit to build (status {plan.get('status')!r})")
    kept = {key: measured[key] for key in PLANNED_EDIT_FIELDS if key in measured}
    return {**kept, "patterns": exact_patterns(plan["tensors"])}


def infeasible_record(kind: str, error: PlanInfeasible, **extra: Any) -> dict[str, Any]:
    """A plan file saying why there is no plan, and the bound that would make one (not an empty plan)."""
    bound = "smallest_feasible_budget" if kind == "rl_starts" else "max_predicted_recovery"
    return {
        "plan": kind,
        "solver": SOLVER,
        "status": "Infeasible",
        "message": str(error),
        bound: error.bound,
        "chosen": [],
        **extra,
    }
