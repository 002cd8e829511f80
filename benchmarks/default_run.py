#!/usr/bin/env python
"""Where the last workflow run's time went: wall time per stage and the critical path.

Reads the newest Snakemake log with finished jobs under .snakemake/log (or --log) and the benchmark files its jobs wrote, and
prints per stage the jobs, their summed, median and largest time and share of all job time, then the chain
of jobs that bounds the run (`sftrl.runlog`) with its length against the run's wall time.
"""

import argparse
from pathlib import Path

from sftrl.runlog import (
    critical_path,
    latest_run,
    parse_log,
    provided_cores,
    read_benchmarks,
    stage_times,
    wall_seconds,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where the workflow ran (default: here)")
    parser.add_argument("--log", type=Path, help="a Snakemake log (default: the newest with finished jobs)")
    args = parser.parse_args()
    if args.log:
        log = args.log
        with open(log) as handle:
            jobs = parse_log(handle)
    else:
        log, jobs = latest_run(args.workdir)
    if not jobs:
        parser.exit(1, f"{log}: no finished jobs in this log\n")
    read_benchmarks(jobs, args.workdir)
    wall = wall_seconds(jobs)
    busy = sum(job.seconds for job in jobs)
    with open(log) as handle:
        cores = provided_cores(handle)
    print(f"{log}: {len(jobs)} jobs, wall time {wall:.0f} s, job time {busy:.0f} s ({busy / wall:.2f}× the wall time)")
    if cores:
        print(f"job time / {cores} cores = {busy / cores:.0f} s = {busy / cores / wall:.2f} of the wall time")
    print()
    print(f"{'stage':<22}{'jobs':>5}{'total s':>10}{'share':>8}{'median s':>10}{'max s':>8}")
    for row in stage_times(jobs):
        print(f"{row['stage']:<22}{row['jobs']:>5}{row['total_s']:>10.1f}{100 * row['share']:>7.1f}%"
              f"{row['median_s']:>10.1f}{row['max_s']:>8.1f}")
    path = critical_path(jobs)
    length = sum(job.seconds for job in path)
    start = min(job.start for job in jobs)
    print(f"\ncritical path (the longest chain of dependent jobs): {len(path)} jobs, {length:.0f} s = "
          f"{length / wall:.2f} of the wall time")
    for job in path:
        offset = (job.start - start).total_seconds()
        print(f"  +{offset:>6.0f} s  {job.seconds:>7.1f} s  {job.rule:<20} {', '.join(job.outputs[:1])}")


if __name__ == "__main__":
    main()
