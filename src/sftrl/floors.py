"""The least time a run's work could take on this machine: each stage's work priced at rates measured now.

Work is counted from the run's own outputs, never estimated from its config:
- processes: a stage's jobs, each started as the workflow starts a job on a local run: forked from a
  process that has imported torch (`sftrl.forkserver`);
- tokens trained: SFT's and GRPO's `num_tokens` (TRL's count of the tokens its batches held), PPO's
  `trained_tokens` (every token of every turn in each of its passes over the rollout);
- tokens forward: every message token of every evaluated conversation, GRPO's `num_tokens` again (its
  generation), PPO's `scored_tokens` twice (playing the rollout, then scoring it);
- SVDs: the thin SVDs in the run's SVD cache (`work/svd`), one file per matrix of a model.

A token forward costs 2 FLOPs per element of the model's 2-D weight matrices (the head included, the
embedding lookup not), a token trained 6 (forward and backward); attention's own products are left out (a
few per cent at the tiny model's contexts of about a hundred tokens). The rates are one core's: a matrix
product at the model's shapes with `rows` rows (evaluation plays 512 episodes together), a thin SVD
(`gesdd`) per matrix shape, and the wall time of an empty job started warm (the fork server's client, a
fork, a script that does nothing); `python -c "import torch"` is measured beside it, as what each job
would pay without the server. A floor is therefore the
work's cost on one core with no overhead at all: the stage's time over its floor says how far the code is
from what the machine could do.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg
from safetensors import safe_open

from sftrl import io
from sftrl.families import EMBEDDINGS, tied_embeddings
from sftrl.forkserver import Server

FORWARD_FLOPS_PER_WEIGHT = 2
TRAIN_FLOPS_PER_WEIGHT = 6


@dataclass(frozen=True)
class Shapes:
    """The 2-D weight matrices a token passes through: (out, in) per matrix."""

    matrices: tuple[tuple[int, int], ...]

    @property
    def weights(self) -> int:
        return sum(rows * cols for rows, cols in self.matrices)

    @classmethod
    def of_model(cls, model_dir: str | Path) -> Shapes:
        """The matrices of a saved model; the embedding counts once, as the head, when the head is tied."""
        folder = Path(model_dir)
        config = json.loads((folder / "config.json").read_text())
        tied = tied_embeddings(config)
        matrices = []
        for path in sorted(folder.glob("*.safetensors")):
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    shape = handle.get_slice(name).get_shape()
                    if len(shape) == 2 and (not EMBEDDINGS.match(name) or tied):
                        matrices.append((int(shape[0]), int(shape[1])))
        return cls(tuple(matrices))


@dataclass(frozen=True)
class Rates:
    """One core's rates on this machine, measured at a model's shapes."""

    matmul_flops: float  # FLOP/s of (rows × in) @ (in × out) over the model's matrices
    svd_s: float  # seconds of one thin SVD, averaged over the model's matrices
    job_start_s: float  # wall time of an empty job started warm (sftrl.forkserver): a job's least cost
    cold_start_s: float  # wall time of starting Python and importing torch: a job's cost without the server

    @classmethod
    def measure(cls, shapes: Shapes, rows: int = 512, repeats: int = 5) -> Rates:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            flops = seconds = 0.0
            svd_times = []
            generator = torch.Generator().manual_seed(0)
            for out, into in shapes.matrices:
                x = torch.randn(rows, into, generator=generator)
                w = torch.randn(out, into, generator=generator)
                seconds += _median_time(lambda x=x, w=w: x @ w.T, repeats)
                flops += 2.0 * rows * into * out
                matrix = w.numpy().astype(np.float32)
                svd_times.append(
                    _median_time(lambda m=matrix: scipy.linalg.svd(m, full_matrices=False, lapack_driver="gesdd"), 3)
                )
        finally:
            torch.set_num_threads(threads)
        cold = [_cold_start_seconds() for _ in range(3)]
        return cls(flops / seconds, statistics.fmean(svd_times), _warm_start_seconds(3), statistics.median(cold))


def _median_time(work, repeats: int) -> float:
    work()  # warm-up: allocation and kernel choice are not the rate
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        work()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def _cold_start_seconds() -> float:
    begin = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - begin


def _warm_start_seconds(repeats: int) -> float:
    """The median wall time of an empty script run through a fork server's client."""
    with tempfile.TemporaryDirectory() as where:
        folder = Path(where)
        (folder / "empty.py").write_text("")
        server = Server(folder / "server.sock", folder / "server.log")
        one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # a one-thread job, as Snakemake starts it
        server.start(one_thread)
        try:
            server.wait_listening(timeout=300)
            times = []
            for _ in range(repeats):
                begin = time.perf_counter()
                subprocess.run([*shlex.split(server.python), str(folder / "empty.py")], check=True, env=one_thread)
                times.append(time.perf_counter() - begin)
        finally:
            server.stop()
    return statistics.median(times)


@dataclass
class Work:
    """What one stage did."""

    processes: int = 0
    tokens_trained: int = 0
    tokens_forward: int = 0
    svds: int = 0

    def floor_s(self, rates: Rates, shapes: Shapes) -> float:
        flops = (
            TRAIN_FLOPS_PER_WEIGHT * self.tokens_trained + FORWARD_FLOPS_PER_WEIGHT * self.tokens_forward
        ) * shapes.weights
        return self.processes * rates.job_start_s + flops / rates.matmul_flops + self.svds * rates.svd_s

    def describe(self) -> str:
        parts = [f"{self.processes} processes"]
        if self.tokens_trained:
            parts.append(f"{self.tokens_trained:,} tokens trained")
        if self.tokens_forward:
            parts.append(f"{self.tokens_forward:,} tokens forward")
        if self.svds:
            parts.append(f"{self.svds} SVDs")
        return ", ".join(parts)


@dataclass
class RunWork:
    """Work per stage of one run (`stage` as `sftrl.runlog` names them)."""

    stages: dict[str, Work] = field(default_factory=dict)

    def stage(self, name: str) -> Work:
        return self.stages.setdefault(name, Work())


def message_tokens(samples: Path, tokenizer) -> int:
    """Tokens of every message (system, user, reply) of every episode in an evaluation's samples."""
    texts = []
    for episode in io.read_jsonl(samples):
        if episode.get("system"):
            texts.append(episode["system"])
        for turn in episode["turns"]:
            texts.extend((turn["user"], turn["reply"]))
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]) if texts else 0


def count_work(results: str | Path, stage_jobs: dict[str, int], tokenizer) -> RunWork:
    """The work of the run whose outputs lie under `results` (`results/<exp>`), its jobs per stage given."""
    root = Path(results)
    work = RunWork()
    for name, jobs in stage_jobs.items():
        work.stage(name).processes = jobs
    for samples in sorted(root.glob("eval/**/samples.jsonl")):
        work.stage("eval").tokens_forward += message_tokens(samples, tokenizer)
    history = root / "sft" / "history.jsonl"
    if history.is_file():
        work.stage("sft").tokens_trained += _last(io.read_jsonl(history), "num_tokens")
    for history in sorted(root.glob("rl/*/history.jsonl")):
        rows = io.read_jsonl(history)
        rl = work.stage("rl")
        if rows and "num_tokens" in rows[-1]:  # TRL's GRPO: generated, then trained on, once
            tokens = _last(rows, "num_tokens")
            rl.tokens_forward += tokens
            rl.tokens_trained += tokens
        else:  # PPO: played and scored, then trained on in each of its passes
            rl.tokens_forward += 2 * sum(row.get("scored_tokens", 0) for row in rows)
            rl.tokens_trained += sum(row.get("trained_tokens", 0) for row in rows)
    work.stage("spectrum").svds += sum(1 for _ in root.glob("work/svd/*/*.safetensors"))
    return work


def _last(rows: Sequence[dict], key: str) -> int:
    values = [row[key] for row in rows if key in row]
    return int(values[-1]) if values else 0


def floor_rows(stage_times: Iterable[dict], work: RunWork, rates: Rates, shapes: Shapes) -> list[dict]:
    """`sftrl.runlog.stage_times` rows with each stage's work, floor (s) and time over floor: its core-seconds
    where the rows have them (a floor is one core's), else its job seconds."""
    rows = []
    for row in stage_times:
        stage_work = work.stages.get(row["stage"], Work(processes=row["jobs"]))
        floor = stage_work.floor_s(rates, shapes)
        spent = row.get("core_s", row["total_s"])
        rows.append({**row, "work": stage_work.describe(), "floor_s": floor, "ratio": spent / floor})
    return rows
