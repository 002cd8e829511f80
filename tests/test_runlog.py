"""Stage times and the critical path read from a Snakemake log."""

import runpy
import sys
from pathlib import Path

import pytest

from sftrl import runlog

LOG = """Building DAG of jobs...
Provided cores: 2
[Tue Dec  1 10:00:00 2026]
localrule datasets:
    output: r/data/sft.jsonl, r/data/eval_ood.jsonl
    log: r/logs/data/datasets.log
    jobid: 1
    benchmark: r/benchmarks/data/datasets.tsv
    threads: 1
Shell command: python scripts/data.py
[Tue Dec  1 10:00:02 2026]
Finished jobid: 1 (Rule: datasets)
[Tue Dec  1 10:00:02 2026]
rule sft:
    input: r/data/sft.jsonl
    output: r/models/sft-10, r/models/sft-20
    jobid: 2
    benchmark: r/benchmarks/sft/sft.tsv
[Tue Dec  1 10:00:02 2026]
rule evaluate:
    input: r/data/eval_ood.jsonl
    output: r/eval/base/ood/metrics.json
    jobid: 3
    benchmark: r/benchmarks/eval/base.tsv
[Tue Dec  1 10:00:32 2026]
Finished jobid: 3 (Rule: evaluate)
[Tue Dec  1 10:01:42 2026]
Finished jobid: 2 (Rule: sft)
[Tue Dec  1 10:01:42 2026]
rule evaluate:
    input: r/models/sft-10/model.safetensors, r/data/eval_ood.jsonl
    output: r/eval/sft-10/ood/metrics.json
    jobid: 4
    benchmark: r/benchmarks/eval/sft-10.tsv
[Tue Dec  1 10:01:42 2026]
localrule all:
    input: r/eval/base/ood/metrics.json
    jobid: 0
[Tue Dec  1 10:02:20 2026]
Finished jobid: 4 (Rule: evaluate)
[Tue Dec  1 10:02:21 2026]
Finished jobid: 0 (Rule: all)
[Tue Dec  1 10:02:21 2026]
rule rl:
    input: r/models/sft-20
    output: r/models/rl-ppo-from20-s0
    jobid: 5
"""


def test_jobs_stages_and_the_critical_path(tmp_path):
    jobs = runlog.parse_log(LOG.splitlines())
    assert [j.jobid for j in jobs] == [1, 2, 3, 4, 0]  # job 5 never finished
    assert [j.stage for j in jobs] == ["data", "sft", "eval", "eval", "all"]
    assert runlog.wall_seconds(jobs) == 141
    bench = tmp_path / "r" / "benchmarks" / "eval" / "sft-10.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tmax_rss\n37.25\t0:00:37\t100\n")
    runlog.read_benchmarks(jobs, tmp_path)
    rows = {row["stage"]: row for row in runlog.stage_times(jobs)}
    assert rows["eval"]["jobs"] == 2 and rows["eval"]["total_s"] == pytest.approx(30 + 37.25)
    assert rows["sft"]["total_s"] == 100 and next(iter(rows)) == "sft"
    path = runlog.critical_path(jobs)
    # the last job (all) waited for the base evaluation; the evaluation of sft-10 read a file inside the
    # sft job's output directory, so it depends on it
    assert [j.jobid for j in path] == [1, 3, 0]
    assert [j.jobid for j in next(j for j in jobs if j.jobid == 4).after] == [2, 1]
    assert runlog.provided_cores(LOG.splitlines()) == 2
    # sft (its threads not logged) ran from +2 s to +102 s: 30 s beside the base evaluation (a core), 70 s
    # alone (both cores); the data job ran alone on its one thread
    with_cores = {row["stage"]: row for row in runlog.stage_times(jobs, cores=2)}
    assert with_cores["sft"]["core_s"] == pytest.approx(30 * 1 + 70 * 2)
    assert jobs[0].threads == 1 and with_cores["data"]["core_s"] == pytest.approx(2 * 1)


def test_benchmark_script_reads_the_newest_run(tmp_path, monkeypatch, capsys):
    from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer, save_model

    tokenizer = build_tokenizer(["cards 1 2 3 4"], max_number=20)
    shape = TinyModelConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    save_model(build_tiny_model(tokenizer, shape, seed=0), tokenizer, tmp_path / "results" / "tiny" / "models" / "base")
    logs = tmp_path / ".snakemake" / "log"
    logs.mkdir(parents=True)
    (logs / "2026-12-01T100000.000000.snakemake.log").write_text(LOG)
    (logs / "2026-12-01T110000.000000.snakemake.log").write_text("Building DAG of jobs...\nNothing to be done.\n")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "default_run.py"
    monkeypatch.setattr(sys, "argv", ["default_run.py", "--workdir", str(tmp_path)])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "5 jobs, wall time 141 s" in out and "critical path" in out and "job time / 2 cores" in out
    assert "GFLOP/s at 512 rows" in out
    sft_row = next(line for line in out.splitlines() if line.startswith("sft "))
    assert sft_row.endswith("  1 processes") and sft_row.split()[6] == "170.0"  # its core-seconds
    empty = tmp_path / "empty"
    (empty / ".snakemake" / "log").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="run the workflow first"):
        runlog.latest_run(empty)
