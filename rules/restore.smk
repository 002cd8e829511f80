# Restoration: edit a target model with a source's singular vectors, values or layers (one job per pair,
# each SVD computed once for all its edits); every edited model is evaluated by rule evaluate.


rule restore:
    """Every edit of one (source, target) pair of the grid, one complete model directory each."""
    input:
        source=lambda wc: model_dir(role_model(wc.source)),
        target=lambda wc: model_dir(role_model(wc.target)),
    output:
        droppable(directory(MODELS / "edits" / "{source}__{target}"), protect=False),
    log:
        LOGS / "restore" / "{source}__{target}.log",
    benchmark:
        BENCH / "restore" / "{source}__{target}.tsv"
    conda:
        "../envs/sftrl.yaml"
    threads: 1
    params:
        python=PYTHON,
        what=what("restoration edits: parts of {source} put into {target}"),
        script=SCRIPTS / "restore.py",
        source=lambda wc: model_ref(role_model(wc.source)),
        target=lambda wc: model_ref(role_model(wc.target)),
        edits=restore_edits,
        cache=svd_cache_option(),
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} --source {params.source} --target {params.target} --edit {params.edits:q}"
        " --out-root {output} {params.cache} >> {log} 2>&1"


if RESTORE_PAIRS:

    localrules:
        restoration_table,

    rule restoration_table:
        """Success of every edited model per split with its recovery, and a bar figure per edit family."""
        input:
            roles=TABLES / "roles.json",
            metrics=lambda wc: [
                eval_metrics(m, s)
                for m in [*CURVE_MODELS, *rl_models(), *EDIT_MODELS]
                for s in EVAL_SPLITS
            ],
        output:
            table=reported(
                TABLES / "restoration.csv", "restoration_table", "Restoration"
            ),
            figures=[
                (
                    reported(f, "restoration_family", "Restoration")
                    if f.suffix == ".png"
                    else f
                )
                for f in restoration_figures()
            ],
        log:
            LOGS / "report" / "restoration_table.log",
        benchmark:
            BENCH / "report" / "restoration_table.tsv"
        conda:
            "../envs/sftrl.yaml"
        params:
            python=PYTHON,
            what=what("table and figures: success and recovery of every edited model"),
            script=SCRIPTS / "restoration_table.py",
            eval_root=EVAL,
            pairs=config_file(
                "restoration-pairs", [pair.to_dict() for pair in RESTORE_PAIRS]
            ),
            stem=FIGURES / "restoration",
        shell:
            "echo {params.what:q} > {log}; "
            "{params.python} {params.script} --eval-root {params.eval_root} --roles {input.roles}"
            " --pairs {params.pairs:q} --table {output.table} --figure-stem {params.stem} >> {log} 2>&1"
