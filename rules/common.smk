# Paths, wildcard constraints and helpers shared by every rule: the one place that knows the layout.
import json
from pathlib import Path

from sftrl.config import ladder_steps

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
EMBEDDED_BASE = Path(workflow.basedir) / "resources" / "tiny-base"

EVAL_SPLITS = ["id", "id_unseen", "ood"]
LOSS_SPLITS = ["id_unseen", "ood"]
SFT_STEPS = ladder_steps(
    config["sft"]["max_steps"],
    config["sft"]["save_every"],
    config["sft"]["extra_steps"],
)
SFT_MODELS = [f"sft-{step}" for step in SFT_STEPS]
EVAL_MODELS = ["base", *SFT_MODELS]
BUILT_BASE = config["model"]["source"] in ("embedded", "tiny")


wildcard_constraints:
    split="|".join(EVAL_SPLITS),
    model="|".join(EVAL_MODELS),


def config_json(*sections):
    """The named config sections as one JSON argument, so a script sees exactly what the rule saw."""
    return json.dumps({name: config[name] for name in sections}, sort_keys=True)


def model_dir(name):
    """The directory of a model in the DAG; a user's own base model is used where it lies."""
    if name == "base" and not BUILT_BASE:
        return config["model"]["source"]
    return MODELS / name


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
    ]
