# Plans under a budget (sftrl.plan: integer programs, PuLP with its bundled CBC solver), in results/{exp}/plan/.


localrules:
    plan_rl,


checkpoint plan_rl:
    """The SFT checkpoints to start RL from within plan.rl_budget GPU-hours; with rl.from_steps: plan the RL
    runs are the ones it chooses, otherwise it says what the budget of the configured runs would have bought.
    """
    input:
        curve=TABLES / "sft_curve.csv",
        runs=plan_rl_runs(),
    output:
        json=reported(PLAN_RL, "plan_rl", "Plans"),
    log:
        LOGS / "plan" / "plan_rl.log",
    benchmark:
        BENCH / "plan" / "plan_rl.tsv"
    conda:
        "../envs/sftrl.yaml"
    params:
        python=PYTHON,
        what=what("plan the SFT checkpoints RL starts from"),
        script=SCRIPTS / "plan.py",
        options=plan_rl_options(),
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} rl-starts --curve {input.curve} {params.options} --out {output.json} >> {log} 2>&1"


if RESTORE_PLAN:

    localrules:
        plan_restoration,

    checkpoint plan_restoration:
        """The fewest parameters whose restoration is predicted to recover plan.restore_target of the OOD gap."""
        input:
            table=TABLES / "restoration.csv",
            spectrum=lambda wc: restore_plan_spectrum(),
            model=model_dir(SFT_END),
        output:
            json=reported(PLAN_RESTORE, "plan_restoration", "Plans"),
        log:
            LOGS / "plan" / "plan_restoration.log",
        benchmark:
            BENCH / "plan" / "plan_restoration.tsv"
        conda:
            "../envs/sftrl.yaml"
        params:
            python=PYTHON,
            what=what("plan the cheapest restoration that recovers the OOD target"),
            script=SCRIPTS / "plan.py",
            spectrum=lambda wc, input: input.spectrum or "none",
            edit=RESTORE_PLAN_SPEC.name if RESTORE_PLAN_SPEC else "",
            target=config["plan"]["restore_target"],
        shell:
            "echo {params.what:q} > {log}; "
            "{params.python} {params.script} restoration --spectrum {params.spectrum} --restoration {input.table}"
            " --edit {params.edit} --model {input.model} --target {params.target} --out {output.json} >> {log} 2>&1"

    rule restore_plan:
        """The model directory of the cheapest restoration: the measured edit on the planned blocks only."""
        input:
            plan=PLAN_RESTORE,
            source=lambda wc: model_dir(role_model("sft_peak")),
            target=model_dir(SFT_END),
        output:
            droppable(directory(MODELS / PLAN_EDIT_MODEL), protect=False),
        log:
            LOGS / "plan" / "restore_plan.log",
        benchmark:
            BENCH / "plan" / "restore_plan.tsv"
        conda:
            "../envs/sftrl.yaml"
        threads: 1
        params:
            python=PYTHON,
            what=what("build the planned restoration's model"),
            script=SCRIPTS / "plan.py",
            spec=config_file(
                "restore-plan",
                RESTORE_PLAN_SPEC.to_dict() if RESTORE_PLAN_SPEC else {},
            ),
            source=lambda wc: model_ref(role_model("sft_peak")),
            target=model_ref(SFT_END),
            cache=svd_cache_option(),
        shell:
            "echo {params.what:q} > {log}; "
            "{params.python} {params.script} build-edit --plan {input.plan} --edit-spec {params.spec:q}"
            " --source {params.source} --target {params.target} {params.cache} --out {output} >> {log} 2>&1"
