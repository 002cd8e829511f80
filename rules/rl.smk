rule rl:
    """RL fine-tuning of one SFT checkpoint with one algorithm and seed; resumes after an interruption."""
    input:
        start=MODELS / "sft-{step}",
        prompts=DATA / "rl_prompts.jsonl",
    output:
        model=droppable(directory(MODELS / "rl-{algo}-from{step}-s{seed}")),
        exported=[
            droppable(directory(MODELS / f"rl-{{algo}}-from{{step}}-s{{seed}}-u{u}"))
            for u in RL_EXPORTED
        ],
        history=RESULTS / "rl" / "rl-{algo}-from{step}-s{seed}" / "history.jsonl",
    log:
        LOGS / "rl" / "rl-{algo}-from{step}-s{seed}.log",
    benchmark:
        BENCH / "rl" / "rl-{algo}-from{step}-s{seed}.tsv"
    conda:
        "../envs/sftrl.yaml"
    threads: job_resources("rl").threads
    resources:
        gpu=job_resources("rl").gpus,
        cpus_per_gpu=job_resources("rl").cpus_per_gpu,
        tasks=1,
        mem_mb=job_resources("rl").mem_mb_for,
        runtime=job_resources("rl").runtime_for,
    params:
        what=what("RL ({algo}) from sft-{step}, seed {seed}"),
        launch=lambda wc: launch("rl", wc.algo),
        script=SCRIPTS / "rl.py",
        cfg=lambda wc: rl_config(wc.algo),
        tracking=TRACKING_FILE,
        memory=memory_record(BENCH / "rl" / "rl-{algo}-from{step}-s{seed}.tsv"),
        work=lambda wc: WORK / "rl" / f"rl-{wc.algo}-from{wc.step}-s{wc.seed}",
        discard=("--discard-checkpoints" if config["keep_models"] == "ladder" else ""),
        exports=lambda wc, output: (
            "--export "
            + " ".join(f"{u}={path}" for u, path in zip(RL_EXPORTED, output.exported))
            if RL_EXPORTED
            else ""
        ),
    shell:
        "echo {params.what:q} > {log}; "
        "{params.launch} {params.script} --config {params.cfg:q} --algorithm {wildcards.algo} --seed {wildcards.seed}"
        " --start {input.start} --prompts {input.prompts} --out {output.model} {params.exports}"
        " --work-dir {params.work} --log {output.history} {params.discard}"
        " --tracking {params.tracking} --memory {params.memory} >> {log} 2>&1"


localrules:
    rl_table,
    rl_curve,


rule rl_curve:
    """Success over RL updates per start checkpoint: the start, the policies exported along each run and the
    final policy, every seed drawn."""
    input:
        lambda wc: [
            eval_metrics(m, s)
            for m in [*SFT_MODELS, *curve_runs_models()]
            for s in EVAL_SPLITS
        ],
    output:
        table=reported(TABLES / "rl_curve.csv", "rl_curve_table", "RL"),
        figure=reported(FIGURES / "rl_curve.png", "rl_curve", "RL"),
        pdf=FIGURES / "rl_curve.pdf",
    log:
        LOGS / "report" / "rl_curve.log",
    benchmark:
        BENCH / "report" / "rl_curve.tsv"
    conda:
        "../envs/sftrl.yaml"
    params:
        python=PYTHON,
        what=what("table and figure: success over RL updates per start"),
        script=SCRIPTS / "rl_curve.py",
        eval_root=EVAL,
        runs=lambda wc: " ".join(planned_runs()),
        updates=" ".join(map(str, RL_EXPORTED)),
        lengths=" ".join(f"{a}={run_length(config, a)}" for a in RL_ALGORITHMS),
        analysed=RL_ANALYSED or "final",
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} --eval-root {params.eval_root} --runs {params.runs} --updates {params.updates}"
        " --lengths {params.lengths} --analysed {params.analysed} --table {output.table}"
        " --plot {output.figure} >> {log} 2>&1"


rule rl_table:
    """Success before and after RL for every start checkpoint, with recovery against the OOD peak."""
    input:
        sft=[eval_metrics(m, s) for m in CURVE_MODELS for s in EVAL_SPLITS],
        sft_samples=[eval_samples(m, OOD) for m in SFT_MODELS],
        rl=lambda wc: [eval_metrics(m, s) for m in rl_models() for s in EVAL_SPLITS],
    output:
        table=reported(TABLES / "rl_from_sft.csv", "rl_table", "RL"),
        figure=reported(FIGURES / "rl_from_sft.png", "rl_from_sft", "RL"),
        pdf=FIGURES / "rl_from_sft.pdf",
    log:
        LOGS / "report" / "rl_table.log",
    benchmark:
        BENCH / "report" / "rl_table.tsv"
    conda:
        "../envs/sftrl.yaml"
    params:
        python=PYTHON,
        what=what("table and figure: success before and after RL per start"),
        script=SCRIPTS / "rl_table.py",
        eval_root=EVAL,
        sft=" ".join(SFT_MODELS),
        rl=lambda wc: " ".join(rl_models()),
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} --eval-root {params.eval_root} --sft {params.sft} --rl {params.rl}"
        " --table {output.table} --plot {output.figure} >> {log} 2>&1"


if "ppo" in RL_ALGORITHMS:

    localrules:
        ppo_advantages,

    rule ppo_advantages:
        """PPO's normalised advantages per start checkpoint, from the runs' logs (the revision's diagnostic)."""
        input:
            lambda wc: [
                rl_history(m) for m in rl_models() if rl_run(m).algorithm == "ppo"
            ],
        output:
            table=reported(TABLES / "ppo_advantages.csv", "ppo_advantages_table", "RL"),
            parquet=TABLES / "ppo_advantages.parquet",
            figure=reported(FIGURES / "ppo_advantages.png", "ppo_advantages", "RL"),
            pdf=FIGURES / "ppo_advantages.pdf",
        log:
            LOGS / "report" / "ppo_advantages.log",
        benchmark:
            BENCH / "report" / "ppo_advantages.tsv"
        conda:
            "../envs/sftrl.yaml"
        params:
            python=PYTHON,
            what=what("figure: PPO's normalised advantages per start"),
            script=SCRIPTS / "diagnostics.py",
            history=lambda wc: " ".join(
                f"{m}={rl_history(m)}"
                for m in rl_models()
                if rl_run(m).algorithm == "ppo"
            ),
        shell:
            "echo {params.what:q} > {log}; "
            "{params.python} {params.script} advantages --history {params.history}"
            " --csv {output.table} --figure {output.figure} >> {log} 2>&1"
