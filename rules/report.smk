# The report: a verdict on each claim of the study, the report's own figures and the tables behind them;
# `snakemake --report results/{exp}/report.html` gathers every output registered with report().


localrules:
    claims,
    report_curves,


rule claims:
    """A verdict (supported / not supported / inconclusive) on each finding, with its numbers and tests."""
    input:
        curve=TABLES / "sft_curve.csv",
        rl=TABLES / "rl_from_sft.csv",
        history=RESULTS / "sft" / "history.jsonl",
        roles=TABLES / "roles.json",
        restoration=[TABLES / "restoration.csv"] if RESTORE_PAIRS else [],
        representations=[TABLES / "representations.csv"] if REPR_TOKENS else [],
        spectra=lambda wc: [table for _, table in claim_spectra()],
        samples=lambda wc: [path for _, path in claim_samples()],
    output:
        md=reported(REPORT / "claims.md", "claims", "Claims"),
        json=reported(REPORT / "claims.json", "claims_json", "Claims"),
    log:
        LOGS / "report" / "claims.log",
    benchmark:
        BENCH / "report" / "claims.tsv"
    conda:
        "../envs/sftrl.yaml"
    params:
        python=PYTHON,
        what=what("verdicts on the paper's claims"),
        script=SCRIPTS / "claims.py",
        restoration=lambda wc, input: (
            f"--restoration {input.restoration}" if input.restoration else ""
        ),
        representations=lambda wc, input: (
            f"--representations {input.representations}"
            if input.representations
            else ""
        ),
        spectra=lambda wc: " ".join(f"{m}={t}" for m, t in claim_spectra()),
        samples=lambda wc: " ".join(f"{m}={p}" for m, p in claim_samples()),
        settings=config_file(
            "claims", {**config["report"]["claims"], "rl_update": RL_ANALYSED}
        ),
        seed=config["seed"],
        title=f"Claims: experiment {EXP}",
        paper=(
            f"--paper-table {config['report']['paper_table']}"
            f" --margin {config['report']['equivalence_margin_pct']}"
            if config["report"]["paper_table"]
            else ""
        ),
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} --curve {input.curve} --rl {input.rl} --history {input.history}"
        " --roles {input.roles} {params.restoration} {params.representations} --spectrum {params.spectra} --samples {params.samples}"
        " --settings {params.settings:q} --seed {params.seed} --title {params.title:q} {params.paper}"
        " --md {output.md} --json {output.json} >> {log} 2>&1"


rule report_curves:
    """Success vs step per split with RL arrows, SFT loss beside OOD success, the recoverable window."""
    input:
        curve=TABLES / "sft_curve.csv",
        rl=TABLES / "rl_from_sft.csv",
        history=RESULTS / "sft" / "history.jsonl",
        roles=TABLES / "roles.json",
    output:
        success=reported(FIGURES / "success_vs_step.png", "success_panels", "SFT"),
        success_pdf=FIGURES / "success_vs_step.pdf",
        loss=reported(FIGURES / "loss_vs_ood.png", "loss_vs_ood", "SFT"),
        loss_pdf=FIGURES / "loss_vs_ood.pdf",
        loss_table=reported(TABLES / "loss_curve.csv", "loss_table", "SFT"),
        loss_parquet=TABLES / "loss_curve.parquet",
        window=reported(FIGURES / "recovery_window.png", "recovery_window", "RL"),
        window_pdf=FIGURES / "recovery_window.pdf",
        window_table=reported(
            TABLES / "recovery_window.csv", "recovery_window_table", "RL"
        ),
        window_parquet=TABLES / "recovery_window.parquet",
    log:
        LOGS / "report" / "report_curves.log",
    benchmark:
        BENCH / "report" / "report_curves.tsv"
    conda:
        "../envs/sftrl.yaml"
    params:
        python=PYTHON,
        what=what(
            "figures: success over SFT steps with RL arrows, loss beside OOD success"
        ),
        script=SCRIPTS / "report.py",
        draws=config["report"]["claims"]["bootstrap_draws"],
        seed=config["seed"],
        most=config["report"]["claims"]["most_recovered_pct"],
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} --bootstrap-draws {params.draws} --seed {params.seed} curves"
        " --curve {input.curve} --rl {input.rl} --history {input.history} --roles {input.roles}"
        " --most-pct {params.most}"
        " --success-figure {output.success} --loss-figure {output.loss} --loss-table {output.loss_table}"
        " --window-figure {output.window} --window-table {output.window_table} >> {log} 2>&1"


if RESTORE_PAIRS:

    localrules:
        report_restoration,

    rule report_restoration:
        """OOD recovery of every restoration edit, with the cheapest planned edit: predicted and measured."""
        input:
            restoration=TABLES / "restoration.csv",
            plan=[PLAN_RESTORE] if RESTORE_PLAN else [],
            planned=lambda wc: planned_edit_metrics(),
        output:
            figure=reported(
                FIGURES / "restoration_recovery.png",
                "restoration_recovery",
                "Restoration",
            ),
            pdf=FIGURES / "restoration_recovery.pdf",
            table=reported(
                TABLES / "restoration_recovery.csv",
                "restoration_recovery_table",
                "Restoration",
            ),
            parquet=TABLES / "restoration_recovery.parquet",
        log:
            LOGS / "report" / "report_restoration.log",
        benchmark:
            BENCH / "report" / "report_restoration.tsv"
        conda:
            "../envs/sftrl.yaml"
        params:
            python=PYTHON,
            what=what("figure: OOD recovery of every restoration edit"),
            script=SCRIPTS / "report.py",
            draws=config["report"]["claims"]["bootstrap_draws"],
            seed=config["seed"],
            threshold=config["report"]["claims"]["restored_pct"],
            plan=lambda wc, input: f"--plan {input.plan}" if input.plan else "",
            planned=lambda wc, input: (
                f"--planned-metrics {input.planned}" if input.planned else ""
            ),
        shell:
            "echo {params.what:q} > {log}; "
            "{params.python} {params.script} --bootstrap-draws {params.draws} --seed {params.seed} restoration"
            " --restoration {input.restoration} {params.plan} {params.planned} --threshold-pct {params.threshold}"
            " --table {output.table} --figure {output.figure} >> {log} 2>&1"


localrules:
    memory_table,


rule memory_table:
    """Each job's measured peak memory (GPU per device, resident) beside the memory plan's estimate."""
    input:
        all_targets(),
    output:
        reported(MEMORY_TABLE, "memory_table", "Resources"),
    log:
        LOGS / "report" / "memory_table.log",
    benchmark:
        BENCH / "report" / "memory_table.tsv"
    conda:
        "../envs/sftrl.yaml"
    params:
        python=PYTHON,
        what=what("table: every job's measured memory beside the plan"),
        script=SCRIPTS / "memory_table.py",
        plan=config_file(
            "memory_plan", {"rows": capacity.records(CAPACITY[0]) if CAPACITY else []}
        ),
        benchmarks=BENCH,
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} --plan {params.plan} --benchmarks {params.benchmarks} --table {output}"
        " >> {log} 2>&1"
