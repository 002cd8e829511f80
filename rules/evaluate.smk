rule evaluate:
    """Multi-turn evaluation of one model on every split (one model load): samples and metrics per split."""
    input:
        model=lambda wc: model_dir(wc.model),
        episodes=[DATA / f"eval_{split}.jsonl" for split in EVAL_SPLITS],
    output:
        metrics=[eval_metrics("{model}", split) for split in EVAL_SPLITS],
        samples=[eval_samples("{model}", split) for split in EVAL_SPLITS],
    log:
        LOGS / "eval" / "{model}.log",
    benchmark:
        BENCH / "eval" / "{model}.tsv"
    conda:
        "../envs/sftrl.yaml"
    threads: job_resources("evaluate").threads
    resources:
        gpu=job_resources("evaluate").gpus,
        cpus_per_gpu=job_resources("evaluate").cpus_per_gpu,
        tasks=1,
        mem_mb=job_resources("evaluate").mem_mb_for,
        runtime=job_resources("evaluate").runtime_for,
    params:
        python=PYTHON,
        what=what("evaluate {model} on every split"),
        script=SCRIPTS / "evaluate.py",
        model=lambda wc: model_ref(wc.model),
        cfg=config_file("evaluate", sections("seed", "task", "model", "eval")),
        tracking=TRACKING_FILE,
        memory=memory_record(BENCH / "eval" / "{model}.tsv"),
        splits=" ".join(EVAL_SPLITS),
        out=lambda wc: EVAL / wc.model / "{split}",
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} --config {params.cfg:q} --model {params.model} --name {wildcards.model}"
        " --episodes {input.episodes} --split {params.splits} --out {params.out:q}"
        " --tracking {params.tracking} --memory {params.memory}"
        " >> {log} 2>&1"


localrules:
    sft_curve,


rule sft_curve:
    """Success of the base and every SFT checkpoint per split: the table and the first figure."""
    input:
        [eval_metrics(m, s) for m in CURVE_MODELS for s in EVAL_SPLITS],
    output:
        table=reported(TABLES / "sft_curve.csv", "sft_curve_table", "SFT"),
        figure=reported(FIGURES / "sft_curve.png", "sft_curve", "SFT"),
        pdf=FIGURES / "sft_curve.pdf",
    log:
        LOGS / "report" / "sft_curve.log",
    benchmark:
        BENCH / "report" / "sft_curve.tsv"
    conda:
        "../envs/sftrl.yaml"
    params:
        python=PYTHON,
        what=what("table and figure: success of every SFT checkpoint per split"),
        script=SCRIPTS / "sft_curve.py",
        entries=" ".join(
            f"--{s} "
            + " ".join(f"{model_step(m)}={eval_metrics(m, s)}" for m in CURVE_MODELS)
            for s in EVAL_SPLITS
        ),
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} {params.entries} --csv {output.table} --plot {output.figure} >> {log} 2>&1"


localrules:
    format_errors,


rule format_errors:
    """The share of attempts with no valid formula over SFT steps per split (the revision's diagnostic)."""
    input:
        [eval_metrics(m, s) for m in CURVE_MODELS for s in EVAL_SPLITS],
    output:
        table=reported(TABLES / "format_errors.csv", "format_errors_table", "SFT"),
        parquet=TABLES / "format_errors.parquet",
        figure=reported(FIGURES / "format_errors.png", "format_errors", "SFT"),
        pdf=FIGURES / "format_errors.pdf",
    log:
        LOGS / "report" / "format_errors.log",
    benchmark:
        BENCH / "report" / "format_errors.tsv"
    conda:
        "../envs/sftrl.yaml"
    params:
        python=PYTHON,
        what=what("table and figure: attempts with no valid formula over SFT steps"),
        script=SCRIPTS / "diagnostics.py",
        metrics=" ".join(
            f"{model_step(m)}:{s}={eval_metrics(m, s)}"
            for m in CURVE_MODELS
            for s in EVAL_SPLITS
        ),
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} format-errors --metrics {params.metrics}"
        " --csv {output.table} --figure {output.figure} >> {log} 2>&1"
