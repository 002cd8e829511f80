"""The differences between the authors' runs and their text, as named options (sftrl.fidelity): what each
paper config runs, what every invocation prints, and the table in docs/fidelity.md, which cannot drift from them."""

from pathlib import Path

import pytest
import yaml

from sftrl import fidelity

ROOT = Path(__file__).resolve().parents[1]


def merged(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture(scope="module")
def configs() -> dict[str, dict]:
    default = yaml.safe_load((ROOT / "config.yaml").read_text())
    papers = {
        m: merged(default, yaml.safe_load((ROOT / "experiments" / f"{m}.yaml").read_text()))
        for m in fidelity.PAPER_MODELS
    }
    return {"default": default, **papers}


def test_every_key_is_a_config_key(configs):
    for difference in fidelity.DIFFERENCES:
        fidelity._get(configs["default"], difference.key)  # raises KeyError for a key the config lacks


def test_the_default_is_corrected_and_the_paper_configs_are_the_authors(configs):
    assert {status for _, status in fidelity.statuses(configs["default"])} == {"corrected"}
    for model in fidelity.PAPER_MODELS:
        corrected = [d.key for d, status in fidelity.statuses(configs[model], model) if status != "authors"]
        assert corrected == ["data.sft.file"], model  # the authors' gp-l set is not distributed
        assert configs[model]["rl"]["seeds"] == [0]  # one run a start, as the authors
    qwen_only = [d.key for d in fidelity.DIFFERENCES if d.models == ("qwen2.5-7b",)]
    assert qwen_only == ["sft.prompt_format"]  # the authors' Llama SFT used its chat template
    assert configs["llama3.2-11b-vision"]["sft"]["prompt_format"] == "chat_template"


def test_the_summary_says_which_options_are_the_authors(configs):
    assert fidelity.summary(configs["default"]).endswith("0 of 18 options as the authors ran them (all corrected)")
    qwen = fidelity.summary(configs["qwen2.5-7b"])
    assert "17 of 18 options as the authors ran them" in qwen
    assert (
        "  corrected  data.sft.file = null" in qwen
        and "  authors    rl.ppo.accumulation = across_epochs (inferred)" in qwen
    )
    assert "  authors    SVD edits by counts (top_k)" in qwen


def test_the_documented_table_is_the_registry(configs):
    papers = {m: configs[m] for m in fidelity.PAPER_MODELS}
    documented = (ROOT / "docs" / "fidelity.md").read_text()
    table = "\n".join(fidelity.documented_table(papers))
    assert table in documented, (
        "docs/fidelity.md's table differs from sftrl.fidelity.documented_table: paste it anew:\n" + table
    )
