"""The study's names and the registries at the extension points, against each other and the schema."""

import re

import pytest
import yaml

from sftrl import names
from sftrl.evaluate.backends import BACKEND_BUILDERS
from sftrl.evaluate.engine import BACKENDS
from sftrl.restoration.apply import SVD_EDITS
from sftrl.restoration.spec import EDIT_KINDS, KINDS, SVD_KINDS
from sftrl.rl import ALGORITHMS, algorithm_colour


@pytest.fixture(scope="module")
def schema(root):
    return yaml.safe_load((root / "schemas" / "config.schema.yaml").read_text())


def test_model_names_are_built_and_parsed_alike():
    assert names.sft_model(40) == "sft-40" and names.model_step("sft-40") == 40
    assert names.model_step(names.BASE) == 0
    name = names.rl_model("grpo", 40, 3)
    assert name == "rl-grpo-from40-s3" and names.is_rl_model(name)
    run = names.rl_run(name)
    assert (run.algorithm, run.step, run.seed, run.start) == ("grpo", 40, 3, "sft-40")
    for bad in ("sft-", "sft-4a", "rl-ppo-from40-s0", "edits/sft_peak__sft_end/value-top100-tail0"):
        with pytest.raises(ValueError, match="not an SFT checkpoint name"):
            names.model_step(bad)
    for bad in ("sft-40", "rl-ppo-from40", "rl-PPO-from40-s0"):
        assert not names.is_rl_model(bad)
        with pytest.raises(ValueError, match="not an RL model name"):
            names.rl_run(bad)


def test_result_paths(tmp_path):
    assert names.metrics_path(tmp_path, "sft-5", "ood") == tmp_path / "sft-5" / "ood" / "metrics.json"
    assert names.samples_path(tmp_path, "sft-5", "id") == tmp_path / "sft-5" / "id" / "samples.jsonl"


def test_schema_role_pattern_is_the_rl_model_name(schema):
    role = re.compile(schema["definitions"]["role"]["pattern"])
    for algorithm in ALGORITHMS:
        assert role.match(names.rl_model(algorithm, 600, 2))
    for name in ("rl-ppo-from600", "rl-ppo-fromx-s0", "sft-600"):
        assert not role.match(name) and not names.is_rl_model(name)


def test_rl_registry_is_the_schema_and_the_config(schema, default_config):
    assert schema["definitions"]["rl_algorithm"]["enum"] == list(ALGORITHMS)
    rl = schema["properties"]["rl"]
    for algorithm in ALGORITHMS:
        assert algorithm in rl["properties"] and algorithm in rl["required"]
        assert algorithm in default_config["rl"]
        module = ALGORITHMS[algorithm]
        assert algorithm_colour(algorithm) == module.colour
    assert algorithm_colour("a2c") == "black"


def test_every_registered_algorithm_has_its_settings_and_trainer():
    import importlib

    for algorithm in ALGORITHMS.values():
        module = importlib.import_module(algorithm.module)
        assert callable(module.settings) and callable(getattr(module, algorithm.trainer))


def test_edit_kinds_are_the_schema_and_each_svd_kind_is_applied(schema):
    assert schema["definitions"]["edit"]["properties"]["kind"]["enum"] == list(KINDS)
    assert set(SVD_KINDS) == set(SVD_EDITS) == {k for k, kind in EDIT_KINDS.items() if kind.svd}


def test_backends_are_the_schema(schema):
    assert schema["properties"]["eval"]["properties"]["backend"]["enum"] == list(BACKENDS) == list(BACKEND_BUILDERS)


def test_schema_splits_are_the_eval_splits(schema):
    splits = schema["properties"]["representations"]["properties"]["splits"]["items"]["enum"]
    assert splits == list(names.EVAL_SPLITS)
