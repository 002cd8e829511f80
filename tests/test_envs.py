"""The conda environment of `--sdm conda` pins exactly what pyproject.toml pins, and every rule uses it."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def pins(requirements):
    out = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", requirement.strip())
        assert match, f"not an exact pin: {requirement!r}"
        out[match.group(1).lower().replace("_", "-")] = match.group(2)
    return out


def test_conda_env_pins_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "envs" / "sftrl.yaml").read_text())
    pip = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict)]
    assert len(pip) == 1
    assert pins(pip[0]) == pins(project["dependencies"])
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    minimum = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.removeprefix("python=").split("."))) >= tuple(map(int, minimum.split(".")))


def test_every_rule_with_a_command_uses_the_environment():
    for path in sorted((ROOT / "rules").glob("*.smk")):
        text = path.read_text()
        rules = re.findall(r"^\s*(?:rule|checkpoint) (\w+):", text, re.MULTILINE)
        blocks = re.split(r"^\s*(?:rule|checkpoint) \w+:", text, flags=re.MULTILINE)[1:]
        for name, block in zip(rules, blocks, strict=True):
            if "shell:" in block:
                assert re.search(r'conda:\s*\n\s*"\.\./envs/sftrl\.yaml"', block), (
                    f"{path.name}: rule {name} has no conda: ../envs/sftrl.yaml"
                )
