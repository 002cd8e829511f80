# Roles of the spectral and restoration stages: sft_peak depends on the evaluation results, so this is a
# checkpoint, and the jobs that use sft_peak are planned once roles.json exists.


localrules:
    roles,


checkpoint roles:
    """sft_peak (best OOD success, ties to the earliest step), sft_end, base and the RL models, as JSON."""
    input:
        [eval_metrics(m, OOD) for m in SFT_MODELS],
        [eval_samples(m, OOD) for m in SFT_MODELS],
        plan=[PLAN_RL] if RL_PLANNED else [],
    output:
        json=TABLES / "roles.json",
    log:
        LOGS / "report" / "roles.log",
    benchmark:
        BENCH / "report" / "roles.tsv"
    conda:
        "../envs/sftrl.yaml"
    params:
        python=PYTHON,
        what=what("name the roles: sft_peak, sft_end, base and the RL models"),
        script=SCRIPTS / "roles.py",
        eval_root=EVAL,
        sft=" ".join(SFT_MODELS),
        rl=lambda wc: " ".join(rl_models()),
        sft_end=SFT_END,
        peak_rule=config["restore"]["peak_rule"],
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} --eval-root {params.eval_root} --sft {params.sft} --rl {params.rl}"
        " --sft-end {params.sft_end} --peak-rule {params.peak_rule} --out {output.json} >> {log} 2>&1"
