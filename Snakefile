import re
from pathlib import Path

from snakemake.utils import min_version, validate

import sftrl.config

min_version("9.0")


configfile: Path(workflow.basedir) / "config.yaml"


sftrl.config.check_renamed_keys(config)
validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"


# Job logs are read, not watched: no progress bars (model loading, tokenising) between their lines.
JOB_ENV = {"TQDM_DISABLE": "1"}


shell.prefix(
    "set -euo pipefail; " + "".join(f"export {k}={v}; " for k, v in JOB_ENV.items())
)


include: "rules/common.smk"
include: "rules/cluster.smk"


wildcard_constraints:
    split="|".join(EVAL_SPLITS),
    model="|".join(re.escape(m) for m in [*EVAL_MODELS, *EDIT_MODELS, *PLAN_MODELS]),
    algo="|".join(RL_ALGORITHMS),
    step="|".join(str(s) for s in RL_FROM_STEPS),
    seed="|".join(str(s) for s in config["rl"]["seeds"]),
    a="|".join(re.escape(m) for m in CURVE_MODELS),
    b="|".join(re.escape(m) for m in [*SFT_MODELS, *RL_MODELS]),
    rl="|".join(re.escape(m) for m in RL_MODELS),
    source="|".join(re.escape(t) for t in ROLE_TOKENS),
    target="|".join(re.escape(t) for t in ROLE_TOKENS),


include: "rules/data.smk"
include: "rules/base.smk"
include: "rules/sft.smk"
include: "rules/evaluate.smk"
include: "rules/rl.smk"
include: "rules/roles.smk"
include: "rules/spectrum.smk"
include: "rules/representations.smk"
include: "rules/restore.smk"
include: "rules/plan.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
        MEMORY_TABLE,
