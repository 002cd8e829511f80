from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: Path(workflow.basedir) / "config.yaml"


validate(config, "schemas/config.schema.yaml")


include: "rules/common.smk"


wildcard_constraints:
    split="|".join(EVAL_SPLITS),
    model="|".join(EVAL_MODELS),
    algo="|".join(RL_ALGORITHMS),
    step="|".join(str(s) for s in RL_FROM_STEPS),
    seed="|".join(str(s) for s in config["rl"]["seeds"]),


include: "rules/data.smk"
include: "rules/base.smk"
include: "rules/sft.smk"
include: "rules/evaluate.smk"
include: "rules/rl.smk"


rule all:
    default_target: True
    input:
        all_targets(),
