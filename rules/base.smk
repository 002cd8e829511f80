# The base model: the embedded tiny model, the tiny model pretrained here, or the user's own directory.

if config["model"]["source"] == "embedded":

    localrules:
        embedded_base,

    rule embedded_base:
        """Copy the tiny base model that ships in resources/ (built by rules pretrain_base, selfplay, refine_base)."""
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
        params:
            python=PYTHON,
            what=what("copy the embedded tiny base model"),
        shell:
            "echo {params.what:q} > {log}; "
            "{params.python} -m sftrl.modeling check {input} >> {log} 2>&1 && cp -r {input} {output}"

elif config["model"]["source"] == "tiny":

    localrules:
        built_base,

    rule pretrain_base:
        """Pretrain the tiny base on puzzles with random face values and targets stated in the prompt."""
        input:
            corpus=DATA / "pretrain.jsonl",
            texts=[DATA / f"eval_{split}.jsonl" for split in EVAL_SPLITS],
        output:
            directory(round_model(0)),
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
            what=what("pretrain the tiny base on the arithmetic corpus"),
            launch=launch("pretrain"),
            script=SCRIPTS / "base.py",
            cfg=config_file("pretrain", pretrain_sections()),
            tracking=TRACKING_FILE,
            memory=memory_record(BENCH / "base" / "pretrain_base.tsv"),
            work=WORK / "pretrain",
            history=LOGS / "base" / "pretrain_history.jsonl",
        shell:
            "echo {params.what:q} > {log}; "
            "{params.launch} {params.script} --config {params.cfg:q} --corpus {input.corpus}"
            " --extra-texts {input.texts} --out {output} --work-dir {params.work}"
            " --log {params.history} --tracking {params.tracking} --memory {params.memory} >> {log} 2>&1"

    rule selfplay:
        """Self-play round r: the model of round r-1 plays pretraining-style hands to the end, greedily."""
        input:
            model=lambda wc: round_model(int(wc.round) - 1),
        output:
            DATA / "selfplay-{round}.jsonl",
        log:
            LOGS / "base" / "selfplay-{round}.log",
        benchmark:
            BENCH / "base" / "selfplay-{round}.tsv"
        wildcard_constraints:
            round=r"[1-9]\d*",
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
            what=what(
                "self-play round {round}: play pretraining-style hands to the end"
            ),
            script=SCRIPTS / "selfplay.py",
            cfg=refine_config(),
        shell:
            "echo {params.what:q} > {log}; "
            "{params.python} {params.script} play --config {params.cfg:q} --model {input.model}"
            " --round {wildcards.round} --played {output} >> {log} 2>&1"

    rule refine_base:
        """Self-play round r: train the model of round r-1 on its own failed attempts, each with the
        verifier's feedback, then a right answer, mixed with replay of the pretraining corpus.
        """
        input:
            model=lambda wc: round_model(int(wc.round) - 1),
            played=DATA / "selfplay-{round}.jsonl",
            corpus=DATA / "pretrain.jsonl",
        output:
            directory(MODELS / "refined-{round}"),
        log:
            LOGS / "base" / "refine_base-{round}.log",
        benchmark:
            BENCH / "base" / "refine_base-{round}.tsv"
        wildcard_constraints:
            round=r"[1-9]\d*",
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
            what=what(
                "self-play round {round}: train on the model's own failed attempts"
            ),
            launch=launch("pretrain"),
            script=SCRIPTS / "selfplay.py",
            cfg=refine_config(),
            work=lambda wc: WORK / f"refine-{wc.round}",
            history=lambda wc: LOGS / "base" / f"refine_history-{wc.round}.jsonl",
        shell:
            "echo {params.what:q} > {log}; "
            "{params.launch} {params.script} refine --config {params.cfg:q} --model {input.model}"
            " --round {wildcards.round} --played {input.played} --corpus {input.corpus} --out {output}"
            " --work-dir {params.work} --log {params.history} >> {log} 2>&1"

    rule built_base:
        """The base: the model of the last self-play round (model.refine.rounds; 0: the pretrained one)."""
        input:
            round_model(config["model"]["refine"]["rounds"]),
        output:
            directory(MODELS / "base"),
        log:
            LOGS / "base" / "built_base.log",
        benchmark:
            BENCH / "base" / "built_base.tsv"
        conda:
            "../envs/sftrl.yaml"
        params:
            python=PYTHON,
            what=what("the base: the model of the last self-play round"),
        shell:
            "echo {params.what:q} > {log}; "
            "{params.python} -m sftrl.modeling check {input} >> {log} 2>&1 && cp -r {input} {output}"
