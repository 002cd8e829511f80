"""What a job really used, beside what the memory plan (`sftrl.capacity`) promised.

Each training, evaluation and representation job records, as it exits, its peak resident memory (the
kernel's own peak, `ru_maxrss`) and on a GPU each device's peak allocation (`torch.cuda.max_memory_allocated`)
into a JSON file beside its Snakemake benchmark record (`…/sft.tsv` → `…/sft.memory.json`; one file per
process under `accelerate launch`). `plan_vs_measured` puts every such job beside its stage's estimate.
"""

from __future__ import annotations

import atexit
import csv
import math
import os
import resource
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sftrl import io

GIB = 2**30
SUFFIX = ".memory.json"
COLUMNS = [
    "stage",
    "job",
    "plan",
    "gpus",
    "planned_gib_per_gpu",
    "measured_gpu_gib",
    "gpu_over_plan",
    "peak_rss_gib",
    "wall_s",
]


def record_path(path: str | os.PathLike) -> Path:
    """This process's record: `path`, or `path` with its rank where several processes run the job."""
    path = Path(path)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return path.with_name(path.name.replace(SUFFIX, f".rank{os.environ.get('RANK', '0')}{SUFFIX}"))
    return path


def peaks() -> dict[str, Any]:
    """The process's peak resident memory and, where CUDA was used, each device's peak allocation (GiB)."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    record: dict[str, Any] = {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / GIB}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        record["gpu_peak_gib"] = {
            torch.cuda.get_device_name(i) + f" #{i}": torch.cuda.max_memory_allocated(i) / GIB
            for i in range(torch.cuda.device_count())
            if torch.cuda.max_memory_allocated(i) > 0
        }
    return record


def record_at_exit(path: str | os.PathLike) -> None:
    """Write this process's `peaks` to its record when it exits normally (a failed job leaves none)."""
    atexit.register(lambda: io.write_json(record_path(path), peaks()))


def benchmark_seconds(tsv: Path) -> float | None:
    """The wall time of a Snakemake benchmark record."""
    if not tsv.is_file():
        return None
    with tsv.open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return float(rows[0]["s"]) if rows else None


def job_kind(stage: str, job: str) -> str:
    """The plan's row for a job: its stage, and for RL its algorithm (`rl-ppo-from100-s0` → ppo)."""
    if stage == "rl":
        return job.split("-")[1]
    return {"eval": "evaluate"}.get(stage, stage)


def measured_jobs(benchmarks: str | os.PathLike) -> list[dict[str, Any]]:
    """Every job that recorded its memory under `benchmarks`, its processes' records merged: the largest
    resident peak, and each device's peak."""
    jobs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(Path(benchmarks).rglob(f"*{SUFFIX}")):
        stage, *rest = path.relative_to(benchmarks).parts  # eval/edits/{pair}/{edit}: job edits/{pair}/{edit}
        name = "/".join(rest)[: -len(SUFFIX)].split(".rank")[0]
        record = io.read_json(path)
        job = jobs.setdefault(
            (stage, name),
            {
                "stage": stage,
                "job": name,
                "peak_rss_gib": 0.0,
                "gpu": {},
                "wall_s": benchmark_seconds(Path(benchmarks) / stage / f"{name}.tsv"),
            },
        )
        job["peak_rss_gib"] = max(job["peak_rss_gib"], record["peak_rss_gib"])
        job["gpu"].update(record.get("gpu_peak_gib", {}))
    return list(jobs.values())


def plan_vs_measured(plan: Sequence[Mapping[str, Any]], jobs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per measured job: its stage's estimate per GPU (`plan`: rows with `kind`, `job`, `gpus`,
    `estimate_gib`), the largest device peak and its ratio to the estimate, and the peak resident memory.
    GPU columns are empty on a CPU, the plan's where it has no row for the job's stage."""
    by_kind = {row["kind"]: row for row in plan}
    rows = []
    for job in jobs:
        planned = by_kind.get(job_kind(job["stage"], job["job"]))
        gpu = max(job["gpu"].values()) if job["gpu"] else math.nan
        estimate = planned["estimate_gib"] if planned else math.nan
        rows.append(
            {
                "stage": job["stage"],
                "job": job["job"],
                "plan": planned["job"] if planned else "",
                "gpus": planned["gpus"] if planned else "",
                "planned_gib_per_gpu": round(estimate, 2),
                "measured_gpu_gib": round(gpu, 2),
                "gpu_over_plan": round(gpu / estimate, 2) if estimate > 0 and not math.isnan(gpu) else math.nan,
                "peak_rss_gib": round(job["peak_rss_gib"], 3),
                "wall_s": job["wall_s"],
            }
        )
    return sorted(rows, key=lambda row: (row["stage"], row["job"]))


def write_table(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    import pandas as pd

    with io.atomic_path(path) as tmp:
        pd.DataFrame(list(rows), columns=COLUMNS).to_csv(tmp, index=False)
