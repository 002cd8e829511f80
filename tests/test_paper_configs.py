"""The paper-scale experiments dry-run: their DAG of hundreds of jobs builds in seconds, and every GPU
rule's command line is the one the cluster will run (accelerate launch with one process per GPU and the
DeepSpeed config for SFT)."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sftrl import cluster

ROOT = Path(__file__).resolve().parents[1]
# config.json of each model as far as the workflow reads it before any job runs (decoder layers, tied
# embeddings), with the values of the published checkpoints
# The config.json fields of the two models that the workflow reads (their published values).
MODELS: dict[str, dict[str, Any]] = {
    "qwen2.5-7b": {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    "llama3.2-11b-vision": {
        "model_type": "mllama",
        "text_config": {
            "hidden_size": 4096,
            "intermediate_size": 14336,
            "num_hidden_layers": 40,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "vocab_size": 128256,
            "tie_word_embeddings": False,
        },
        "vision_config": {
            "hidden_size": 1280,
            "intermediate_size": 5120,
            "num_hidden_layers": 32,
            "num_global_layers": 8,
            "vision_output_dim": 7680,
        },
    },
}


def shell_commands(output: str) -> list[str]:
    """The jobs' commands a dry run with -p prints, each without the line that opens its log."""
    lines = [line.removeprefix("Shell command: ") for line in output.splitlines() if "Shell command" in line]
    return [line.split("; ", 1)[1] if line.startswith("echo ") else line for line in lines]


def merged_config(configfiles: list[Path]) -> dict:
    """config.yaml under `configfiles`, validated, DeepSpeed configs as absolute paths: what the workflow's
    jobs read (`Snakefile`, `rules/cluster.smk`)."""
    from snakemake.common.configfile import load_configfile
    from snakemake.utils import update_config, validate

    config = load_configfile(str(ROOT / "config.yaml"))
    for path in configfiles:
        update_config(config, load_configfile(str(path)))
    validate(config, str(ROOT / "schemas" / "config.schema.yaml"))
    for section, key in ((config["sft"], "sft"), (config["rl"]["ppo"], "rl.ppo")):  # as rules/cluster.smk
        section["deepspeed"] = cluster.resolve_config_file(section["deepspeed"], ROOT, f"{key}.deepspeed")
    return config


def stage_file(config: dict, stage: str, content: dict) -> Path:
    """The file a stage's command names for `content` (`rules/common.smk`; written when a run starts)."""
    from sftrl.job_config import ConfigFiles

    return ConfigFiles(Path("results") / config["exp"] / "configs").stage(stage, content)


def dry_run(
    tmp_path: Path, experiment: str, model_config: dict | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(model_config or MODELS[experiment]))
    override = tmp_path / "model.yaml"
    override.write_text(yaml.safe_dump({"model": {"source": str(model)}}))
    start = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "-p",
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(tmp_path / "work"),
            "--configfile",
            str(ROOT / "experiments" / f"{experiment}.yaml"),
            str(override),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result, time.perf_counter() - start


def test_a_base_of_an_unknown_family_is_refused_at_the_dry_run(tmp_path):
    result, _ = dry_run(tmp_path, "qwen2.5-7b", {**MODELS["qwen2.5-7b"], "model_type": "made_up"})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "model family 'made_up'" in output and "src/sftrl/families.py" in output
    assert "Job stats" not in output, "refused before any job is planned"


def job_counts(stdout: str) -> dict[str, int]:
    table = stdout[stdout.rindex("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


@pytest.mark.parametrize(
    ("experiment", "deepspeed"), [("qwen2.5-7b", "zero2_offload"), ("llama3.2-11b-vision", "zero3_offload")]
)
def test_paper_experiment_dry_runs_with_multi_gpu_commands(tmp_path, experiment, deepspeed):
    result, seconds = dry_run(tmp_path, experiment)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    # 80 ladder steps (every 20 to 1,600), PPO from each, every model and edited model evaluated
    assert counts["rl"] == 80
    assert counts["evaluate"] >= 1 + 80 + 80
    assert counts["total"] > 500  # before the roles checkpoint adds the sft_peak jobs
    assert seconds < 120, f"DAG of {counts['total']} jobs took {seconds:.0f} s"
    commands = shell_commands(result.stdout)
    sft = [line for line in commands if "scripts/sft.py" in line]
    assert len(sft) == 1
    assert sft[0].startswith("accelerate launch --multi_gpu --num_machines 1 --machine_rank 0 --num_processes 4")
    config = merged_config([ROOT / "experiments" / f"{experiment}.yaml", tmp_path / "model.yaml"])
    common = {name: config[name] for name in ("seed", "task", "model")}
    assert config["sft"]["deepspeed"] == str(ROOT / "configs" / "deepspeed" / f"{deepspeed}.json")
    assert f"--config {stage_file(config, 'sft', {**common, 'sft': config['sft']})} " in sft[0]
    assert re.search(r"resources: .*gpu=4", result.stdout)  # the sft job asks SLURM for 4 GPUs
    ppo = [line for line in commands if "scripts/rl.py" in line]
    assert len(ppo) == 80
    plan = result.stdout[result.stdout.index("Memory plan") :]
    assert re.search(r"^  rl +4 +\d+\.\d +80  PPO update", plan, re.MULTILINE), plan[:600]
    assert config["rl"]["ppo"]["deepspeed"] == str(
        ROOT / "configs" / "deepspeed" / "zero2_offload.json"
    )  # the authors'

    ppo_file = stage_file(config, "rl-ppo", {**common, "rl": {"ppo": config["rl"]["ppo"]}})
    assert all(
        line.startswith("accelerate launch --multi_gpu --num_machines 1 --machine_rank 0 --num_processes 4")
        and f"--config {ppo_file} " in line
        for line in ppo
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"sft": {"deepspeed": "configs/deepspeed/zero5.json"}}, "sft.deepspeed: no file configs/deepspeed/zero5.json"),
        ({"rl": {"ppo": {"deepspeed": "configs/deepspeed/zero3.json"}}}, "ZeRO stage 3 partitions the weights"),
        (
            {
                "rl": {"ppo": {"deepspeed": None}},
                "resources": {"rl": {"gpus": 1, "cpus": 8, "mem_mb": 1, "runtime": 1, "gpu_mem_gb": 80}},
            },
            "more than resources.rl.gpu_mem_gb = 80",
        ),
    ],
    ids=["missing", "ppo-zero3", "ppo-on-one-gpu"],
)
def test_bad_parallel_settings_are_named_at_the_dry_run(tmp_path, section, message):
    """A missing DeepSpeed file, ZeRO-3 for PPO, 7B PPO on one 80 GB GPU: refused before any job."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(MODELS["qwen2.5-7b"]))
    override = tmp_path / "over.yaml"
    override.write_text(yaml.safe_dump({"model": {"source": str(model)}, **section}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(tmp_path / "work"),
            "--configfile",
            str(ROOT / "experiments" / "qwen2.5-7b.yaml"),
            str(override),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


@pytest.mark.parametrize("gpus", [1, 0])
def test_one_process_under_deepspeed_starts_under_torchrun(tmp_path, gpus):
    """The paper config's SFT and PPO on one GPU (or on the CPU): they name DeepSpeed configs, so they start
    under torchrun, whose rendezvous DeepSpeed needs even in one process (without it: MPI, mpi4py)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(MODELS["qwen2.5-7b"]))
    one = {"gpus": gpus, "cpus": 8, "mem_mb": 1000, "runtime": 60, **({"gpu_mem_gb": 80} if gpus else {})}
    override = tmp_path / "over.yaml"
    override.write_text(yaml.safe_dump({"model": {"source": str(model)}, "resources": {"sft": one, "rl": one}}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "-p",
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(tmp_path / "work"),
            "--configfile",
            str(ROOT / "experiments" / "qwen2.5-7b.yaml"),
            str(override),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    commands = shell_commands(result.stdout)
    launched = [c for c in commands if "scripts/sft.py" in c or "scripts/rl.py" in c]
    prefix = (
        "" if gpus else "OMP_NUM_THREADS=8 "
    ) + "python -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node 1 -- "
    assert launched and all(c.startswith(prefix) for c in launched), launched[:2]


@pytest.mark.parametrize("experiment", list(MODELS))
def test_paper_experiment_builds_its_datasets(tmp_path, experiment):
    """The first job a user queues: every count the config asks for is supplied, in the paper's volume."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(MODELS[experiment]))
    override = tmp_path / "model.yaml"
    override.write_text(yaml.safe_dump({"model": {"source": str(model)}}))
    config = yaml.safe_load((ROOT / "experiments" / f"{experiment}.yaml").read_text())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(ROOT / "Snakefile"),
            "-d",
            str(tmp_path / "work"),
            "--cores",
            "1",
            "--until",
            "datasets",
            "--configfile",
            str(ROOT / "experiments" / f"{experiment}.yaml"),
            str(override),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = tmp_path / "work" / "results" / config["exp"] / "data"
    lines = {path.stem: len(path.read_text().splitlines()) for path in data.glob("*.jsonl")}
    asked = config["data"]
    assert lines["rl_prompts"] == asked["rl"]["prompts"]
    assert all(lines[f"eval_{split}"] == asked["eval"][split] for split in ("id", "id_unseen", "ood"))
    # every training multiset, several orders and solutions each: more than 30 examples per multiset
    assert lines["sft"] > 30 * asked["sft"]["hands"]
