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
        script=SCRIPTS / "data.py",
        cfg=config_json("seed", "task", "data"),
        out=DATA,
    shell:
        "python {params.script} sets --config {params.cfg:q} --out {params.out} > {log} 2>&1"


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
        script=SCRIPTS / "data.py",
        cfg=config_json("seed", "task", "data"),
    shell:
        "python {params.script} pretrain --config {params.cfg:q} --out {output} > {log} 2>&1"
