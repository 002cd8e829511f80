# Representation similarity (sftrl.representations): each pair of models reads the eval prompts in one
# job; the summary measures every model against sft_peak and what RL changed.


if REPR_TOKENS:

    rule representations_pair:
        """Two models read the eval prompts: pooled final-layer states and next-token metrics per prompt."""
        input:
            a=lambda wc: representation_model(wc.ref),
            b=lambda wc: representation_model(wc.other),
            episodes=[DATA / f"eval_{s}.jsonl" for s in REPRESENTATIONS["splits"]],
        output:
            REPR / "{ref}__{other}.npz",
        log:
            LOGS / "representations" / "{ref}__{other}.log",
        benchmark:
            BENCH / "representations" / "{ref}__{other}.tsv"
        wildcard_constraints:
            ref="|".join(re.escape(m) for m in [*EVAL_MODELS, *REPR_EXTERNAL]),
            other="|".join(re.escape(m) for m in [*EVAL_MODELS, *REPR_EXTERNAL]),
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
            what=what("representations of {other} against {ref} on the eval prompts"),
            script=SCRIPTS / "representations.py",
            a=lambda wc: representation_model(wc.ref, directory=False),
            b=lambda wc: representation_model(wc.other, directory=False),
            cfg=representation_config(),
            memory=memory_record(BENCH / "representations" / "{ref}__{other}.tsv"),
            splits=" ".join(
                f"{s}={DATA / f'eval_{s}.jsonl'}" for s in REPRESENTATIONS["splits"]
            ),
        shell:
            "echo {params.what:q} > {log}; "
            "{params.python} {params.script} pair --config {params.cfg:q} --a {params.a} --b {params.b}"
            " --name-a {wildcards.ref} --name-b {wildcards.other} --split {params.splits}"
            " --out {output} --memory {params.memory} >> {log} 2>&1"

    rule representations_summary:
        """Every model against sft_peak per metric and split, the RL runs' recovery delta, a figure."""
        input:
            roles=TABLES / "roles.json",
            pairs=lambda wc: [REPR / f"{a}__{b}.npz" for a, b in representation_pairs()],
        output:
            table=reported(
                TABLES / "representations.csv",
                "representations_table",
                "Representations",
            ),
            parquet=TABLES / "representations.parquet",
            figure=reported(
                FIGURES / "representations.png", "representations", "Representations"
            ),
            pdf=FIGURES / "representations.pdf",
        log:
            LOGS / "report" / "representations.log",
        benchmark:
            BENCH / "report" / "representations.tsv"
        conda:
            "../envs/sftrl.yaml"
        threads: 2  # the bootstrap's resamples, shared by as many processes (fewer where --cores is less)
        params:
            python=PYTHON,
            what=what(
                "table and figure: every model's representations against sft_peak"
            ),
            script=SCRIPTS / "representations.py",
            draws=REPRESENTATIONS["bootstrap_draws"],
            seed=config["seed"],
        shell:
            "echo {params.what:q} > {log}; "
            "{params.python} {params.script} summary --pairs {input.pairs} --roles {input.roles}"
            " --draws {params.draws} --seed {params.seed} --workers {threads} --csv {output.table}"
            " --figure {output.figure} >> {log} 2>&1"
