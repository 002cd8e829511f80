"""What jobs ask of a machine or a SLURM cluster, how training is launched, and the checks made before any
job is submitted (sftrl.cluster, rules/cluster.smk, profiles/). The SLURM cluster itself: tests/slurm/run.sh."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sftrl import cluster

ROOT = Path(__file__).resolve().parents[1]
CI_CONFIG = ROOT / "tests" / "configs" / "ci.yaml"


def res(gpus=0, cpus=2, mem_mb=1000, runtime=30):
    return cluster.JobResources(gpus=gpus, cpus=cpus, mem_mb=mem_mb, runtime=runtime)


def test_cpu_job_asks_for_cores_per_task_and_grows_with_the_attempt():
    job = cluster.JobResources.from_config({"gpus": 0, "cpus": 3, "mem_mb": 1000, "runtime": 30}, "resources.sft")
    assert (job.threads, job.cpus_per_gpu) == (3, 0)
    assert [job.mem_mb_for(None, a) for a in (1, 2, 3)] == [1000, 2000, 3000]
    assert [job.runtime_for(None, a) for a in (1, 2)] == [30, 60]


def test_gpu_job_asks_for_cores_per_gpu():
    job = res(gpus=4, cpus=8)
    assert (job.threads, job.cpus_per_gpu) == (32, 8)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"gpus": 0, "cpus": 1, "mem_mb": 1}, "resources.sft: missing key(s) ['runtime']"),
        ({"gpus": 0, "cpus": 1, "mem_mb": 1, "runtime": 1, "gpu": 1}, "resources.sft: unknown key(s) ['gpu']"),
        ({"gpus": -1, "cpus": 1, "mem_mb": 1, "runtime": 1}, "resources.sft.gpus"),
        ({"gpus": 0, "cpus": 0, "mem_mb": 1, "runtime": 1}, "resources.sft.cpus"),
    ],
)
def test_bad_resources_are_named(section, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cluster.JobResources.from_config(section, "resources.sft")


def test_launcher_is_python_up_to_one_gpu_and_accelerate_beyond():
    assert cluster.launcher(0) == cluster.launcher(1) == "python"
    command = cluster.launcher(4)
    assert command.startswith("accelerate launch --multi_gpu")
    assert "--num_processes 4" in command and "--main_process_port 0" in command
    with pytest.raises(ValueError):
        cluster.launcher(2, multi_process=False)


def test_one_deepspeed_process_starts_under_torchrun():
    """DeepSpeed in one process needs a launcher's rendezvous (without one it looks for MPI), which accelerate
    gives only to two or more processes: one GPU, or one CPU process, starts under torchrun."""
    assert (
        cluster.launcher(1, deepspeed=True)
        == "python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 1 --"
    )
    assert cluster.launcher(0, cpu_threads=8, deepspeed=True).startswith(
        "OMP_NUM_THREADS=8 python -m torch.distributed.run"
    )
    assert cluster.launcher(4, deepspeed=True) == cluster.launcher(4)  # accelerate's torchrun already
    assert cluster.launcher(1) == "python"


@pytest.mark.slow
def test_one_deepspeed_process_trains_ppo_and_sft_on_the_cpu(tmp_path, start_dir, rl_sets):
    """The launcher's command runs PPO and SFT under DeepSpeed ZeRO-2 in one CPU process to the end."""
    import subprocess
    import sys
    from dataclasses import asdict

    from rl_start import TASK

    from sftrl import io
    from sftrl.modeling import load_model

    io.write_jsonl(tmp_path / "prompts.jsonl", rl_sets["rl_prompts"][:8])
    io.write_jsonl(tmp_path / "sft.jsonl", rl_sets["sft"][:16])
    zero2 = str(ROOT / "configs" / "deepspeed" / "zero2.json")
    ppo = {
        "updates": 1,
        "episodes_per_update": 2,
        "minibatch_size": 2,
        "max_new_tokens": 8,
        "save_every": 1,
        "deepspeed": zero2,
    }
    sft = {
        "max_steps": 2,
        "save_every": 2,
        "extra_steps": [],
        "per_device_batch_size": 4,
        "deepspeed": zero2,
        "logging_steps": 1,
    }
    launch = cluster.launcher(0, cpu_threads=1, deepspeed=True).split()
    env = {**__import__("os").environ, launch[0].split("=")[0]: launch[0].split("=")[1]}
    runs = {
        "ppo": [
            str(ROOT / "scripts" / "rl.py"),
            "--config",
            json.dumps({"seed": 0, "task": asdict(TASK), "rl": {"ppo": ppo}}),
            "--algorithm",
            "ppo",
            "--seed",
            "0",
            "--start",
            str(start_dir),
            "--prompts",
            str(tmp_path / "prompts.jsonl"),
            "--out",
            str(tmp_path / "ppo" / "out"),
            "--work-dir",
            str(tmp_path / "ppo" / "work"),
            "--log",
            str(tmp_path / "ppo" / "log"),
        ],
        "sft": [
            str(ROOT / "scripts" / "sft.py"),
            "--config",
            json.dumps({"seed": 0, "sft": sft}),
            "--base",
            str(start_dir),
            "--train",
            str(tmp_path / "sft.jsonl"),
            "--models-dir",
            str(tmp_path / "sft" / "models"),
            "--work-dir",
            str(tmp_path / "sft" / "work"),
            "--log",
            str(tmp_path / "sft" / "log"),
        ],
    }
    for name, args in runs.items():
        done = subprocess.run(
            [sys.executable if a == "python" else a for a in launch[1:]] + args,
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert done.returncode == 0, (name, done.stderr[-3000:])
        assert "mpi4py" not in done.stderr
    load_model(tmp_path / "ppo" / "out")
    load_model(tmp_path / "sft" / "models" / "sft-2")
    assert list((tmp_path / "ppo" / "work" / "checkpoint-1" / "deepspeed").glob("*optim_states.pt"))


def test_cpu_processes_of_a_multi_process_stage():
    job = cluster.JobResources.from_config(
        {"gpus": 0, "processes": 2, "cpus": 3, "mem_mb": 1000, "runtime": 30}, "resources.sft"
    )
    assert (job.process_count, job.threads, job.cpus_per_gpu) == (2, 6, 0)
    assert cluster.JobResources.from_config({"gpus": 0, "cpus": 3, "mem_mb": 1, "runtime": 1}, "x").processes == 1
    command = cluster.launcher(0, cpu_processes=2, cpu_threads=3)
    assert command.startswith("accelerate launch --multi_gpu")
    assert "--num_processes 2" in command and command.endswith("--num_cpu_threads_per_process 3")
    assert cluster.launcher(0, cpu_processes=1) == "python"
    assert "--num_cpu_threads_per_process" not in cluster.launcher(4, cpu_processes=1)
    section = {"cpus": 1, "mem_mb": 1, "runtime": 1}
    with pytest.raises(ValueError, match=r"resources.sft.processes is for a job on the CPU"):
        cluster.JobResources.from_config({**section, "gpus": 2, "processes": 2}, "resources.sft")
    with pytest.raises(ValueError, match=r"resources.sft.processes must be a positive integer"):
        cluster.JobResources.from_config({**section, "gpus": 0, "processes": 0}, "resources.sft")
    with pytest.raises(ValueError, match=r"resources.evaluate.processes is 2, but evaluation runs in one process"):
        cluster.check_single_device("evaluate", cluster.JobResources(0, 1, 1, 1, processes=2), ["evaluation"])
    cluster.check_single_device("rl", cluster.JobResources(0, 1, 1, 1, processes=2), ["ppo", "grpo"])


def test_single_device_programs_refuse_several_gpus():
    cluster.check_single_device("rl", res(gpus=4), ["ppo", "grpo"])  # both train data-parallel
    cluster.check_single_device("evaluate", res(gpus=1), ["evaluation"])
    with pytest.raises(ValueError, match=r"resources.evaluate.gpus"):
        cluster.check_single_device("evaluate", res(gpus=2), ["evaluation"])


def test_unknown_resources_and_rules_are_named():
    cluster.check_resource_names(["mem_mb", "runtime", "slurm_partition", "tmpdir"], {"sft": ["gpu", "tasks"]})
    with pytest.raises(ValueError, match="unknown resource 'mem_mbb' \\(did you mean 'mem_mb'\\?\\)"):
        cluster.check_resource_names(["mem_mbb"], {})
    with pytest.raises(ValueError, match="set-resources sft: unknown resource 'gpus_per_node'"):
        cluster.check_resource_names([], {"sft": ["gpus_per_node"]})
    cluster.check_rule_names({"sft": {}}, ["sft", "rl"])
    with pytest.raises(ValueError, match="'stf' \\(did you mean 'sft'\\?\\)"):
        cluster.check_rule_names({"stf": {}}, ["sft", "rl"])


def test_visible_gpus(tmp_path):
    assert cluster.visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}, tmp_path) == 2
    assert cluster.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, tmp_path) == 0
    assert cluster.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}, tmp_path) == 0
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    assert cluster.visible_gpus({}, tmp_path) == 2


def test_local_gpus_and_partition_gpus_are_checked():
    jobs = {"sft": res(gpus=4), "evaluate": res(gpus=1), "rl": res(gpus=0)}
    cluster.check_local_gpus(jobs, 4)
    with pytest.raises(ValueError, match=r"resources.sft.gpus: 4, but this machine has 1 GPU"):
        cluster.check_local_gpus(jobs, 1)
    with pytest.raises(ValueError, match=r"evaluate.gpus: 1, resources.sft.gpus: 4, but this machine has 0"):
        cluster.check_local_gpus(jobs, 0)
    cluster.check_partition_gpus(jobs, "gpu", 8)
    with pytest.raises(ValueError, match="partition 'cpu' have at most 0 GPU"):
        cluster.check_partition_gpus(jobs, "cpu", 0)


@pytest.mark.parametrize(
    ("sinfo", "gpus"),
    [("(null)\n", 0), ("gpu:4\n", 4), ("gpu:a100:8(S:0-1)\ngpu:2\n", 8), ("gpu:1,shard:4\n", 1), ("", 0)],
)
def test_gres_gpus(sinfo, gpus):
    assert cluster.gres_gpus(sinfo) == gpus


def test_status_command_needs_minjobage_three_times_the_first_delay():
    config = "ClusterName = x\nMinJobAge               = 300 sec\nMpiDefault = none\n"
    assert cluster.min_job_age(config) == 300
    assert cluster.min_job_age("MinJobAge = 1h\n") == 3600
    assert cluster.min_job_age("") is None
    cluster.check_status_command("squeue", 100, 300, sacct=True)
    cluster.check_status_command("squeue", 200, 300, sacct=False)  # no sacct to fall back to
    cluster.check_status_command("sacct", 200, 300, sacct=True)
    with pytest.raises(ValueError, match=r"MinJobAge \(300 s\) is below 3 x .* at most 100"):
        cluster.check_status_command("squeue", 101, 300, sacct=True)
    with pytest.raises(ValueError, match="MinJobAge \\(None s\\)"):
        cluster.check_status_command("squeue", 40, None, sacct=True)


def test_config_files_resolve_against_the_workflow(tmp_path):
    assert cluster.resolve_config_file(None, ROOT, "sft.deepspeed") is None
    resolved = cluster.resolve_config_file("configs/deepspeed/zero3.json", ROOT, "sft.deepspeed")
    assert resolved == str(ROOT / "configs" / "deepspeed" / "zero3.json")
    with pytest.raises(ValueError, match=r"sft.deepspeed: no file configs/deepspeed/zero4.json"):
        cluster.resolve_config_file("configs/deepspeed/zero4.json", ROOT, "sft.deepspeed")
    (tmp_path / "bad.json").write_text("{stage: 3")
    with pytest.raises(ValueError, match="not valid JSON"):
        cluster.resolve_config_file(str(tmp_path / "bad.json"), ROOT, "sft.deepspeed")


def test_model_source_must_be_a_model_directory(tmp_path):
    for source in ("embedded", "tiny", "hf:Qwen/Qwen2.5-7B-Instruct"):
        cluster.check_model_source(source)
    with pytest.raises(ValueError, match="does not exist"):
        cluster.check_model_source(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match=r"has no config.json"):
        cluster.check_model_source(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    cluster.check_model_source(str(tmp_path))


# --- the workflow: bad input refused before any job starts ---------------------------------------------


def snakemake(workdir, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_unknown_default_resource_is_named(tmp_path):
    result = snakemake(
        tmp_path, "-n", "--configfile", str(CI_CONFIG), "--default-resources", "mem_mb=100", "gpus_per_task=1"
    )
    assert result.returncode != 0
    assert "unknown resource 'gpus_per_task'" in result.stdout + result.stderr


def test_set_resources_for_no_such_rule_is_named_before_any_job(tmp_path):
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(CI_CONFIG), "--set-resources", "stf:mem_mb=100")
    assert result.returncode != 0
    assert "'stf' (did you mean 'sft'?)" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_gpu_job_on_a_machine_without_gpus_is_refused_before_any_job(tmp_path):
    override = tmp_path / "gpus.yaml"
    override.write_text(yaml.safe_dump({"resources": {"sft": {"gpus": 2, "cpus": 1, "mem_mb": 1000, "runtime": 5}}}))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(CI_CONFIG), str(override), env=env)
    assert result.returncode != 0
    assert "resources.sft.gpus: 2, but this machine has 0 GPU(s)" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_profile_with_a_misspelt_key_is_refused(tmp_path):
    profile = tmp_path / "profile"
    shutil.copytree(ROOT / "profiles" / "slurm", profile)
    text = (profile / "config.yaml").read_text().replace("latency-wait:", "latency-wiat:")
    (profile / "config.yaml").write_text(text)
    result = snakemake(tmp_path, "--profile", str(profile), "-n", "--configfile", str(CI_CONFIG))
    assert result.returncode != 0
    assert "latency-wiat" in result.stderr


def test_slurm_profile_dry_runs_with_attempt_scaled_resources(tmp_path):
    result = snakemake(tmp_path, "--profile", str(ROOT / "profiles" / "slurm"), "-n", "--configfile", str(CI_CONFIG))
    assert result.returncode == 0, result.stderr[-2000:]
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1
    assert "slurm_partition" in profile["default-resources"]
    assert "attempt" in str(profile["default-resources"]["mem_mb"])
