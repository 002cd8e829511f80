"""Facts the documentation quotes from the configs, held to them: a stale resources table misleads more
than none."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(
    r"^\| `(?P<stage>\w+)` [^|]*\| (?P<gpus>\d+) GPUs?, (?P<cpus>\d+) cores?, (?P<gb>\d+) GB, (?P<time>[\d.]+ (?:h|min)) "
    r"\| (?P<p_gpus>\d+) GPUs?, (?P<p_cpus>\d+) cores?(?: per GPU)?, (?P<p_gb>\d+)(?:–(?P<p_gb_max>\d+))? GB, "
    r"(?P<p_hours>\d+) h \|",
    re.MULTILINE,
)


def minutes(text: str) -> float:
    value, unit = text.split()
    return float(value) * (60 if unit == "h" else 1)


def test_the_cluster_guide_quotes_each_stage_s_resources_as_the_configs_ask():
    default = yaml.safe_load((ROOT / "config.yaml").read_text())["resources"]
    papers = [
        yaml.safe_load((ROOT / "experiments" / name).read_text())["resources"]
        for name in ("qwen2.5-7b.yaml", "llama3.2-11b-vision.yaml")
    ]
    rows = list(ROW.finditer((ROOT / "docs" / "cluster.md").read_text()))
    assert {row["stage"] for row in rows} == {"sft", "rl", "evaluate"}
    for row in rows:
        stage, tiny = row["stage"], default[row["stage"]]
        assert (int(row["gpus"]), int(row["cpus"])) == (tiny["gpus"], tiny["cpus"]), stage
        assert (int(row["gb"]) * 1000, minutes(row["time"])) == (tiny["mem_mb"], tiny["runtime"]), stage
        for paper in papers:
            assert (int(row["p_gpus"]), int(row["p_cpus"])) == (paper[stage]["gpus"], paper[stage]["cpus"]), stage
            assert int(row["p_hours"]) * 60 == paper[stage]["runtime"], stage
        memory = sorted({paper[stage]["mem_mb"] // 1000 for paper in papers})
        assert [int(row["p_gb"]), int(row["p_gb_max"] or row["p_gb"])] == [memory[0], memory[-1]], stage
