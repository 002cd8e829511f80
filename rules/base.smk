# The base model: the embedded tiny model, the tiny model pretrained here, or the user's own directory.

if config["model"]["source"] == "embedded":

    localrules:
        embedded_base,

    rule embedded_base:
        """Copy the tiny base model that ships in resources/ (pretrained by rule pretrain_base)."""
        input:
            EMBEDDED_BASE,
        output:
            directory(MODELS / "base"),
        log:
            LOGS / "base" / "embedded_base.log",
        benchmark:
            BENCH / "base" / "embedded_base.tsv"
        conda:
            "../envs/sftrl.yaml"
        shell:
            "python -m sftrl.modeling check {input} > {log} 2>&1 && cp -r {input} {output}"

elif config["model"]["source"] == "tiny":

    rule pretrain_base:
        """Pretrain the tiny base on puzzles with random face values and targets stated in the prompt."""
        input:
            corpus=DATA / "pretrain.jsonl",
            texts=[DATA / f"eval_{split}.jsonl" for split in EVAL_SPLITS],
        output:
            directory(MODELS / "base"),
        log:
            LOGS / "base" / "pretrain_base.log",
        benchmark:
            BENCH / "base" / "pretrain_base.tsv"
        conda:
            "../envs/sftrl.yaml"
        threads: job_resources("pretrain").threads
        resources:
            gpu=job_resources("pretrain").gpus,
            cpus_per_gpu=job_resources("pretrain").cpus_per_gpu,
            tasks=1,
            mem_mb=job_resources("pretrain").mem_mb_for,
            runtime=job_resources("pretrain").runtime_for,
        params:
            launch=launch("pretrain"),
            script=SCRIPTS / "base.py",
            cfg=pretrain_config_json(),
            work=WORK / "pretrain",
            history=LOGS / "base" / "pretrain_history.jsonl",
        shell:
            "{params.launch} {params.script} --config {params.cfg:q} --corpus {input.corpus}"
            " --extra-texts {input.texts} --out {output} --work-dir {params.work}"
            " --log {params.history} > {log} 2>&1"
