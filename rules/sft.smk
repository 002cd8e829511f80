rule sft:
    """Full-parameter SFT of the base on the ID set, writing a model directory at every ladder step."""
    input:
        base=model_dir("base"),
        train=DATA / "sft.jsonl",
        loss=[DATA / f"loss_{split}.jsonl" for split in LOSS_SPLITS],
    output:
        models=[kept(directory(MODELS / name)) for name in SFT_MODELS],
        history=RESULTS / "sft" / "history.jsonl",
    log:
        LOGS / "sft" / "sft.log",
    benchmark:
        BENCH / "sft" / "sft.tsv"
    conda:
        "../envs/sftrl.yaml"
    threads: job_resources("sft").threads
    resources:
        gpu=job_resources("sft").gpus,
        cpus_per_gpu=job_resources("sft").cpus_per_gpu,
        tasks=1,
        mem_mb=job_resources("sft").mem_mb_for,
        runtime=job_resources("sft").runtime_for,
    params:
        what=what("SFT of the base on the ID set, a model at every ladder step"),
        launch=launch("sft"),
        script=SCRIPTS / "sft.py",
        base=model_ref("base"),
        cfg=config_file("sft", sections("seed", "task", "model", "sft")),
        tracking=TRACKING_FILE,
        memory=memory_record(BENCH / "sft" / "sft.tsv"),
        loss_sets=" ".join(f"{s}={DATA / f'loss_{s}.jsonl'}" for s in LOSS_SPLITS),
        work=WORK / "sft",
        models_dir=MODELS,
    shell:
        "echo {params.what:q} > {log}; "
        "{params.launch} {params.script} --config {params.cfg:q} --base {params.base} --train {input.train}"
        " --eval-set {params.loss_sets} --models-dir {params.models_dir} --work-dir {params.work}"
        " --log {output.history} --tracking {params.tracking} --memory {params.memory} >> {log} 2>&1"
