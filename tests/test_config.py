"""The config schema stops a bad config before any job starts, naming the key; the config dataclasses
default to config.yaml."""

import copy
import dataclasses
import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

from sftrl.config import DataConfig, TaskConfig, from_dict

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def dry_run(root: Path, workdir: Path, config: dict) -> subprocess.CompletedProcess:
    cfg = workdir / "exp.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [*SNAKEMAKE, "-n", "-s", str(root / "Snakefile"), "-d", str(workdir), "--configfile", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused_output(root: Path, workdir: Path, config: dict, edit) -> str:
    """The dry run's output for the edited config, after checking it stopped before any job."""
    config = copy.deepcopy(config)
    edit(config)
    result = dry_run(root, workdir, config)
    assert result.returncode != 0
    assert not (workdir / "results").exists()
    return result.stdout + result.stderr


def test_default_config_dry_runs(root, tmp_path, default_config):
    result = dry_run(root, tmp_path, default_config)
    assert result.returncode == 0, result.stderr
    assert "datasets" in result.stdout


@pytest.mark.parametrize("rounds", [0, 2])
def test_a_pretrained_base_is_refined_by_its_self_play_rounds(root, tmp_path, default_config, rounds):
    """source tiny: pretraining, then each round plays the model before it and trains on its failures."""
    config = copy.deepcopy(default_config)
    config["model"]["source"] = "tiny"
    config["model"]["refine"]["rounds"] = rounds
    result = dry_run(root, tmp_path, config)
    assert result.returncode == 0, result.stderr
    jobs = dict(
        line.split() for line in result.stdout.split("Job stats:")[1].split("total")[0].splitlines()[3:] if line.strip()
    )
    assert jobs["pretrain_base"] == "1" and jobs["built_base"] == "1"
    assert jobs.get("selfplay", "0") == jobs.get("refine_base", "0") == str(rounds)
    last = "pretrained" if rounds == 0 else f"refined-{rounds}"
    assert f"input: results/tiny/models/{last}\n    output: results/tiny/models/base" in result.stdout


def test_another_self_play_round_leaves_the_earlier_rounds_as_they_are(root, tmp_path, default_config):
    """Round 1's commands are the same bytes whether one or two rounds follow pretraining, so adding a
    round reruns nothing that was made (Snakemake reruns a job whose parameters changed)."""

    def round_one_commands(rounds):
        config = copy.deepcopy(default_config)
        config["model"]["source"] = "tiny"
        config["model"]["refine"]["rounds"] = rounds
        cfg = tmp_path / f"rounds{rounds}.yaml"
        cfg.write_text(yaml.safe_dump(config))
        result = subprocess.run(
            [*SNAKEMAKE, "-n", "-p", "-s", str(root / "Snakefile"), "-d", str(tmp_path), "--configfile", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return sorted(line for line in result.stdout.splitlines() if "selfplay.py" in line and "--round 1 " in line)

    one, two = round_one_commands(1), round_one_commands(2)
    assert len(one) == 2 and one == two  # play and refine


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["data"]["sft"].update(handz=3), "handz"),
        (lambda c: c.update(sedd=1), "sedd"),
        (lambda c: c["data"]["sft"].update(hands="many"), "'hands'"),
        (lambda c: c["task"].update(style="verbose"), "'style'"),
        (lambda c: c["data"].update(id_unseen_share=1.5), "'id_unseen_share'"),
        (lambda c: c["spectrum"].update(k_fractions=[0.2, 1.5]), "'k_fractions'"),
        (lambda c: c["restore"]["pairs"][0].update(source="sft_best"), "'sft_best'"),
        (lambda c: c["restore"]["pairs"][0]["edits"][0].update(top=1.5), "'top'"),
        (lambda c: c["restore"]["pairs"][0]["edits"][0].update(kind="rotate"), "'rotate'"),
        (lambda c: c.update(protect_checkpoints="yes"), "'protect_checkpoints'"),
        (lambda c: c.update(keep_models="checkpoints"), "'keep_models'"),
        (lambda c: c["model"]["refine"]["train"].update(learning_rat=1e-3), "learning_rat"),
        (lambda c: c["model"]["refine"].update(replay_share=1.0), "'replay_share'"),
    ],
    ids=[
        "typo-nested",
        "typo-top",
        "wrong-type",
        "bad-enum",
        "out-of-range",
        "k-fraction",
        "unknown-role",
        "edit-fraction",
        "edit-kind",
        "protect-flag",
        "keep-models",
        "refine-train-typo",
        "replay-share",
    ],
)
def test_bad_config_is_rejected_naming_the_key(root, tmp_path, default_config, edit, expected):
    output = refused_output(root, tmp_path, default_config, edit)
    assert "Error validating config file" in output
    assert expected in output


def test_a_renamed_key_is_refused_naming_its_new_name(root, tmp_path, default_config):
    output = refused_output(root, tmp_path, default_config, lambda c: c["rl"]["ppo"].update(lr_scheduler="cosine"))
    assert "rl.ppo.lr_scheduler is now rl.ppo.lr_scheduler_type" in output


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["restore"].update(sft_end=25),
            "role 'rl_from_end' names no model: no RL run starts from sft_end (sft-25)",
        ),
        (
            lambda c: c["restore"]["pairs"][1].update(target="rl-ppo-from25-s0"),
            "role 'rl-ppo-from25-s0' is not among the RL runs",
        ),
        (lambda c: c["restore"].update(sft_end=150), "restore.sft_end = 150 is not on the SFT ladder"),
        (lambda c: c["model"].update(source="hf:org/name"), "leave the base out of spectrum.pairs"),
    ],
    ids=["no-rl-from-end", "missing-rl-model", "sft-end-off-ladder", "hub-base"],
)
def test_restore_grid_naming_no_model_is_rejected(root, tmp_path, default_config, edit, expected):
    assert expected in refused_output(root, tmp_path, default_config, edit)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c.update(seed=1), "seed is 1, the base was pretrained for 0"),
        (lambda c: c["data"].update(id_unseen_share=0.3), "data.id_unseen_share is 0.3"),
        (lambda c: c["task"].update(target=23), "task.target is 23, the base was pretrained for 24"),
        (lambda c: c["data"]["pretrain"].update(failed_attempts=[1, 5]), "data.pretrain.failed_attempts [1, 5]"),
    ],
    ids=["seed", "held-out-share", "target", "more-failures-than-attempts"],
)
def test_embedded_base_that_saw_the_evaluation_problems_is_refused(root, tmp_path, default_config, edit, expected):
    """The embedded base left this experiment's evaluation problems out of its corpus; a config under
    which it would not have is refused before any job, naming the setting."""
    assert expected in refused_output(root, tmp_path, default_config, edit)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["data"]["sft"].update(hands=1000),
            "data.sft.hands = 1000: at most 989 can be had (distinct ID-solvable training multisets",
        ),
        (lambda c: c["data"]["rl"].update(prompts=20000), "data.rl.prompts = 20000: at most 16565"),
        (lambda c: c["data"]["eval"].update(id_unseen=5000), "data.eval.id_unseen = 5000: at most 4111"),
        (lambda c: c["data"]["eval"].update(ood=20000), "data.eval.ood = 20000: at most 14057"),
        (
            lambda c: c["sft"].update(schedule_steps=500),
            "sft.schedule_steps (500) is below sft.max_steps (600), the last trained step",
        ),
        (
            lambda c: c["restore"]["pairs"][0]["edits"][0].update(scope=["lm_head"]),
            "restore.pairs[0].edits[0].scope: lm_head names no parameter of this model: its LM head is tied",
        ),
    ],
    ids=["sft-hands", "rl-prompts", "id-unseen-episodes", "ood-episodes", "schedule-horizon", "tied-lm-head"],
)
def test_what_the_game_or_the_model_cannot_supply_is_refused(root, tmp_path, default_config, edit, expected):
    """Counts beyond the game's distinct hands, a schedule shorter than training, a restoration scope
    naming no parameter: stopped at the dry run, naming the key and the limit."""
    assert expected in refused_output(root, tmp_path, default_config, edit)


def test_sections_parse_into_typed_configs(default_config):
    task = from_dict(TaskConfig, default_config["task"], "task")
    data = from_dict(DataConfig, default_config["data"], "data")
    assert task.rewards.correct == default_config["task"]["rewards"]["correct"]
    assert data.sft.hands == default_config["data"]["sft"]["hands"]


def test_typed_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"data.sft: unknown key"):
        from_dict(DataConfig, {"sft": {"hands": 3, "handz": 4}}, "data")


def default_mismatches(section: dict, defaults: Any, where: str) -> list[str]:
    """Keys of a config section whose value differs from the dataclass default of the same name (nested
    sections and dataclasses compared key by key); tuples compare as the lists YAML gives."""
    is_instance = dataclasses.is_dataclass(defaults) and not isinstance(defaults, type)
    values = json.loads(json.dumps(dataclasses.asdict(defaults))) if is_instance else defaults
    mismatches = []
    for key in sorted(set(section) & set(values)):
        if isinstance(section[key], dict) and isinstance(values[key], dict):
            mismatches += default_mismatches(section[key], values[key], f"{where}.{key}")
        elif section[key] != values[key]:
            mismatches.append(f"{where}.{key}: config.yaml {section[key]!r}, dataclass default {values[key]!r}")
    return mismatches


def test_dataclass_defaults_are_the_default_config(default_config):
    """config.yaml is the one source of the defaults: each config dataclass defaults every field its section
    has to that section's value, so code that leaves a key out runs as the default workflow does."""
    from sftrl.evaluate import EvalConfig
    from sftrl.modeling import TinyModelConfig
    from sftrl.representations.features import FeatureConfig
    from sftrl.rl.grpo import GrpoConfig
    from sftrl.rl.ppo import PpoConfig
    from sftrl.sft import PRETRAIN_DEFAULTS, SftConfig
    from sftrl.tracking import TrackingConfig

    mirrors = [  # (section, the dataclass defaults that mirror it)
        ("task", TaskConfig()),
        ("data", DataConfig()),
        ("model", EvalConfig()),  # an evaluation's dtype and trust_remote_code are the model's
        ("model.tiny", TinyModelConfig()),
        ("model.pretrain", SftConfig(**PRETRAIN_DEFAULTS)),
        ("sft", SftConfig()),
        ("eval", EvalConfig()),
        ("rl.ppo", PpoConfig()),
        ("rl.grpo", GrpoConfig()),
        ("representations", FeatureConfig()),
        ("tracking", TrackingConfig()),
    ]
    mismatches = []
    for where, defaults in mirrors:
        section = functools.reduce(lambda part, key: part[key], where.split("."), default_config)
        assert set(section) & {f.name for f in dataclasses.fields(defaults)}, f"{where} shares no key"
        mismatches += default_mismatches(section, defaults, where)
    assert mismatches == []
    changed = {**default_config["rl"]["ppo"], "learning_rate": 1e-5}
    assert default_mismatches(changed, PpoConfig(), "rl.ppo") == [
        "rl.ppo.learning_rate: config.yaml 1e-05, dataclass default 0.0002"
    ]


OPTIMISER_EDGES: dict[str, tuple[list[Any], list[Any]]] = {  # a field's values at its bounds: accepted, refused
    "learning_rate": ([1e-9], [0.0, -1.0]),
    "warmup_ratio": ([0.0, 0.99], [1.0, -0.1]),
    "weight_decay": ([0.0, 0.1], [-0.1]),
    "adam_beta1": ([0.0, 0.999], [1.0, -0.1]),
    "adam_beta2": ([0.0, 0.999], [1.0, 1.5]),
    "adam_epsilon": ([1e-12], [0.0]),
    "max_grad_norm": ([None, 0.01], [0.0, -1.0]),
}


def test_the_optimiser_bounds_are_the_same_in_the_schema_and_every_stage():
    """Every training stage shares OptimiserConfig and its checks; the schema's sections must bound those
    fields as the checks do, value for value at each edge."""
    import jsonschema

    from sftrl.rl.grpo import GrpoConfig
    from sftrl.rl.ppo import PpoConfig
    from sftrl.sft import SftConfig
    from sftrl.trainer_args import OptimiserConfig

    schema = yaml.safe_load((ROOT / "schemas" / "config.schema.yaml").read_text())
    rl = schema["properties"]["rl"]["properties"]
    sections = {
        "sft": (SftConfig, schema["definitions"]["training_keys"]["properties"]),
        "rl.grpo": (GrpoConfig, rl["grpo"]["properties"]),
        "rl.ppo": (PpoConfig, rl["ppo"]["properties"]),
    }
    assert set(OPTIMISER_EDGES) == {f.name for f in dataclasses.fields(OptimiserConfig)} - {"lr_scheduler_type"}
    for where, (cls, properties) in sections.items():
        assert issubclass(cls, OptimiserConfig), where
        for name, (accepted, refused) in OPTIMISER_EDGES.items():
            for value, ok in [(v, True) for v in accepted] + [(v, False) for v in refused]:
                in_schema = jsonschema.Draft7Validator(properties[name]).is_valid(value)
                try:
                    cls(**{name: value})
                    in_code = True
                except ValueError:
                    in_code = False
                assert (in_schema, in_code) == (ok, ok), (
                    f"{where}.{name} = {value!r}: schema {in_schema}, code {in_code}"
                )


def _grid(default_config, rl_models, sft_end):
    from sftrl.roles import restore_pairs

    return restore_pairs(default_config["restore"]["pairs"], rl_models, sft_end, 4, None)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["rl"].update(from_steps=[70, 600]), r"rl.from_steps \[70\] are not on the SFT ladder"),
        (lambda c: c["model"].update(source="hf:org/model"), "model.source hf:org/model is a hub id"),
        (lambda c: c["rl"].update(from_steps="plan"), "plan.rl_budget is null"),
        (
            lambda c: (
                c["rl"].update(from_steps="plan"),
                c["plan"].update(rl_budget=10.0),
                c["restore"]["pairs"].append(
                    {"source": "sft_end", "target": "rl-ppo-from50-s0", "edits": [{"kind": "value", "top": 1.0}]}
                ),
            ),
            r"restore.pairs names RL runs \['rl-ppo-from50-s0'\].*use the role rl_from_end",
        ),
        (lambda c: c["report"]["claims"].update(angle_k_fraction=0.3), "angle_k_fraction 0.3 is not among"),
        (
            lambda c: c["model"].update(base_seed=1),
            "model.base_seed builds a tiny base, but model.source is 'embedded'",
        ),
    ],
    ids=["off-ladder", "hub-base", "plan-without-budget", "planned-rl-run-named", "angle-fraction", "base-seed"],
)
def test_settings_that_contradict_each_other_are_refused(default_config, edit, expected):
    from sftrl.config import check_experiment
    from sftrl.names import rl_model

    sft_steps = [5, 25, 50, 100, 200, 300, 600]
    config = copy.deepcopy(default_config)
    check_experiment(config, sft_steps, [], _grid(config, [rl_model("ppo", 600, 0)], "sft-600"), "sft-600")
    edit(config)
    starts = sft_steps if config["rl"]["from_steps"] in ("all", "plan") else config["rl"]["from_steps"]
    rl_models = [rl_model(a, s, 0) for a in ("ppo", "grpo") for s in starts]
    with pytest.raises(ValueError, match=expected):
        check_experiment(config, sft_steps, rl_models, _grid(config, rl_models, "sft-600"), "sft-600")


def test_a_second_base_has_its_own_seed_and_the_study_keeps_the_experiments(default_config):
    from sftrl.config import base_seed

    config = copy.deepcopy(default_config)
    assert config["model"]["base_seed"] is None and base_seed(config) == config["seed"] == 0
    config["model"].update(source="tiny", base_seed=1)
    assert base_seed(config) == 1 and config["seed"] == 0


def test_the_planned_restoration_is_an_svd_edit_of_the_peak_and_end_pair(default_config):
    from sftrl.config import restore_plan_spec

    config = copy.deepcopy(default_config)
    grid = _grid(config, ["rl-ppo-from600-s0", "rl-grpo-from600-s0"], "sft-600")
    assert restore_plan_spec(config, grid).name == config["plan"]["restore_edit"]
    assert restore_plan_spec({**config, "plan": {**config["plan"], "restore_target": None}}, grid) is None
    config["plan"]["restore_edit"] = "layer-first25pct"
    with pytest.raises(ValueError, match=r"not an SVD edit of the sft_peak -> sft_end pair.*direction-top20-tail0"):
        restore_plan_spec(config, grid)
