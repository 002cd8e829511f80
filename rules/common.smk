# Paths and helpers shared by all rules (the one place that knows the layout).
import json
from pathlib import Path

from sftrl.config import ladder_steps


def as_list(value):
    return value if isinstance(value, list) else [value]


def rl_model(algo, step, seed):
    return f"rl-{algo}-from{step}-s{seed}"


EXP = config["exp"]
RESULTS = Path("results") / EXP
DATA = RESULTS / "data"
MODELS = RESULTS / "models"
EVAL = RESULTS / "eval"
TABLES = RESULTS / "tables"
FIGURES = RESULTS / "figures"
LOGS = RESULTS / "logs"
BENCH = RESULTS / "benchmarks"
WORK = RESULTS / "work"
SCRIPTS = Path(workflow.basedir) / "scripts"
EMBEDDED_BASE = Path(workflow.basedir) / "resources" / "tiny-base"

EVAL_SPLITS = ["id", "id_unseen", "ood"]
LOSS_SPLITS = ["id_unseen", "ood"]
SFT_STEPS = ladder_steps(
    config["sft"]["max_steps"],
    config["sft"]["save_every"],
    config["sft"]["extra_steps"],
)
SFT_MODELS = [f"sft-{step}" for step in SFT_STEPS]
RL_ALGORITHMS = as_list(config["rl"]["algorithm"])
RL_FROM_STEPS = (
    SFT_STEPS if config["rl"]["from_steps"] == "all" else config["rl"]["from_steps"]
)
RL_MODELS = [
    rl_model(algo, step, seed)
    for algo in RL_ALGORITHMS
    for step in RL_FROM_STEPS
    for seed in config["rl"]["seeds"]
]
CURVE_MODELS = ["base", *SFT_MODELS]
EVAL_MODELS = [*CURVE_MODELS, *RL_MODELS]
BUILT_BASE = config["model"]["source"] in ("embedded", "tiny")


off_ladder = sorted(set(RL_FROM_STEPS) - set(SFT_STEPS))
if off_ladder:
    raise ValueError(
        f"rl.from_steps {off_ladder} are not on the SFT ladder {SFT_STEPS}"
    )


def config_json(*sections):
    """The named config sections as one JSON argument, so a script sees exactly what the rule saw."""
    return json.dumps({name: config[name] for name in sections}, sort_keys=True)


HUB_PREFIX = "hf:"


def model_ref(name):
    """What a script loads for a model: a directory of the DAG, the user's own base where it lies,
    or a hub id (`model.source: hf:org/name`, the only case that touches the network).
    """
    source = config["model"]["source"]
    if name == "base" and not BUILT_BASE:
        return source.removeprefix(HUB_PREFIX)
    return MODELS / name


def model_dir(name):
    """The model as an input file of a job; a hub id is not a file, so it is none."""
    if name == "base" and config["model"]["source"].startswith(HUB_PREFIX):
        return []
    return model_ref(name)


def rl_config_json(algo):
    """The config an RL run sees: its own algorithm's section only, so editing the other reruns nothing."""
    sections = {name: config[name] for name in ("seed", "task", "model")}
    return json.dumps({**sections, "rl": {algo: config["rl"][algo]}}, sort_keys=True)


def model_step(name):
    """The SFT step a model stands at on the curve: 0 for the base."""
    return 0 if name == "base" else int(name.removeprefix("sft-"))


def eval_metrics(model, split):
    return EVAL / model / split / "metrics.json"


def dataset_files():
    return [
        DATA / "sft.jsonl",
        DATA / "rl_prompts.jsonl",
        *[DATA / f"eval_{split}.jsonl" for split in EVAL_SPLITS],
        *[DATA / f"loss_{split}.jsonl" for split in LOSS_SPLITS],
    ]


def all_targets():
    return [
        *dataset_files(),
        DATA / "manifest.json",
        TABLES / "sft_curve.csv",
        FIGURES / "sft_curve.png",
        TABLES / "rl_from_sft.csv",
        FIGURES / "rl_from_sft.png",
    ]
