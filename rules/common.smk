# Paths and helpers shared by all rules (the one place that knows the layout).
import json
import shlex
from pathlib import Path

from sftrl import job_config
from sftrl.forkserver import Server
from sftrl.cluster import set_package_root
from sftrl.tracking import check as check_tracking, resolve as resolve_tracking
from sftrl.config import (
    ANGLE_SPECTRA,
    HUB_PREFIX,
    DataConfig,
    TaskConfig,
    TinyModelConfig,
    check_experiment,
    check_schedule,
    from_dict,
    ladder_steps,
    restore_plan_spec,
)
from sftrl.data import (
    check_base_layout,
    check_pretrain,
    check_sft_source,
    check_supply,
    corpus_conflicts,
)
from sftrl.restoration.spec import num_decoder_layers
from sftrl.families import family_of
from sftrl.names import (
    EVAL_SPLITS,
    LOSS_SPLITS,
    OOD,
    metrics_path,
    model_step,
    rl_model,
    rl_run,
    samples_path,
    sft_model,
)
from sftrl.representations.pairs import check_pairs, configured_pairs, external_models
from sftrl.evaluate import check_decoding
from sftrl.claims.peak_recovery import seed_note
from sftrl.fidelity import summary as fidelity_summary
from sftrl.rl import check_exported_updates, run_length
from sftrl.sft_format import check_prompt_format
from sftrl.restoration.table import kinds_in
from sftrl.roles import (
    read_roles,
    resolve,
    restore_pairs,
    rl_start,
    sft_end_model,
    static_model,
)


def what(template):
    """A job's one line, what it does and on what (`template` names the rule's wildcards), which opens the
    job's log (`echo {params.what:q} > {log}`)."""
    return lambda wildcards: template.format(**wildcards)


def memory_record(benchmark):
    """Where a job the memory plan estimates records its peak memory: beside its benchmark (sftrl.memory)."""
    return str(benchmark).removesuffix(".tsv") + ".memory.json"


def as_list(value):
    return value if isinstance(value, list) else [value]


EXP = config["exp"]
RESULTS = Path("results") / EXP
DATA = RESULTS / "data"
MODELS = RESULTS / "models"
EVAL = RESULTS / "eval"
TABLES = RESULTS / "tables"
FIGURES = RESULTS / "figures"
LOGS = RESULTS / "logs"
# On a local run jobs start their scripts in a child of one process that imported torch and transformers
# once (sftrl.forkserver, started at onstart); `forkserver: false` starts each job's Python afresh.
FORKSERVER = Server(
    Path(".snakemake") / "sftrl" / "forkserver.sock", LOGS / "forkserver.log"
)
PYTHON = FORKSERVER.python if config["forkserver"] else "python"
BENCH = RESULTS / "benchmarks"
WORK = RESULTS / "work"
SPECTRUM = RESULTS / "spectrum"
SVD_CACHE = WORK / "svd"
SCRIPTS = Path(workflow.basedir) / "scripts"
EMBEDDED_BASE = Path(workflow.basedir) / "resources" / "tiny-base"
set_package_root(workflow.basedir)

_task = from_dict(TaskConfig, config["task"], "task")
_data = from_dict(DataConfig, config["data"], "data")
check_pretrain(_task, _data)
if config["model"]["source"] == "tiny":
    check_base_layout(_task, _data)
check_sft_source(_task, _data)
check_supply(config["seed"], _task, _data, Path(".snakemake") / "sftrl")
for _section, _where in (
    (config["sft"], "sft"),
    (config["model"]["pretrain"], "model.pretrain"),
):
    check_schedule(_section["max_steps"], _section["schedule_steps"], _where)
if config["model"]["source"] == "embedded":
    _conflicts = corpus_conflicts(
        json.loads((EMBEDDED_BASE / "provenance.json").read_text())["config"], config
    )
    if _conflicts:
        raise ValueError(
            "model.source embedded: the embedded base's pretraining corpus may hold this experiment's "
            f"evaluation problems, because {'; '.join(_conflicts)}. Set these back, or pretrain a base "
            "for this experiment (model.source: tiny)"
        )

SFT_STEPS = ladder_steps(
    config["sft"]["max_steps"],
    config["sft"]["save_every"],
    config["sft"]["extra_steps"],
)
SFT_MODELS = [sft_model(step) for step in SFT_STEPS]
RL_ALGORITHMS = as_list(config["rl"]["algorithm"])
RL_PLANNED = config["rl"]["from_steps"] == "plan"  # the RL plan chooses: rl_models()
RL_FROM_STEPS = (  # with "plan", every ladder step is a candidate start
    SFT_STEPS
    if config["rl"]["from_steps"] in ("all", "plan")
    else config["rl"]["from_steps"]
)
RL_ANALYSED = config["rl"][
    "analysed_update"
]  # the update playing "the RL model"; None: the final policy
RL_EXPORTED = sorted(
    {*config["rl"]["eval_updates"], *([RL_ANALYSED] if RL_ANALYSED else [])}
)


def rl_runs(steps):
    """The RL runs from these SFT steps, by their own names (their final policies)."""
    return [
        rl_model(algo, step, seed)
        for algo in RL_ALGORITHMS
        for step in steps
        for seed in config["rl"]["seeds"]
    ]


def analysed(run):
    """The model that plays an RL run in every later stage: its policy after rl.analysed_update, or its last."""
    parsed = rl_run(run)
    return rl_model(parsed.algorithm, parsed.step, parsed.seed, RL_ANALYSED)


def exported(run):
    """A run's policies exported along it (rl.eval_updates and rl.analysed_update)."""
    parsed = rl_run(run)
    return [
        rl_model(parsed.algorithm, parsed.step, parsed.seed, u) for u in RL_EXPORTED
    ]


RL_RUNS = rl_runs(RL_FROM_STEPS)
RL_MODELS = [analysed(run) for run in RL_RUNS]
CURVE_MODELS = ["base", *SFT_MODELS]
EVAL_MODELS = list(
    dict.fromkeys(
        [*CURVE_MODELS, *RL_RUNS, *(m for run in RL_RUNS for m in exported(run))]
    )
)
BUILT_BASE = config["model"]["source"] in ("embedded", "tiny")


def kept(path):
    """An SFT ladder model: what every later stage starts from; protected when the config asks for it."""
    return protected(path) if config["protect_checkpoints"] else path


def droppable(path, protect=True):
    """An RL or edited model: with keep_models: ladder it is temporary, deleted by Snakemake once its
    evaluations, spectra and edits are done (not before the checkpoints that may add readers of it,
    such as the roles); otherwise kept like the ladder (RL models) or plain (edits)."""
    if config["keep_models"] == "ladder":
        return temp(path)
    return kept(path) if protect else path


def local_base_dir():
    """The base's directory where it is on disk when the DAG is built (None for a hub id or a base
    the workflow has not built yet)."""
    source = config["model"]["source"]
    path = {"embedded": EMBEDDED_BASE, "tiny": MODELS / "base"}.get(
        source, Path(source)
    )
    return path if (path / "config.json").is_file() else None


def base_model_config():
    """The base model's config.json where it is on disk when the DAG is built (None for a hub id); for the
    tiny base to be built here, what its config will say."""
    if config["model"]["source"] == "tiny":
        tiny = from_dict(TinyModelConfig, config["model"]["tiny"], "model.tiny")
        return tiny.config_json()
    path = local_base_dir()
    return json.loads((path / "config.json").read_text()) if path else None


BASE_CONFIG = base_model_config()
if BASE_CONFIG:  # an unknown family would be analysed in part: refused before any job
    family_of(BASE_CONFIG, f"model.source {config['model']['source']}")


# Spectral analysis and restoration: roles (sftrl.roles), the restoration grid, the pairs analysed.
SFT_END = sft_end_model(SFT_STEPS, config["restore"]["sft_end"])
RESTORE_PAIRS = restore_pairs(
    config["restore"]["pairs"],
    RL_MODELS,
    SFT_END,
    num_decoder_layers(BASE_CONFIG),
    BASE_CONFIG,
    {key: config["restore"][key] for key in ("covering", "round_trip")},
)
check_experiment(config, SFT_STEPS, RL_MODELS, RESTORE_PAIRS, SFT_END)
check_exported_updates(config, RL_ALGORITHMS)
RESTORE_GROUPS = {pair.group: pair for pair in RESTORE_PAIRS}
RESTORE_KINDS = kinds_in(RESTORE_PAIRS)
EDIT_MODELS = [model for pair in RESTORE_PAIRS for model in pair.models]
ROLE_TOKENS = ["base", "sft_peak", "sft_end", *RL_MODELS]
SPECTRUM_KINDS = config["spectrum"]["pairs"]

REPRESENTATIONS = config["representations"]
REPR = RESULTS / "representations"
REPR_EXTERNAL = external_models(REPRESENTATIONS)
REPR_TOKENS = configured_pairs(REPRESENTATIONS, RL_MODELS, SFT_END, EVAL_MODELS)


check_pairs(REPR_TOKENS, REPR_EXTERNAL, local_base_dir)
check_prompt_format(config["sft"]["prompt_format"], _task.style, local_base_dir())
check_decoding(config, local_base_dir())
if workflow.is_main_process:  # before any job; not again in each cluster job
    print(fidelity_summary(config))
    if note := seed_note(len(config["rl"]["seeds"]), RL_ALGORITHMS):
        print(note)


JOB_CONFIGS = job_config.ConfigFiles(
    RESULTS / "configs"
)  # written when the run starts (onstart)
check_tracking(config["tracking"])
TRACKING_FILE = JOB_CONFIGS.fixed(
    "tracking.json", resolve_tracking(config["tracking"], RESULTS, EXP)
)


def sections(*names):
    """The named config sections, as a job's config holds them."""
    return {name: config[name] for name in names}


def config_file(stage, content):
    """The file a stage's command line names for `content` (`sftrl.job_config`): its name changes with
    its content, so a config edit reruns the jobs it concerns, and only those."""
    return JOB_CONFIGS.stage(stage, content)


def representation_config():
    """What a representation job reads: the task (prompts), model and eval (dtype, device) sections and
    how features are taken."""
    features = {k: REPRESENTATIONS[k] for k in ("positions", "top_k", "batch_size")}
    return config_file(
        "representations",
        {**sections("seed", "task", "model", "eval"), "features": features},
    )


def pretrain_sections():
    """What the base's pretraining depends on, recorded in its provenance: the corpus settings among
    them, so a later experiment can tell whether the base has seen its evaluation problems.
    """
    corpus = {key: config["data"][key] for key in ("id_unseen_share", "pretrain")}
    model = {key: value for key, value in config["model"].items() if key != "refine"}
    return {**sections("seed", "task"), "model": model, "data": corpus}


def refine_config():
    """What a self-play round depends on: the pretraining's settings, `model.refine` but the number of
    rounds (a round does not depend on how many follow it), and the decoding of its play (`eval`).
    """
    refine = {k: v for k, v in config["model"]["refine"].items() if k != "rounds"}
    pretrain = pretrain_sections()
    content = {
        **pretrain,
        "model": {**pretrain["model"], "refine": refine},
        "eval": config["eval"],
    }
    return config_file("refine", content)


def round_model(round_):
    """The tiny base after a self-play round (model.source tiny): round 0 is the pretrained model."""
    return MODELS / ("pretrained" if round_ == 0 else f"refined-{round_}")


def model_ref(name):
    """What a script loads for a model: a directory of the DAG, the user's own base where it lies,
    or a hub id (`model.source: hf:org/name`, the only case that touches the network).
    """
    source = config["model"]["source"]
    if name == "base" and not BUILT_BASE:
        return source.removeprefix(HUB_PREFIX)
    return MODELS / name


def rl_config(algo):
    """The config an RL run sees: its own algorithm's section only, so editing the other reruns nothing."""
    return config_file(
        f"rl-{algo}",
        {**sections("seed", "task", "model"), "rl": {algo: config["rl"][algo]}},
    )


def model_dir(name):
    """The model as an input file of a job; a hub id is not a file, so it is none. An edited model
    lies in the directory its restoration job writes, which is the file a job waits for.
    """
    if name == "base" and config["model"]["source"].startswith(HUB_PREFIX):
        return []
    for pair in RESTORE_PAIRS:
        if name in pair.models:
            return MODELS / pair.directory
    return model_ref(name)


def role_model(token):
    """The model a role names: known from the config, or for sft_peak read from the roles checkpoint."""
    model = static_model(token, SFT_END)
    if model is None:
        model = resolve(read_roles(checkpoints.roles.get().output.json), token)
    return model


def restore_edits(wildcards):
    """The file of the edits of one pair of the grid, the JSON list the restore script reads."""
    group = f"{wildcards.source}__{wildcards.target}"
    if group not in RESTORE_GROUPS:
        raise ValueError(
            f"restore.pairs has no entry that edits {wildcards.target} with {wildcards.source}; "
            f"its pairs are {sorted(RESTORE_GROUPS)}"
        )
    return config_file("restore", json.loads(RESTORE_GROUPS[group].edits_json()))


def spectrum_table(kind, a, b):
    if kind == "sft_vs_rl":
        return SPECTRUM / "updates" / f"{b}.parquet"
    return SPECTRUM / f"{a}__{b}.parquet"


def spectrum_pairs(peak=True):
    """(kind, A, B) of every configured comparison. The sft_peak pairs (peak=True) wait for the roles
    checkpoint; the others are known from the config, so their jobs can run before it.
    """
    pairs = []
    if "base_to_sft" in SPECTRUM_KINDS:
        pairs += [("base_to_sft", "base", m) for m in SFT_MODELS]
    if "base_to_rl" in SPECTRUM_KINDS:
        pairs += [("base_to_rl", "base", m) for m in rl_models()]
    if "sft_vs_rl" in SPECTRUM_KINDS:
        pairs += [("sft_vs_rl", rl_start(m), m) for m in rl_models()]
    if peak and "peak_to_later" in SPECTRUM_KINDS:
        sft_peak = role_model("sft_peak")
        later = [m for m in SFT_MODELS if model_step(m) > model_step(sft_peak)]
        pairs += [("peak_to_later", sft_peak, m) for m in later]
    return pairs


def spectrum_options():
    """Command-line options of a spectrum job: patterns, k fractions, the shared SVD cache."""
    options = ["--k-fractions", *map(str, config["spectrum"]["k_fractions"])]
    if config["spectrum"]["patterns"]:
        options += ["--patterns", *config["spectrum"]["patterns"]]
    return " ".join(shlex.quote(o) for o in options)


def svd_cache_option():
    return f"--cache {SVD_CACHE}" if config["spectrum"]["svd_cache"] else ""


def spectrum_figures():
    """The summary's figures (PNG, a PDF beside each) that the configured pairs can draw."""
    figures = {}
    if ANGLE_SPECTRA & set(SPECTRUM_KINDS):
        figures["drift"] = FIGURES / "spectrum_drift.png"
        figures["angles"] = FIGURES / "spectrum_angles.png"
    if "base_to_sft" in SPECTRUM_KINDS:
        figures["heatmap"] = FIGURES / "spectrum_heatmap.png"
    return figures


def representation_pairs():
    """(reference, compared) model names of every representation comparison; sft_peak and the RL runs
    the plan chooses are known once their checkpoints ran."""
    pairs = configured_pairs(REPRESENTATIONS, rl_models(), SFT_END, EVAL_MODELS)
    known = {*REPR_EXTERNAL, *EVAL_MODELS}
    named = [tuple(n if n in known else role_model(n) for n in pair) for pair in pairs]
    return list(dict.fromkeys(pair for pair in named if pair[0] != pair[1]))


def representation_model(name, directory=True):
    """A compared model as a job input (directory=True) or as what the script loads."""
    if name in REPR_EXTERNAL:
        return REPR_EXTERNAL[name]
    return model_dir(name) if directory else model_ref(name)


def restoration_figures():
    return [
        FIGURES / f"restoration_{kind}.{ext}"
        for kind in RESTORE_KINDS
        for ext in ("png", "pdf")
    ]


def rl_history(model):
    """An RL run's log, for any of its models (final or exported along the run)."""
    return RESULTS / "rl" / rl_run(model).run / "history.jsonl"


def eval_metrics(model, split):
    return metrics_path(EVAL, model, split)


def eval_samples(model, split):
    return samples_path(EVAL, model, split)


def dataset_files():
    return [
        DATA / "sft.jsonl",
        DATA / "rl_prompts.jsonl",
        *[DATA / f"eval_{split}.jsonl" for split in EVAL_SPLITS],
        *[DATA / f"loss_{split}.jsonl" for split in LOSS_SPLITS],
    ]


def all_targets():
    return [
        *dataset_files(),
        DATA / "manifest.json",
        TABLES / "sft_curve.csv",
        FIGURES / "sft_curve.png",
        TABLES / "rl_from_sft.csv",
        FIGURES / "rl_from_sft.png",
        TABLES / "rl_curve.csv",
        FIGURES / "rl_curve.png",
        TABLES / "roles.json",
        TABLES / "format_errors.csv",
        FIGURES / "format_errors.png",
        *(
            [TABLES / "ppo_advantages.csv", FIGURES / "ppo_advantages.png"]
            if "ppo" in RL_ALGORITHMS
            else []
        ),
        *(
            [TABLES / "spectrum_summary.csv", *spectrum_figures().values()]
            if SPECTRUM_KINDS
            else []
        ),
        *(
            [TABLES / "restoration.csv", *restoration_figures()]
            if RESTORE_PAIRS
            else []
        ),
        *plan_and_report_targets(),
        *(
            [TABLES / "representations.csv", FIGURES / "representations.png"]
            if REPR_TOKENS
            else []
        ),
    ]


# Plans (rules/plan.smk) and the report (rules/report.smk).
PLAN = RESULTS / "plan"
REPORT = RESULTS / "report"
PLAN_RL = PLAN / "rl_starts.json"
MEMORY_TABLE = TABLES / "memory_plan_vs_measured.csv"
PLAN_RESTORE = PLAN / "restoration.json"
PLAN_EDIT_MODEL = (
    "edits/plan/cheapest"  # the planned restoration, evaluated like the rest
)
CAPTIONS = Path("..") / "report"  # captions of report() outputs, relative to rules/


RESTORE_PLAN_SPEC = restore_plan_spec(config, RESTORE_PAIRS)
RESTORE_PLAN = RESTORE_PLAN_SPEC is not None
PLAN_MODELS = [PLAN_EDIT_MODEL] if RESTORE_PLAN else []


def reported(path, caption, category):
    """An output registered for `snakemake --report`, captioned by report/CAPTION.rst."""
    return report(path, caption=str(CAPTIONS / f"{caption}.rst"), category=category)


def planned_runs():
    """The RL runs: the configured ones, or with rl.from_steps: plan the ones the RL plan chose."""
    if not RL_PLANNED:
        return RL_RUNS
    plan = json.loads(Path(checkpoints.plan_rl.get().output.json).read_text())
    return rl_runs(plan["steps"])


def rl_models():
    """The models that play the RL runs (`analysed`) in the later stages."""
    return [analysed(run) for run in planned_runs()]


def curve_runs_models():
    """Every policy of the RL runs on the RL curve: each run's final policy and its exports."""
    return [m for run in planned_runs() for m in [run, *exported(run)]]


def plan_rl_runs():
    """RL runs whose benchmark files give the cost of a run: the configured runs, when no cost is set."""
    if RL_PLANNED or config["plan"]["rl_run_cost"] is not None:
        return []
    return [rl_history(run) for run in RL_RUNS]


def plan_rl_options():
    """Command-line options of the RL plan (scripts/plan.py rl-starts)."""
    plan = config["plan"]
    options = ["--algorithms", *RL_ALGORITHMS, "--seeds", len(config["rl"]["seeds"])]
    if plan["rl_budget"] is not None:
        options += ["--budget", plan["rl_budget"]]
    else:
        options += ["--configured-starts", len(RL_FROM_STEPS)]
    if plan["rl_run_cost"] is not None:
        options += ["--run-cost", plan["rl_run_cost"]]
    gpus = max(1, config.get("resources", {}).get("rl", {}).get("gpus", 1))
    options += ["--benchmark-dir", BENCH / "rl", "--gpus-per-run", gpus]
    options += ["--min-spacing", plan["min_spacing"], "--required", model_step(SFT_END)]
    if plan["coverage_radius"] is not None:
        options += ["--coverage-radius", plan["coverage_radius"]]
    options += ["--on-infeasible", "error" if RL_PLANNED else "record"]
    return " ".join(shlex.quote(str(o)) for o in options)


def restore_plan_spectrum():
    """The spectral table of sft_peak against sft_end the restoration plan reads; none when sft_peak
    is not an earlier checkpoint than sft_end."""
    peak = role_model("sft_peak")
    if model_step(peak) >= model_step(SFT_END):
        return []
    return spectrum_table("peak_to_later", peak, SFT_END)


def planned_edit_metrics():
    """The OOD metrics of the planned restoration edit, where the plan found one."""
    if not RESTORE_PLAN:
        return []
    plan = json.loads(Path(checkpoints.plan_restoration.get().output.json).read_text())
    return [eval_metrics(PLAN_EDIT_MODEL, OOD)] if plan["status"] == "Optimal" else []


def claim_spectra():
    """(model, table) of the spectral claims: sft_end and the RL runs from it, each against the base."""
    spectra = []
    if "base_to_sft" in SPECTRUM_KINDS:
        spectra.append((SFT_END, spectrum_table("base_to_sft", "base", SFT_END)))
    if "base_to_rl" in SPECTRUM_KINDS:
        spectra += [
            (m, spectrum_table("base_to_rl", "base", m))
            for m in rl_models()
            if rl_start(m) == SFT_END
        ]
    return spectra


def claim_samples():
    """(model, OOD samples) of every model the claims compare episode by episode: the SFT curve, the RL
    runs and the sft_peak -> sft_end edits."""
    edits = RESTORE_GROUPS.get("sft_peak__sft_end")
    models = [*CURVE_MODELS, *rl_models(), *(edits.models if edits else [])]
    return [(m, eval_samples(m, OOD)) for m in models]


def plan_and_report_targets():
    figures = ["success_vs_step", "loss_vs_ood", "recovery_window"]
    return [
        PLAN_RL,
        *([PLAN_RESTORE] if RESTORE_PLAN else []),
        REPORT / "claims.md",
        REPORT / "claims.json",
        *[FIGURES / f"{name}.{ext}" for name in figures for ext in ("png", "pdf")],
        TABLES / "loss_curve.csv",
        TABLES / "recovery_window.csv",
        *(
            [FIGURES / "restoration_recovery.png", TABLES / "restoration_recovery.csv"]
            if RESTORE_PAIRS
            else []
        ),
    ]
