# SVD spectral analysis: one tidy table per pair of models, streamed tensor by tensor, and their summary.


rule spectrum_pair:
    """Model B against model A, every analysed weight matrix (singular values, angles, energy split)."""
    input:
        a=lambda wc: model_dir(wc.a),
        b=lambda wc: model_dir(wc.b),
    output:
        SPECTRUM / "{a}__{b}.parquet",
    log:
        LOGS / "spectrum" / "{a}__{b}.log",
    benchmark:
        BENCH / "spectrum" / "{a}__{b}.tsv"
    conda:
        "../envs/sftrl.yaml"
    threads: 1
    params:
        python=PYTHON,
        what=what("spectra of {b} against {a}"),
        script=SCRIPTS / "spectrum.py",
        a=lambda wc: model_ref(wc.a),
        b=lambda wc: model_ref(wc.b),
        options=spectrum_options(),
        cache=svd_cache_option(),
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} pair --a {params.a} --b {params.b} --name-a {wildcards.a} --name-b {wildcards.b}"
        " --out {output} {params.options} {params.cache} >> {log} 2>&1"


rule spectrum_updates:
    """The SFT update (base to the start checkpoint) against the RL update (start checkpoint to RL model)."""
    input:
        base=model_dir("base"),
        start=lambda wc: MODELS / rl_start(wc.rl),
        rl=MODELS / "{rl}",
    output:
        SPECTRUM / "updates" / "{rl}.parquet",
    log:
        LOGS / "spectrum" / "updates" / "{rl}.log",
    benchmark:
        BENCH / "spectrum" / "updates" / "{rl}.tsv"
    conda:
        "../envs/sftrl.yaml"
    threads: 1
    params:
        python=PYTHON,
        what=what("spectra: the SFT update against the RL update of {rl}"),
        script=SCRIPTS / "spectrum.py",
        base=model_ref("base"),
        options=spectrum_options(),
    shell:
        "echo {params.what:q} > {log}; "
        "{params.python} {params.script} delta --base {params.base} --mid {input.start} --end {input.rl}"
        " --out {output} {params.options} >> {log} 2>&1"


if SPECTRUM_KINDS:

    rule spectrum_summary:
        """One row per pair, singular-value drift and principal angles against the checkpoints, a heat map."""
        input:
            roles=TABLES / "roles.json",
            tables=lambda wc: [
                spectrum_table(*pair) for pair in spectrum_pairs(peak=False)
            ],
            peak_tables=lambda wc: [
                spectrum_table(*pair)
                for pair in spectrum_pairs()
                if pair[0] == "peak_to_later"
            ],
        output:
            **{
                name: reported(png, f"spectrum_{name}", "Spectral analysis")
                for name, png in spectrum_figures().items()
            },
            table=reported(
                TABLES / "spectrum_summary.csv",
                "spectrum_summary",
                "Spectral analysis",
            ),
            pdfs=[png.with_suffix(".pdf") for png in spectrum_figures().values()],
        log:
            LOGS / "report" / "spectrum_summary.log",
        benchmark:
            BENCH / "report" / "spectrum_summary.tsv"
        conda:
            "../envs/sftrl.yaml"
        params:
            python=PYTHON,
            what=what("table and figures: spectral drift and angles of every pair"),
            script=SCRIPTS / "spectrum_summary.py",
            pairs=lambda wc: " ".join(
                f"{kind}:{a}:{b}={spectrum_table(kind, a, b)}"
                for kind, a, b in spectrum_pairs()
            ),
            figures=" ".join(
                f"--{name} {png}" for name, png in spectrum_figures().items()
            ),
            heatmap_table=(
                f"--heatmap-table {spectrum_table('base_to_sft', 'base', SFT_END)}"
                if "base_to_sft" in SPECTRUM_KINDS
                else ""
            ),
        shell:
            "echo {params.what:q} > {log}; "
            "{params.python} {params.script} --pair {params.pairs} --csv {output.table} {params.figures}"
            " {params.heatmap_table} >> {log} 2>&1"
