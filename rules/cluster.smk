# What each job asks of the machine or the SLURM cluster (config `resources`, sftrl.cluster), how the
# training scripts are launched on their GPUs, and the checks made before any job is submitted.
import json
import os
import shutil
import subprocess
from pathlib import Path

from sftrl import capacity, cluster, ds_config

JOBS = cluster.stage_resources(config["resources"])
cluster.check_single_device("evaluate", JOBS["evaluate"], ["evaluation"])
cluster.check_single_device("rl", JOBS["rl"], RL_ALGORITHMS)
cluster.check_model_source(config["model"]["source"])
cluster.check_resource_names(
    workflow.resource_settings.default_resources or {},
    workflow.resource_settings.overwrite_resources,
)
for _section, _key in (
    (config["sft"], "sft"),
    (config["model"]["pretrain"], "model.pretrain"),
    (config["rl"]["ppo"], "rl.ppo"),
):
    _section["deepspeed"] = cluster.resolve_config_file(
        _section["deepspeed"], workflow.basedir, f"{_key}.deepspeed"
    )
if "ppo" in RL_ALGORITHMS and config["rl"]["ppo"]["deepspeed"]:
    ds_config.check_for_ppo(config["rl"]["ppo"]["deepspeed"], config["model"]["dtype"])


def rl_runs_at_once():
    """The most RL runs Snakemake lets run together: bounded by --jobs and by a --resources gpu=N limit
    where they are given; otherwise every configured run."""
    bounds = [len(RL_RUNS), workflow.nodes]
    gpus = getattr(workflow.global_resources.get("gpu"), "value", None)
    per_run = config["resources"]["rl"]["gpus"]
    if gpus is not None and per_run:
        bounds.append(gpus // per_run)
    return min(b for b in bounds if b is not None)


def capacity_plan():
    """Memory per GPU job and disk for the outputs (sftrl.capacity), from the base model's config.json;
    None where that is not on disk or not a Llama-layout decoder the plan knows (then GPU memory budgets
    cannot be checked, and saying so is an error)."""
    try:
        shape = capacity.ModelShape.from_config(BASE_CONFIG or {})
    except ValueError as err:
        budgets = [
            s
            for s, r in config["resources"].items()
            if r.get("gpu_mem_gb") and r["gpus"]
        ]
        if budgets:
            raise ValueError(f"resources {budgets} name gpu_mem_gb, but {err}") from err
        return None
    read = lambda path: json.loads(Path(path).read_text())
    memory = capacity.memory_plan(config, shape, read, RL_ALGORITHMS)
    counts = {
        "ladder": len(SFT_MODELS),
        "rl": len(RL_RUNS),
        "exports_per_run": len(RL_EXPORTED),
        "edits": len(EDIT_MODELS),
        "analysed": 1 + len(SFT_MODELS) + len(RL_MODELS),
        "in_flight": rl_runs_at_once(),
    }
    disk = capacity.disk_plan(config, shape, counts)
    return memory, disk


CAPACITY = capacity_plan()
if CAPACITY:
    if workflow.is_main_process:  # before any job; not again in each cluster job
        print(capacity.render(*CAPACITY))
    capacity.check_memory(CAPACITY[0])
    capacity.check_disk(CAPACITY[1], config["plan"].get("disk_budget_gb"))


def job_resources(stage):
    return JOBS[stage]


# The DeepSpeed config of each program that trains under DeepSpeed (resolved above; None: none).
DEEPSPEED = {
    "sft": config["sft"]["deepspeed"],
    "pretrain": config["model"]["pretrain"]["deepspeed"],
    "ppo": config["rl"]["ppo"]["deepspeed"],
}


def launch(stage, program=None):
    """The command that starts a stage's script: python, or accelerate launch with one process per GPU
    (or resources.{stage}.processes processes on the CPU); one DeepSpeed process under torchrun.
    """
    job = JOBS[stage]
    return cluster.launcher(
        job.gpus,
        (program or stage) in cluster.MULTI_PROCESS_STAGES,
        cpu_processes=job.processes,
        cpu_threads=job.cpus,
        deepspeed=bool(DEEPSPEED.get(program or stage)),
        python=PYTHON,
    )


def _run(command):
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def preflight():
    """Checks that need the executor: GPUs of the machine or of the SLURM partitions, SLURM's status
    query; set-resources naming rules that exist. Run once the DAG is built, before any job starts.
    """
    cluster.check_rule_names(
        workflow.resource_settings.overwrite_resources,
        [rule.name for rule in workflow.rules],
    )
    gpu_jobs = [
        job
        for job in workflow.dag.needrun_jobs()
        if (job.resources.get("gpu") or 0) > 0
    ]
    asked = {}
    for job in gpu_jobs:
        stage = "pretrain" if job.rule.name == "pretrain_base" else job.rule.name
        asked.setdefault(job.resources.get("slurm_partition"), {})[stage] = JOBS[stage]
    if workflow.local_exec:
        for jobs in asked.values():
            cluster.check_local_gpus(jobs, cluster.visible_gpus())
    elif workflow.executor_plugin.name == "slurm":
        settings = workflow.executor_settings
        cluster.check_status_command(
            settings.status_command,
            settings.init_seconds_before_status_checks,
            cluster.min_job_age(_run(["scontrol", "show", "config"])),
            sacct=shutil.which("sacct") is not None,
        )
        for partition, jobs in asked.items():
            where = ["-p", partition] if partition else []
            gres = _run(["sinfo", "-h", *where, "-o", "%G"])
            cluster.check_partition_gpus(
                jobs, partition or "(default)", cluster.gres_gpus(gres)
            )


def runs_warm():
    """Whether this run's jobs start in the fork server: a local run in this very Python (a conda or
    container job runs another one, so its client starts the job alone), with no stage on a GPU (CUDA
    does not survive a fork of a process that has looked for it)."""
    return (
        config["forkserver"]
        and workflow.local_exec
        and not workflow.touch
        and not workflow.deployment_settings.deployment_method
        and not any(job.gpus for job in JOBS.values())
    )


onstart:
    if workflow.is_main_process:
        preflight()
        JOB_CONFIGS.write()
        if runs_warm():
            FORKSERVER.start({**os.environ, **JOB_ENV})


onsuccess:
    FORKSERVER.stop()


onerror:
    FORKSERVER.stop()
