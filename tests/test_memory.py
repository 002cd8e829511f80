"""Measured memory beside the plan: the records jobs write as they exit, and the table."""

import json
import math
import subprocess
import sys

from sftrl import io, memory


def test_a_process_records_its_peak_as_it_exits(tmp_path):
    record = tmp_path / "eval" / "sft-5.memory.json"
    code = (
        f"from sftrl.memory import record_at_exit; record_at_exit({str(record)!r}); "
        "block = bytearray(300 * 2**20); block[::4096] = b'x' * len(block[::4096])"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    peak = json.loads(record.read_text())["peak_rss_gib"]
    assert 0.29 < peak < 2, "the 300 MiB the process touched is in its peak"


def test_each_rank_writes_its_own_record(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert memory.record_path(tmp_path / "sft.memory.json") == tmp_path / "sft.rank1.memory.json"


def test_jobs_are_put_beside_their_stage_estimate(tmp_path):
    bench = tmp_path / "benchmarks"
    io.write_json(bench / "rl" / "rl-ppo-from50-s1.memory.json", {"peak_rss_gib": 1.5})
    io.write_json(bench / "eval" / "edits" / "a__b" / "layer-x.memory.json", {"peak_rss_gib": 0.5})
    io.write_json(bench / "sft" / "sft.rank0.memory.json", {"peak_rss_gib": 3.0, "gpu_peak_gib": {"H100 #0": 30.0}})
    io.write_json(bench / "sft" / "sft.rank1.memory.json", {"peak_rss_gib": 2.0, "gpu_peak_gib": {"H100 #1": 33.0}})
    (bench / "sft" / "sft.tsv").write_text("s\th:m:s\tmax_rss\n812.5\t0:13:32\t3000\n")
    plan = [
        {"kind": "sft", "job": "SFT step: 4 x 512 tokens per process", "gpus": 2, "estimate_gib": 40.0},
        {"kind": "ppo", "job": "PPO update: 8 x 900 tokens per process", "gpus": 1, "estimate_gib": 20.0},
        {"kind": "evaluate", "job": "evaluation: 512 episodes x 200 tokens", "gpus": 1, "estimate_gib": 10.0},
    ]
    rows = {row["job"]: row for row in memory.plan_vs_measured(plan, memory.measured_jobs(bench))}
    sft, ppo = rows["sft"], rows["rl-ppo-from50-s1"]
    assert (sft["measured_gpu_gib"], sft["gpu_over_plan"], sft["peak_rss_gib"], sft["wall_s"]) == (
        33.0,
        0.82,
        3.0,
        812.5,
    )
    assert ppo["plan"].startswith("PPO update") and ppo["planned_gib_per_gpu"] == 20.0
    assert math.isnan(ppo["measured_gpu_gib"]) and ppo["peak_rss_gib"] == 1.5 and ppo["wall_s"] is None
    assert rows["edits/a__b/layer-x"]["stage"] == "eval" and rows["edits/a__b/layer-x"]["plan"].startswith("eval")
    memory.write_table(rows.values(), tmp_path / "memory.csv")
    assert (tmp_path / "memory.csv").read_text().splitlines()[0] == ",".join(memory.COLUMNS)
