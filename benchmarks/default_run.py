#!/usr/bin/env python
"""Where the last workflow run's time went: time per stage against its floor, and the critical path.

Reads the newest Snakemake log with finished jobs under .snakemake/log (or --log) and the benchmark files its
jobs wrote, and prints per stage the jobs, their summed, median and largest time and share of all job time;
then each stage's work (counted from the run's outputs under --results) and its floor, the time that work
takes at this machine's rates measured now on one core at the model's shapes (`sftrl.floors`), with the
stage's time over its floor; then the chain of jobs that bounds the run (`sftrl.runlog`) with its length
against the run's wall time. The rates are measured on this machine as it is now: run it on an idle one.
"""

import argparse
from pathlib import Path

from transformers import AutoTokenizer

from sftrl.floors import Rates, Shapes, count_work, floor_rows
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
    parser.add_argument(
        "--results", type=Path, default=Path("results/tiny"), help="the run's outputs (under --workdir)"
    )
    parser.add_argument(
        "--model", type=Path, default=Path("models/base"), help="the model whose shapes set the rates (under --results)"
    )
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
    results = args.workdir / args.results
    model = results / args.model
    shapes = Shapes.of_model(model)
    rates = Rates.measure(shapes)
    print(
        f"rates on one core at {model}'s shapes: matrix products {rates.matmul_flops / 1e9:.1f} GFLOP/s at 512 rows"
        f" ({shapes.weights:,} weights a token), a thin SVD {1000 * rates.svd_s:.1f} ms, an empty job started warm"
        f" {rates.job_start_s:.2f} s (a process importing torch: {rates.cold_start_s:.2f} s)"
    )
    rows = stage_times(jobs, cores)
    work = count_work(results, {row["stage"]: row["jobs"] for row in rows}, AutoTokenizer.from_pretrained(model))
    print("core s: a job's seconds times the cores it had (the run's cores shared among the jobs running)")
    print(
        f"{'stage':<16}{'jobs':>5}{'total s':>9}{'share':>7}{'median s':>9}{'max s':>7}{'core s':>8}{'floor s':>8}"
        f"{'× floor':>8}  work"
    )
    for row in floor_rows(rows, work, rates, shapes):
        print(
            f"{row['stage']:<16}{row['jobs']:>5}{row['total_s']:>9.1f}{100 * row['share']:>6.1f}%"
            f"{row['median_s']:>9.1f}{row['max_s']:>7.1f}{row.get('core_s', float('nan')):>8.1f}{row['floor_s']:>8.1f}"
            f"{row['ratio']:>8.1f}  {row['work']}"
        )
    path = critical_path(jobs)
    length = sum(job.seconds for job in path)
    start = min(job.start for job in jobs)
    print(
        f"\ncritical path (the longest chain of dependent jobs): {len(path)} jobs, {length:.0f} s = "
        f"{length / wall:.2f} of the wall time"
    )
    for job in path:
        offset = (job.start - start).total_seconds()
        print(f"  +{offset:>6.0f} s  {job.seconds:>7.1f} s  {job.rule:<20} {', '.join(job.outputs[:1])}")


if __name__ == "__main__":
    main()
