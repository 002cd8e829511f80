"""The workflow end to end on the small CI experiment, and its answers to bad targets and paths."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CI_CONFIG = ROOT / "tests" / "configs" / "ci.yaml"


def snakemake(workdir: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--profile",
            str(ROOT / "profiles" / "local"),
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(workdir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    result = snakemake(workdir, "--configfile", str(CI_CONFIG))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (workdir / "snakemake.out").write_text(result.stdout + result.stderr)
    return workdir / "results" / "ci"


def test_the_output_names_each_job_in_lines_a_person_reads(ci_run):
    lines = (ci_run.parent.parent / "snakemake.out").read_text().splitlines()
    assert max(map(len, lines)) <= 300
    assert any(line.startswith("job ") and ": evaluate (model=sft-5)" in line for line in lines)
    assert not any(line.strip().startswith(("input:", "output:")) for line in lines)


def test_every_job_log_begins_with_what_it_does(ci_run):
    assert (ci_run / "logs" / "eval" / "sft-5.log").read_text().splitlines()[0] == "evaluate sft-5 on every split"
    assert (ci_run / "logs" / "sft" / "sft.log").read_text().startswith("SFT of the base on the ID set")
    for log in (ci_run / "logs").rglob("*.log"):
        first = log.read_text().splitlines()[0]
        assert first and not first[0].isdigit() and "|" not in first, f"{log}: {first}"


def test_jobs_start_in_the_fork_server_which_ends_with_the_run(ci_run):
    log = (ci_run / "logs" / "forkserver.log").read_text().splitlines()
    started = [line for line in log if line.startswith("[forkserver] child ")]
    for script in ("evaluate.py", "rl.py", "spectrum.py", "claims.py"):  # the first jobs may start before it listens
        assert any(f"scripts/{script}" in line for line in started), script
    assert log[-1] == "[forkserver] stopped"


def test_the_tracker_has_every_training_and_evaluation_run(ci_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = {str(path.parent.relative_to(ci_run / "tb")) for path in (ci_run / "tb").rglob("events.out.tfevents.*")}
    assert {"sft", "eval/base", "eval/sft-5", "eval/sft-20", "rl-ppo-from10-s0", "rl-grpo-from10-s0"} <= runs
    for step in (5, 10, 20):  # each evaluation of the ladder at its SFT step
        events = EventAccumulator(str(ci_run / "tb" / "eval" / f"sft-{step}"))
        events.Reload()
        assert [e.step for e in events.Scalars("eval/ood/success")] == [step]


def test_measured_memory_sits_beside_the_plan(ci_run):
    table = pd.read_csv(ci_run / "tables" / "memory_plan_vs_measured.csv")
    assert {"sft", "eval", "rl"} <= set(table["stage"])
    assert (table["peak_rss_gib"] > 0.1).all() and table["planned_gib_per_gpu"].notna().all()
    assert table["measured_gpu_gib"].isna().all(), "no GPU here"


def test_curve_covers_base_and_every_checkpoint(ci_run):
    with open(ci_run / "tables" / "sft_curve.csv") as handle:
        rows = list(csv.DictReader(handle))
    steps = {(int(r["step"]), r["split"]) for r in rows}
    assert steps == {(s, split) for s in (0, 5, 10, 20) for split in ("id", "id_unseen", "ood")}
    for row in rows:
        assert float(row["ci_low"]) <= float(row["success"]) <= float(row["ci_high"])
    assert (ci_run / "figures" / "sft_curve.png").stat().st_size > 10_000
    assert (ci_run / "figures" / "sft_curve.pdf").exists()


def test_ladder_directories_are_complete_models(ci_run):
    for step in (5, 10, 20):
        model = ci_run / "models" / f"sft-{step}"
        assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
            p.name for p in model.iterdir()
        }
    assert (ci_run / "sft" / "history.jsonl").stat().st_size > 0


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_roles_name_the_ood_peak(ci_run):
    roles = json.loads((ci_run / "tables" / "roles.json").read_text())
    ood = {row["step"]: row["selection_rate"] for row in roles["ood"]}  # the peak is chosen on this half
    assert sorted(ood) == [5, 10, 20]
    best = max(ood.values())
    assert roles["steps"]["sft_peak"] == min(step for step, rate in ood.items() if rate == best)
    assert all(row["selection_n"] + row["report_n"] == row["n"] for row in roles["ood"])
    assert roles["roles"]["sft_end"] == "sft-10"  # restore.sft_end in ci.yaml
    assert roles["rl_from_end"] == ["rl-ppo-from10-s0", "rl-grpo-from10-s0"]


def test_spectrum_tables_and_summary(ci_run):
    peak = json.loads((ci_run / "tables" / "roles.json").read_text())["roles"]["sft_peak"]
    rl = ["rl-ppo-from10-s0", "rl-grpo-from10-s0"]
    later = [f"sft-{s}" for s in (5, 10, 20) if s > int(peak.removeprefix("sft-"))]
    pairs = [("base", f"sft-{s}") for s in (5, 10, 20)] + [("base", m) for m in rl] + [(peak, m) for m in later]
    assert {p.name for p in (ci_run / "spectrum").glob("*.parquet")} == {f"{a}__{b}.parquet" for a, b in pairs}
    assert {p.name for p in (ci_run / "spectrum" / "updates").iterdir()} == {f"{m}.parquet" for m in rl}
    table = pd.read_parquet(ci_run / "spectrum" / "base__sft-20.parquet")
    assert list(table.columns) == ["layer", "module", "name", "index_or_k", "metric", "value"]
    assert set(table["module"]) == {"q_proj", "down_proj"}  # spectrum.patterns in ci.yaml
    assert table["name"].nunique() == 4 * 2
    summary = read_csv(ci_run / "tables" / "spectrum_summary.csv")
    kinds = [row["kind"] for row in summary]
    assert kinds.count("base_to_sft") == 3 and kinds.count("base_to_rl") == 2
    assert kinds.count("peak_to_later") == len(later) and kinds.count("sft_vs_rl") == 2
    assert 0 < float(summary[0]["drift_median"]) < 0.05
    for name in ("spectrum_drift", "spectrum_angles", "spectrum_heatmap"):
        assert (ci_run / "figures" / f"{name}.png").stat().st_size > 10_000
        assert (ci_run / "figures" / f"{name}.pdf").exists()


def test_restoration_grid_is_evaluated(ci_run):
    rows = read_csv(ci_run / "tables" / "restoration.csv")
    edits = {(r["source_role"], r["target_role"], r["edit"]) for r in rows}
    assert edits == {
        ("sft_peak", "sft_end", "direction-top20-tail0"),
        ("sft_peak", "sft_end", "value-top100-tail0"),
        ("sft_peak", "sft_end", "layer-first25pct"),  # "0:0.25" is the same layer: made once
        ("sft_end", "rl-ppo-from10-s0", "direction-top0-tail20"),
    }
    assert len(rows) == 4 * 3
    for row in rows:
        success, source, target = (float(row[k]) for k in ("success", "source_success", "target_success"))
        assert float(row["ci_low"]) <= success <= float(row["ci_high"])
        if source == target:
            assert row["recovery_pct"] == ""
        else:
            assert float(row["recovery_pct"]) == pytest.approx(100 * (success - target) / (source - target))
        metrics = json.loads((ci_run / "eval" / row["model"] / row["split"] / "metrics.json").read_text())
        assert metrics["model_records"]["edit.json"]["name"] == row["edit"]
        assert (ci_run / "eval" / row["model"] / row["split"] / "samples.jsonl").exists()
    for kind in ("direction", "value", "layer"):
        assert (ci_run / "figures" / f"restoration_{kind}.png").stat().st_size > 10_000


def test_plans_claims_and_report_figures(ci_run):
    rl_plan = json.loads((ci_run / "plan" / "rl_starts.json").read_text())
    # ci.yaml pays for RL from one step; the plan must start from the OOD peak, sft_end and the last step
    assert rl_plan["status"] == "Infeasible" and rl_plan["solver"] == "PuLP CBC"
    assert f"the smallest feasible budget is {rl_plan['smallest_feasible_budget']:g}" in rl_plan["message"]
    restoration = json.loads((ci_run / "plan" / "restoration.json").read_text())
    assert restoration["status"] in ("Optimal", "Infeasible", "Not applicable")
    planned = [r for r in read_csv(ci_run / "tables" / "restoration_recovery.csv") if r["edit"].startswith("plan-")]
    if restoration["status"] == "Optimal":
        assert (ci_run / "eval" / "edits" / "plan" / "cheapest" / "ood" / "metrics.json").exists()
        assert len(planned) == 1 and float(planned[0]["predicted_recovery_pct"]) >= 70
    else:
        assert not planned and restoration["message"]

    claims = json.loads((ci_run / "report" / "claims.json").read_text())
    assert list(claims["verdicts"]) == ["F1", "F2", "F3", "F4"]
    checks = {c["id"]: c for f in claims["findings"] for c in f["checks"]}
    assert {c["verdict"] for c in checks.values()} <= {"supported", "not supported", "inconclusive"}
    assert {"F1.peak", "F1.loss", "F3.direction_top20", "F3.layers_first25", "F3.direction_vs_value"} <= set(checks)
    # F2 reads base -> sft_end (step 10 in ci.yaml) and the RL runs from it
    assert {f"F2.drift_vs_rotation.{m}" for m in ("sft-10", "rl-ppo-from10-s0", "rl-grpo-from10-s0")} <= set(checks)
    assert checks["F2.drift_vs_rotation.sft-10"]["numbers"]["matrices"] == 8
    one_start = checks["F4.better_in_better_out.ppo"]  # ci.yaml starts RL from one step: no rank correlation
    assert one_start["verdict"] == "inconclusive" and one_start["numbers"]["n"] == 1
    text = (ci_run / "report" / "claims.md").read_text()
    assert all(f"## {f}: {claims['verdicts'][f]}" in text for f in claims["verdicts"])
    for name in ("success_vs_step", "loss_vs_ood", "recovery_window", "restoration_recovery"):
        assert (ci_run / "figures" / f"{name}.png").stat().st_size > 10_000
        assert (ci_run / "figures" / f"{name}.pdf").exists()
    for name in ("loss_curve", "recovery_window", "restoration_recovery"):
        assert pd.read_parquet(ci_run / "tables" / f"{name}.parquet").shape[0] == len(
            read_csv(ci_run / "tables" / f"{name}.csv")
        )


def test_representations_and_diagnostics(ci_run):
    """sft_peak against sft_end and the RL runs from it, with F1's check read from the table; format errors
    over every ladder step; PPO's logged advantages per start."""
    rows = read_csv(ci_run / "tables" / "representations.csv")
    roles = json.loads((ci_run / "tables" / "roles.json").read_text())["roles"]
    assert {r["reference"] for r in rows} == {roles["sft_peak"]}
    compared = {"rl-ppo-from10-s0": "rl_from_end", "rl-grpo-from10-s0": "rl_from_end"}
    if roles["sft_peak"] != roles["sft_end"]:  # sft_end against itself is no comparison
        compared["sft-10"] = "sft_end"
    assert {r["model"]: r["role"] for r in rows} == compared
    assert len(rows) == 2 * len(compared) * 6  # splits x models x metrics
    rl = [r for r in rows if r["role"] == "rl_from_end"]
    if "sft-10" in compared:  # each RL run's recovery delta against sft_end
        assert all(float(r["delta_low"]) <= float(r["delta_high"]) for r in rl)
    assert (ci_run / "figures" / "representations.png").stat().st_size > 10_000
    claims = json.loads((ci_run / "report" / "claims.json").read_text())
    checks = {c["id"] for f in claims["findings"] for c in f["checks"]}
    assert {"F1.representations.ppo", "F1.representations.grpo"} <= checks
    errors = read_csv(ci_run / "tables" / "format_errors.csv")
    assert sorted({int(r["step"]) for r in errors}) == [0, 5, 10, 20] and len(errors) == 4 * 3
    advantages = read_csv(ci_run / "tables" / "ppo_advantages.csv")
    assert [(r["algorithm"], r["start_step"]) for r in advantages] == [("ppo", "10")]
    history = [json.loads(line) for line in (ci_run / "rl" / "rl-ppo-from10-s0" / "history.jsonl").open()]
    assert int(advantages[0]["turns"]) == sum(row["turns"] for row in history)
    assert abs(float(advantages[0]["mean"])) < 1e-3  # normalised per update


def test_html_report_gathers_every_stage(ci_run, tmp_path):
    html = tmp_path / "report.html"
    result = snakemake(ci_run.parent.parent, "--configfile", str(CI_CONFIG), "--report", str(html), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "ERROR" not in result.stderr  # a caption that does not render
    text = html.read_text()
    for item in (
        "Claims",
        "Plans",
        "Spectral analysis",
        "Restoration",
        "Representations",
        "claims.md",
        "restoration_recovery.png",
        "representations.png",
    ):
        assert item in text


def test_only_the_ladder_stays(ci_run):
    """ci.yaml keeps only the ladder: RL and edited models are gone once evaluated, analysed and edited,
    each RL run's checkpoints once it ended; their results and records remain (and nothing reruns)."""
    models = {p.name for p in (ci_run / "models").iterdir()}
    assert models == {"base", "sft-5", "sft-10", "sft-20"}
    assert not (ci_run / "work" / "rl").exists() or not any((ci_run / "work" / "rl").iterdir())
    for run in ("rl-ppo-from10-s0", "rl-grpo-from10-s0"):
        for model in (run, f"{run}-u1"):  # the final policy and the one exported after update 1
            metrics = json.loads((ci_run / "eval" / model / "ood" / "metrics.json").read_text())
            records = metrics["model_records"]["provenance.json"]
            assert records["algorithm"] == run.split("-")[1]
        assert records["update"] == 1 and records["step"] == 1
    assert (ci_run / "work" / "sft").is_dir()  # the ladder's run stays resumable


def test_rl_curve_has_the_start_the_exports_and_the_end(ci_run):
    """rl.eval_updates [1]: each run's policy after its first update is evaluated beside its start and end."""
    with open(ci_run / "tables" / "rl_curve.csv") as handle:
        rows = list(csv.DictReader(handle))
    points = {(r["algorithm"], int(r["update"]), r["model"]) for r in rows if r["split"] == "ood"}
    assert points == {
        (algo, update, model)
        for algo in ("ppo", "grpo")
        for update, model in ((0, "sft-10"), (1, f"rl-{algo}-from10-s0-u1"), (2, f"rl-{algo}-from10-s0"))
    }
    assert (ci_run / "figures" / "rl_curve.png").stat().st_size > 10_000


def test_second_run_has_nothing_to_do(ci_run):
    result = snakemake(ci_run.parent.parent, "--configfile", str(CI_CONFIG), "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_checkpoint_not_on_the_ladder_is_named(tmp_path):
    result = snakemake(tmp_path, "--configfile", str(CI_CONFIG), "-n", "results/ci/eval/sft-7/ood/metrics.json")
    assert result.returncode != 0
    assert "results/ci/eval/sft-7/ood/metrics.json" in result.stdout + result.stderr


def test_missing_user_model_is_named_before_any_job(tmp_path):
    missing = tmp_path / "no-such-model"
    override = tmp_path / "model.yaml"
    override.write_text(f"model: {{source: {missing}}}\n")
    result = snakemake(tmp_path, "--configfile", str(CI_CONFIG), str(override))
    assert result.returncode != 0
    assert str(missing) in result.stdout + result.stderr
    assert not (tmp_path / "results" / "ci" / "models").exists()


def test_rl_plan_mode_needs_a_budget_and_runs_rl_after_the_plan(tmp_path):
    override = tmp_path / "plan.yaml"
    override.write_text("rl: {from_steps: plan}\n")
    result = snakemake(tmp_path, "--configfile", str(CI_CONFIG), str(override), "-n")
    assert result.returncode != 0 and "plan.rl_budget" in result.stdout + result.stderr
    override.write_text("rl: {from_steps: plan}\nplan: {rl_budget: 1.0, rl_run_cost: 0.1}\n")
    result = snakemake(tmp_path, "--configfile", str(CI_CONFIG), str(override), "-n")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stats = {
        line.split()[0] for line in result.stdout.splitlines() if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert "plan_rl" in stats and "rl" not in stats  # the RL jobs are known only once the plan is made


def test_restoration_plan_names_a_missing_edit(tmp_path):
    override = tmp_path / "plan.yaml"
    override.write_text("plan: {restore_edit: direction-top33-tail0}\n")
    result = snakemake(tmp_path, "--configfile", str(CI_CONFIG), str(override), "-n")
    assert result.returncode != 0
    assert "plan.restore_edit 'direction-top33-tail0'" in result.stdout + result.stderr
    assert "direction-top20-tail0" in result.stdout + result.stderr  # the SVD edits there are
