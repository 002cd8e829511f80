rule datasets:
    """Every training and evaluation set of the experiment, deterministic in (config, seed)."""
    input:
        sft_file=config["data"]["sft"]["file"] or [],
    output:
        files=dataset_files(),
        manifest=DATA / "manifest.json",
    log:
        LOGS / "data" / "datasets.log",
    benchmark:
        BENCH / "data" / "datasets.tsv"
    conda:
        "../envs/sftrl.yaml"
    params:
        python=PYTHON,
        what=what("build every training and evaluation set"),
        script=SCRIPTS / "data.py",
        cfg=config_file("data", sections("seed", "task", "data")),
        out=DATA,
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} sets --config {params.cfg:q} --out {params.out} >> {log} 2>&1"


rule pretrain_corpus:
    """Arithmetic puzzles with random face-card values and targets for the tiny base model."""
    output:
        DATA / "pretrain.jsonl",
    log:
        LOGS / "data" / "pretrain_corpus.log",
    benchmark:
        BENCH / "data" / "pretrain_corpus.tsv"
    conda:
        "../envs/sftrl.yaml"
    params:
        python=PYTHON,
        what=what("build the tiny base's pretraining corpus"),
        script=SCRIPTS / "data.py",
        cfg=config_file("data", sections("seed", "task", "data")),
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} pretrain --config {params.cfg:q} --out {output} >> {log} 2>&1"
