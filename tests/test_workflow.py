"""The workflow end to end on the small CI experiment, and its answers to bad targets and paths."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

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
    return workdir / "results" / "ci"


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
