"""Where a workflow run's time went, read from its Snakemake log: wall time per stage and the critical path.

A Snakemake log records each job's start time, rule, inputs, outputs and benchmark file, and the time it
finished. A job's *stage* is the first directory of its benchmark file under `benchmarks/` (`eval`, `sft`,
`rl`, `spectrum`, … as laid out by `rules/common.smk`), or its rule where it has no benchmark. Its time is
the wall time its benchmark file measured, or the log's timestamps (one-second resolution) without one.

Job b depends on job a when one of b's inputs is an output of a, or lies inside an output directory of a.
The *critical path* is the chain that ends with the last job to finish, each job preceded by the
dependency that finished last: on the same cores the run cannot be shorter than the sum of its jobs' times.
"""

from __future__ import annotations

import csv
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import cast

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_START = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
_FIELD = re.compile(r"^    (input|output|jobid|benchmark|threads): (.*)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+) ")
BENCHMARK_DIR = "benchmarks"


@dataclass
class Job:
    jobid: int
    rule: str
    start: datetime
    end: datetime | None = None
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    benchmark: str | None = None
    threads: int | None = None  # what Snakemake gave it (its OMP_NUM_THREADS); None where the log does not say
    measured_s: float | None = None  # the benchmark file's wall time, where it was read
    after: list[Job] = field(default_factory=list, repr=False)  # the jobs it waited for

    @property
    def stage(self) -> str:
        if self.benchmark:
            parts = Path(self.benchmark).parts
            if BENCHMARK_DIR in parts[:-1]:
                return parts[parts.index(BENCHMARK_DIR) + 1]
        return self.rule

    @property
    def seconds(self) -> float:
        if self.measured_s is not None:
            return self.measured_s
        return (self.end - self.start).total_seconds() if self.end else 0.0


def _stamp(text: str) -> datetime:
    return datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")


def parse_log(lines: Iterable[str]) -> list[Job]:
    """The jobs of one Snakemake log, in the order they started; jobs that never finished are dropped."""
    jobs: dict[int, Job] = {}
    now: datetime | None = None
    block: dict | None = None

    def close() -> None:
        nonlocal block
        if block and "jobid" in block:
            jobs[block["jobid"]] = Job(
                block["jobid"],
                block["rule"],
                block["start"],
                inputs=block.get("input", ()),
                outputs=block.get("output", ()),
                benchmark=block.get("benchmark"),
                threads=block.get("threads"),
            )
        block = None

    for line in lines:
        line = line.rstrip("\n")
        if match := _STAMP.match(line):
            close()
            now = _stamp(match[1])
        elif (match := _START.match(line)) and now is not None:
            close()
            block = {"rule": match[1], "start": now}
        elif block is not None and (match := _FIELD.match(line)):
            key, value = match[1], match[2].strip()
            if key in ("jobid", "threads"):
                block[key] = int(value)
            elif key == "benchmark":
                block["benchmark"] = value
            else:
                block[key] = tuple(v.strip() for v in value.split(", ") if v.strip())
        elif match := _FINISHED.match(line):
            close()
            if int(match[1]) in jobs and now is not None:
                jobs[int(match[1])].end = now
    close()
    return [job for job in jobs.values() if job.end is not None]


def read_benchmarks(jobs: Sequence[Job], workdir: str | Path) -> None:
    """Take each job's wall time from its benchmark file (the `s` column) where the file exists."""
    for job in jobs:
        path = Path(workdir) / job.benchmark if job.benchmark else None
        if path and path.is_file():
            with open(path, newline="") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t"))
            if rows and rows[-1].get("s"):
                job.measured_s = float(rows[-1]["s"])


def link(jobs: Sequence[Job]) -> None:
    """Fill each job's `after`: the jobs whose outputs it reads."""
    producers = {output: job for job in jobs for output in job.outputs}
    for job in jobs:
        job.after = []
        for path in job.inputs:
            producer = producers.get(path) or next(
                (p for out, p in producers.items() if path.startswith(out.rstrip("/") + "/")), None
            )
            if producer is not None and producer is not job and producer not in job.after:
                job.after.append(producer)


def critical_path(jobs: Sequence[Job]) -> list[Job]:
    """The chain ending with the last job to finish, each step back to the dependency that finished last."""
    if not jobs:
        return []
    link(jobs)
    job = max(jobs, key=lambda j: (j.end, j.jobid))
    path = [job]
    while job.after:
        job = max(job.after, key=lambda j: (j.end, j.jobid))
        path.append(job)
    return path[::-1]


def stage_times(jobs: Sequence[Job], cores: int | None = None) -> list[dict]:
    """Per stage: jobs, total, median and largest job time (s), and its share of all job time; by total.
    Given the run's cores, also the stage's core-seconds (`core_seconds`)."""
    stages: dict[str, list[Job]] = {}
    for job in jobs:
        stages.setdefault(job.stage, []).append(job)
    total = sum(job.seconds for job in jobs) or 1.0
    per_core = core_seconds(jobs, cores) if cores and jobs else {}
    rows = []
    for stage, members in stages.items():
        times = [job.seconds for job in members]
        row = {
            "stage": stage,
            "jobs": len(times),
            "total_s": sum(times),
            "median_s": statistics.median(times),
            "max_s": max(times),
            "share": sum(times) / total,
        }
        if per_core:
            row["core_s"] = sum(per_core[job.jobid] for job in members)
        rows.append(row)
    return sorted(rows, key=lambda row: -row["total_s"])


def core_seconds(jobs: Sequence[Job], cores: int) -> dict[int, float]:
    """Each job's time in core-seconds: its seconds times the cores it used on average, its threads or its
    even share of the run's cores among the jobs running at each second of the log, whichever is fewer (a job
    whose threads the log does not give may use every core). The time to hold against a one-core floor."""
    start = min(job.start for job in jobs)
    spans = {
        job.jobid: (int((job.start - start).total_seconds()), int((cast(datetime, job.end) - start).total_seconds()))
        for job in jobs
    }
    running = [0] * (max(end for _, end in spans.values()) + 1)
    for begin, end in spans.values():
        for second in range(begin, max(end, begin + 1)):
            running[second] += 1
    result = {}
    for job in jobs:
        begin, end = spans[job.jobid]
        seconds = range(begin, max(end, begin + 1))
        threads = job.threads or cores
        share = statistics.fmean(min(threads, cores / running[t]) for t in seconds)
        result[job.jobid] = job.seconds * share
    return result


def provided_cores(lines: Iterable[str]) -> int | None:
    """The cores Snakemake was given ("Provided cores: N"), where the log says."""
    for line in lines:
        if line.startswith("Provided cores: "):
            return int(line.split(":", 1)[1])
    return None


def wall_seconds(jobs: Sequence[Job]) -> float:
    """From the first job's start to the last job's end."""
    if not jobs:
        return 0.0
    return (max(cast(datetime, j.end) for j in jobs) - min(j.start for j in jobs)).total_seconds()


def latest_run(workdir: str | Path) -> tuple[Path, list[Job]]:
    """The newest Snakemake log under workdir that holds finished jobs (dry runs write logs too), parsed."""
    folder = Path(workdir) / ".snakemake" / "log"
    for log in sorted(folder.glob("*.snakemake.log"), reverse=True):
        with open(log) as handle:
            jobs = parse_log(handle)
        if jobs:
            return log, jobs
    raise FileNotFoundError(f"no Snakemake log with finished jobs under {folder}: run the workflow first")
