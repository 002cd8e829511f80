"""What each job asks of a machine or a SLURM cluster, how a training script is launched on its GPUs,
and the checks made before any job is submitted.

The config's `resources` section gives, per stage, the GPUs, CPU cores, memory and time limit of a job;
the rules turn it into Snakemake resources that the SLURM executor plugin maps to `sbatch --gpus`,
`--cpus-per-gpu`/`--cpus-per-task`, `--mem` and `--time`. Memory and time grow with the attempt, so a job
that a retry (`--retries`) resubmits after running out of either asks for more.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sftrl.rl import ALGORITHMS

# Resources that Snakemake itself or the SLURM executor plugin (2.x) reads; any other name in a profile's
# default-resources or set-resources is a typo that would otherwise be ignored without a word.
SNAKEMAKE_RESOURCES = frozenset(
    {"mem", "mem_mb", "mem_mib", "disk", "disk_mb", "disk_mib", "runtime", "tmpdir", "_cores", "_nodes"}
)
SLURM_RESOURCES = frozenset(
    {
        "slurm_partition",
        "slurm_account",
        "slurm_cluster",
        "cluster",
        "clusters",
        "slurm_extra",
        "constraint",
        "qos",
        "nodes",
        "tasks",
        "tasks_per_node",
        "tasks_per_gpu",
        "mpi",
        "cpus_per_task",
        "cpus_per_gpu",
        "mem_mb_per_cpu",
        "gpu",
        "gpus",
        "gpu_model",
        "gres",
    }
)
KNOWN_RESOURCES = SNAKEMAKE_RESOURCES | SLURM_RESOURCES

# Stages whose scripts run one process per GPU under `accelerate launch` (the transformers/TRL trainers,
# and the RL algorithms the registry marks so).
MULTI_PROCESS_STAGES = frozenset({"pretrain", "sft", *(a.name for a in ALGORITHMS.values() if a.multi_process)})


PACKAGE_ROOT_VARIABLE = "SFTRL_ROOT"


def set_package_root(basedir: str | os.PathLike) -> None:
    """Name the workflow's directory in the environment, where `--sdm conda` reads it: the pip section
    of envs/sftrl.yaml installs the workflow's package from ${SFTRL_ROOT}, and conda inherits
    Snakemake's environment when it makes the environment of a job."""
    os.environ[PACKAGE_ROOT_VARIABLE] = str(basedir)


@dataclass(frozen=True)
class JobResources:
    """What one job of a stage asks for. `cpus` counts per GPU when the job has GPUs, else per process;
    `processes` is how many processes a multi-process stage runs on the CPU (gpus 0)."""

    gpus: int
    cpus: int
    mem_mb: int
    runtime: int  # minutes
    processes: int = 1
    gpu_mem_gb: float | None = None  # memory of one of its GPUs, for the memory plan (sftrl.capacity)

    @classmethod
    def from_config(cls, section: Mapping, where: str) -> JobResources:
        required = {"gpus", "cpus", "mem_mb", "runtime"}
        known = required | {"processes", "gpu_mem_gb"}
        unknown = sorted(set(section) - known)
        missing = sorted(required - set(section))
        if unknown or missing:
            problems = [f"unknown key(s) {unknown}"] * bool(unknown) + [f"missing key(s) {missing}"] * bool(missing)
            raise ValueError(f"{where}: {', '.join(problems)}; known: {sorted(known)}")
        for key in ("cpus", "mem_mb", "runtime", "processes"):
            value = section.get(key, 1)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{where}.{key} must be a positive integer, not {value!r}")
        memory = section.get("gpu_mem_gb")
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, (int, float)) or memory <= 0):
            raise ValueError(f"{where}.gpu_mem_gb must be a positive number of GiB, not {memory!r}")
        if not isinstance(section["gpus"], int) or section["gpus"] < 0:
            raise ValueError(f"{where}.gpus must be an integer >= 0, not {section['gpus']!r}")
        if section["gpus"] and section.get("processes", 1) > 1:
            raise ValueError(
                f"{where}.processes is for a job on the CPU (gpus 0); with GPUs the job runs one process per GPU"
            )
        return cls(**{key: section[key] for key in sorted(known) if key in section})

    @property
    def process_count(self) -> int:
        """Processes the job's script runs in: one per GPU, or `processes` on the CPU."""
        return self.gpus or self.processes

    @property
    def threads(self) -> int:
        """Snakemake threads of the job: every core it is given."""
        return self.cpus * self.process_count

    @property
    def cpus_per_gpu(self) -> int:
        """The plugin's `cpus_per_gpu` (0 for a CPU job, which gets `--cpus-per-task` = threads)."""
        return self.cpus if self.gpus else 0

    def mem_mb_for(self, wildcards, attempt: int) -> int:
        """Memory of attempt `attempt` (1, 2, ...): a resubmitted job asks for more."""
        return self.mem_mb * attempt

    def runtime_for(self, wildcards, attempt: int) -> int:
        """Time limit in minutes of attempt `attempt`."""
        return self.runtime * attempt


def stage_resources(section: Mapping) -> dict[str, JobResources]:
    return {stage: JobResources.from_config(values, f"resources.{stage}") for stage, values in section.items()}


def launcher(
    gpus: int,
    multi_process: bool = True,
    cpu_processes: int = 1,
    cpu_threads: int = 1,
    deepspeed: bool = False,
    python: str = "python",
) -> str:
    """The command that starts a training script: `python` for one process (or the given command, such as
    `sftrl.forkserver`'s client), `accelerate launch` with one
    process per GPU, or with `cpu_processes` processes of `cpu_threads` threads each on a machine without
    GPUs (accelerate's torchrun launcher, `--multi_gpu`, serves both; the trainer runs on gloo on a CPU).
    DeepSpeed, when the stage's config names a DeepSpeed JSON, is set up by the trainer inside each process;
    it needs a launcher's rendezvous even in one process (without one it looks for MPI), which accelerate
    gives only to two or more, so one DeepSpeed process starts under torchrun (`--standalone`).
    The port is chosen free by accelerate (torchrun: standalone), so jobs sharing a node do not collide."""
    processes = gpus or cpu_processes
    if processes <= 1 and deepspeed:
        threads = "" if gpus else f"OMP_NUM_THREADS={cpu_threads} "
        # "--": the script's own options (--start) must not be read as abbreviations of torchrun's
        return f"{threads}python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 1 --"
    if processes <= 1:
        return python
    if not multi_process:
        raise ValueError("a single-process stage cannot be launched in several processes")
    command = (
        "accelerate launch --multi_gpu --num_machines 1 --machine_rank 0"
        f" --num_processes {processes} --main_process_port 0 --mixed_precision no --dynamo_backend no"
    )
    return command if gpus else f"{command} --num_cpu_threads_per_process {cpu_threads}"


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_resource_names(default_resources: Iterable[str], overwrite_resources: Mapping[str, Iterable[str]]) -> None:
    """Every resource named in default-resources or set-resources is one Snakemake or the SLURM plugin
    reads: Snakemake itself passes any other name on without a word."""
    problems = [
        f"default-resources: unknown resource {name!r}{_suggest(name, KNOWN_RESOURCES)}"
        for name in default_resources
        if name not in KNOWN_RESOURCES
    ]
    for rule, names in overwrite_resources.items():
        problems += [
            f"set-resources {rule}: unknown resource {name!r}{_suggest(name, KNOWN_RESOURCES)}"
            for name in names
            if name not in KNOWN_RESOURCES
        ]
    if problems:
        raise ValueError("; ".join(problems) + f". Known resources: {', '.join(sorted(KNOWN_RESOURCES))}")


def check_rule_names(overwrite_resources: Mapping[str, object], rules: Iterable[str]) -> None:
    """Every rule named in set-resources exists (Snakemake ignores the others)."""
    rules = set(rules)
    unknown = [f"{rule!r}{_suggest(rule, rules)}" for rule in overwrite_resources if rule not in rules]
    if unknown:
        raise ValueError(f"set-resources names no rule of this workflow: {', '.join(unknown)}")


def check_single_device(stage: str, resources: JobResources, programs: Iterable[str]) -> None:
    """A job whose program runs on one device in one process (evaluation) cannot use several GPUs or CPU
    processes."""
    single = [p for p in programs if p not in MULTI_PROCESS_STAGES]
    if single and resources.gpus > 1:
        raise ValueError(
            f"resources.{stage}.gpus is {resources.gpus}, but {', '.join(single)} runs on one device: "
            f"set resources.{stage}.gpus to 0 or 1"
        )
    if single and resources.processes > 1:
        raise ValueError(
            f"resources.{stage}.processes is {resources.processes}, but {', '.join(single)} runs in one "
            f"process: leave resources.{stage}.processes out or set it to 1"
        )


def visible_gpus(environ: Mapping[str, str] = os.environ, dev: Path = Path("/dev")) -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES where it is set, else the NVIDIA device files."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len([p for p in dev.glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)])


def _asking_more_gpus(resources: Mapping[str, JobResources], limit: int) -> str:
    """The stages asking for more than `limit` GPUs, as their settings ("" for none)."""
    return ", ".join(f"resources.{stage}.gpus: {r.gpus}" for stage, r in sorted(resources.items()) if r.gpus > limit)


def check_local_gpus(resources: Mapping[str, JobResources], available: int) -> None:
    """Jobs run on this machine: none may ask for more GPUs than it has."""
    asked = _asking_more_gpus(resources, available)
    if asked:
        raise ValueError(
            f"{asked}, but this machine has {available} GPU(s) visible. Run on a GPU cluster "
            "(--profile profiles/slurm), or set these to 0 to train on the CPU"
        )


def gres_gpus(sinfo_gres: str) -> int:
    """The most GPUs one node offers, from `sinfo -h -o %G` lines ("gpu:4", "gpu:a100:8(S:0-1)", "(null)")."""
    most = 0
    for line in sinfo_gres.splitlines():
        for item in line.split(","):
            match = re.match(r"^gpu(?::[^:(]+)?:(\d+)", item.strip())
            if match:
                most = max(most, int(match.group(1)))
    return most


def check_partition_gpus(resources: Mapping[str, JobResources], partition: str, gpus_per_node: int) -> None:
    """GPU jobs submitted to a SLURM partition: none may ask for more GPUs than one of its nodes has
    (SLURM would keep such a job pending, or reject it, only after the workflow has started)."""
    asked = _asking_more_gpus(resources, gpus_per_node)
    if asked:
        raise ValueError(
            f"{asked}, but the nodes of SLURM partition {partition!r} have at most {gpus_per_node} GPU(s): "
            "choose a GPU partition (default-resources: slurm_partition in the profile) or fewer GPUs"
        )


def min_job_age(scontrol_config: str) -> int | None:
    """MinJobAge in seconds from `scontrol show config` output."""
    match = re.search(r"^\s*MinJobAge\s*=\s*(\d+)\s*(\w*)", scontrol_config, re.MULTILINE)
    if not match:
        return None
    value, unit = int(match.group(1)), match.group(2).lower()
    return value * 3600 if unit in ("h", "hour", "hours") else value


def check_status_command(status_command: str | None, init_seconds: int, job_age: int | None, sacct: bool) -> None:
    """`squeue` as status command sees a finished job only for MinJobAge seconds. The plugin (2.x) uses it
    only while MinJobAge >= 3x its first status-check delay and otherwise switches to `sacct`, which on a
    cluster without accounting never reports the job: the workflow would wait forever. Say so first."""
    if status_command != "squeue" or not sacct:
        return
    threshold = 3 * init_seconds
    if job_age is None or job_age < threshold:
        raise ValueError(
            f"slurm-status-command is squeue, but SLURM's MinJobAge ({job_age} s) is below 3 x "
            f"slurm-init-seconds-before-status-checks ({init_seconds} s) = {threshold} s: the SLURM plugin would "
            "switch to sacct, which without SLURM accounting never reports a job. Lower "
            f"slurm-init-seconds-before-status-checks to at most {(job_age or 0) // 3} or raise MinJobAge"
        )


def resolve_config_file(path: str | None, basedir: str | os.PathLike, key: str) -> str | None:
    """A config file named in the config (a DeepSpeed JSON): as given when it exists, else relative to the
    workflow's directory; an error naming the key when neither exists or it is not JSON."""
    if path is None:
        return None
    candidates = [Path(path)] if Path(path).is_absolute() else [Path(path), Path(basedir) / path]
    for candidate in candidates:
        if candidate.is_file():
            try:
                json.loads(candidate.read_text())
            except ValueError as err:
                raise ValueError(f"{key}: {candidate} is not valid JSON: {err}") from err
            return str(candidate.resolve())
    raise ValueError(f"{key}: no file {path} (looked in {', '.join(str(c) for c in candidates)})")


def check_model_source(source: str) -> None:
    """A model named by path must be a Hugging Face model directory (config.json) before any job runs."""
    if source in ("embedded", "tiny") or source.startswith("hf:"):
        return
    path = Path(source)
    if not (path / "config.json").is_file():
        what = "has no config.json" if path.is_dir() else "does not exist"
        raise ValueError(
            f"model.source {source} {what}: set model.source to a local Hugging Face model directory "
            "(e.g. a download of Qwen2.5-7B-Instruct), 'embedded', 'tiny', or hf:org/name"
        )
