"""The conda environment of `--sdm conda` pins exactly what pyproject.toml pins, installs the workflow's
package, and every rule uses it."""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / "envs" / "sftrl.yaml"
PACKAGE = "${SFTRL_ROOT}"  # the workflow's package: its directory, which the workflow sets


def pip_section() -> list[str]:
    env = yaml.safe_load(ENV_FILE.read_text())
    pip = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict)]
    assert len(pip) == 1
    return pip[0]


def pins(requirements):
    out = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", requirement.strip())
        assert match, f"not an exact pin: {requirement!r}"
        out[match.group(1).lower().replace("_", "-")] = match.group(2)
    return out


def test_conda_env_pins_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load(ENV_FILE.read_text())
    requirements = pip_section()
    assert requirements.count(PACKAGE) == 1
    assert pins([r for r in requirements if r != PACKAGE]) == pins(project["dependencies"])
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    minimum = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.removeprefix("python=").split("."))) >= tuple(map(int, minimum.split(".")))


def command_rules():
    """(file, rule, its text) of every rule in rules/ that runs a command."""
    for path in sorted((ROOT / "rules").glob("*.smk")):
        text = path.read_text()
        rules = re.findall(r"^\s*(?:rule|checkpoint) (\w+):", text, re.MULTILINE)
        blocks = re.split(r"^\s*(?:rule|checkpoint) \w+:", text, flags=re.MULTILINE)[1:]
        for name, block in zip(rules, blocks, strict=True):
            if "shell:" in block:
                yield path.name, name, block


def test_every_rule_with_a_command_uses_the_environment():
    for file, name, block in command_rules():
        assert re.search(r'conda:\s*\n\s*"\.\./envs/sftrl\.yaml"', block), f"{file}: rule {name} has no conda env"


def test_every_job_log_begins_with_what_the_job_does():
    """The first line of a job's log is its `what` (rules/common.smk); the command appends after it."""
    for file, name, block in command_rules():
        assert re.search(r'what=what\(\s*"[^"]+"\s*\)', block), f"{file}: rule {name} says not what it does"
        command = block.split("shell:")[1]
        assert re.match(r'\s*"echo \{params\.what:q\} > \{log\}; "', command), f"rule {name}: the log's first line"
        assert "> {log} 2>&1" not in command.replace(">> {log} 2>&1", ""), f"rule {name} overwrites its log"


# Stands in for conda, which no channel lets us install here: it answers Snakemake's checks and makes
# `conda env create` environments the way conda does for the pip section (conda/env/installers/pip.py:
# a condaenv.*.requirements.txt in the env file's directory, `pip install -U -r` run there), as a venv
# that sees the test's shared site directory for the pinned packages.
CONDA_STAND_IN = """
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

here = Path(__file__).resolve().parent
setup = json.loads((here / "stand-in.json").read_text())
args = sys.argv[1:]
if args == ["info", "--json"]:
    print(json.dumps({"conda_prefix": str(here.parent), "platform": "linux-64"}))
elif args == ["--version"]:
    print("conda 25.1.1")
elif args[:2] == ["config", "--get"]:
    print(json.dumps({"get": {"channel_priority": "strict"}}))
elif args[:1] == ["clean"]:
    pass  # no package cache to clean
elif args[:2] == ["env", "create"]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", required=True)
    parser.add_argument("--prefix", required=True)
    opts, _ = parser.parse_known_args(args[2:])
    spec = yaml.safe_load(Path(opts.file).read_text())
    pip = next(dep["pip"] for dep in spec["dependencies"] if isinstance(dep, dict))
    prefix = Path(opts.prefix)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", prefix], check=True)
    python = prefix / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(purelib, "_shared.pth").write_text(setup["shared"] + "\\n")
    before = subprocess.run([python, "-c", "import sftrl"], capture_output=True).returncode == 0
    workdir = os.path.dirname(os.path.abspath(opts.file))
    with tempfile.NamedTemporaryFile(
        "w", prefix="condaenv.", suffix=".requirements.txt", dir=workdir, delete=False
    ) as requirements:
        requirements.write("\\n".join(pip))
    pip_run = subprocess.run(
        [python, "-m", "pip", "install", "-U", "-r", requirements.name, "--exists-action=b"],
        cwd=workdir, capture_output=True, text=True,
    )
    os.remove(requirements.name)
    print(pip_run.stdout, pip_run.stderr)
    record = {"file": opts.file, "prefix": str(prefix), "pip_cwd": workdir, "sftrl_before_pip": before}
    with open(setup["log"], "a") as log:
        log.write(json.dumps(record) + "\\n")
    sys.exit(pip_run.returncode)
else:
    sys.exit(f"conda stand-in: unexpected arguments {args}")
"""


def shared_site(where: Path) -> Path:
    """This venv's installed distributions without the workflow's own (its dist-info, its editable
    install's path entry), so the environment under test can only get sftrl from its pip section."""
    where.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("sftrl", "__editable__")) and entry.suffix != ".pth":
            (where / entry.name).symlink_to(entry)
    return where


def test_sdm_conda_job_imports_the_workflow_package_from_its_environment(tmp_path):
    """`snakemake --sdm conda` makes the environment from its own copy of envs/sftrl.yaml (under the
    conda prefix, away from the checkout) and a job of the workflow runs in it with sftrl installed
    there, not borrowed from the checkout; from a working directory outside the workflow's."""
    checkout = tmp_path / "checkout"  # a copy, so that pip's build leaves nothing in the repository
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(
            ".*", "results", "tests", "benchmarks", "docs", "__pycache__", "*.egg-info", "build"
        ),
    )
    work = tmp_path / "work"  # Snakemake's working directory
    work.mkdir()

    conda_bin = tmp_path / "conda" / "bin"
    conda_bin.mkdir(parents=True)
    log = tmp_path / "conda-calls.jsonl"
    setup = {"shared": str(shared_site(tmp_path / "shared")), "log": str(log)}
    (conda_bin / "stand-in.json").write_text(json.dumps(setup))
    (conda_bin / "conda").write_text(f"#!{sys.executable}\n{CONDA_STAND_IN}")
    (conda_bin / "activate").write_text('PATH="$1/bin:$PATH"; export PATH\n')
    (conda_bin / "conda").chmod(0o755)

    venv_bin = Path(sys.prefix) / "bin"
    path = [str(conda_bin), *(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != venv_bin)]
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "SNAKEMAKE_PROFILE"}}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(checkout / "Snakefile"),
            "-d",
            str(work),
            "--sdm",
            "conda",
            "--cores",
            "1",
            "datasets",
        ],
        env=env | {"PATH": os.pathsep.join(path)},
        capture_output=True,
        text=True,
    )
    exp = yaml.safe_load((ROOT / "config.yaml").read_text())["exp"]
    job_log = work / "results" / exp / "logs" / "data" / "datasets.log"
    assert run.returncode == 0, run.stderr[-4000:] + (job_log.read_text()[-2000:] if job_log.exists() else "")
    assert (work / "results" / exp / "data" / "manifest.json").is_file()

    (created,) = [json.loads(line) for line in log.read_text().splitlines()]
    conda_prefix = work / ".snakemake" / "conda"
    assert Path(created["file"]).parent == conda_prefix  # Snakemake hands conda a copy, not envs/sftrl.yaml
    assert not created["sftrl_before_pip"], "sftrl was importable before pip ran: the check below proves nothing"
    python = Path(created["prefix"]) / "bin" / "python"
    where = subprocess.run(
        [python, "-c", "import sftrl; print(sftrl.__file__)"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(where).is_relative_to(Path(created["prefix"]) / "lib"), where
