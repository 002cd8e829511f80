"""Stage config files: named by their content, written when the run starts, read back by the scripts' --config."""

import json

from sftrl.config import load_json_arg
from sftrl.job_config import DIGEST_CHARS, ConfigFiles


def test_a_stage_file_is_named_by_its_content(tmp_path):
    files = ConfigFiles(tmp_path)
    first = files.stage("sft", {"seed": 0, "sft": {"learning_rate": 1e-5}})
    again = files.stage("sft", {"sft": {"learning_rate": 1e-5}, "seed": 0})
    changed = files.stage("sft", {"seed": 0, "sft": {"learning_rate": 2e-5}})
    assert first == again != changed, "the same content is the same file; a change is a new name"
    assert first.name.startswith("sft-") and len(first.stem) == len("sft-") + DIGEST_CHARS


def test_nothing_is_written_before_the_run_starts_and_everything_after(tmp_path):
    files = ConfigFiles(tmp_path / "configs")
    sft = files.stage("sft", {"seed": 0})
    tracking = files.fixed("tracking.json", {"backend": "tensorboard"})
    assert not (tmp_path / "configs").exists(), "a dry run or a refused run writes nothing"
    files.write()
    assert load_json_arg(str(sft)) == {"seed": 0} and load_json_arg(str(tracking)) == {"backend": "tensorboard"}
    edits = files.stage("restore", [{"kind": "layer"}])  # asked for after a checkpoint: written at once
    assert load_json_arg(str(edits)) == [{"kind": "layer"}]


def test_a_file_is_rewritten_only_when_its_content_changes(tmp_path):
    files = ConfigFiles(tmp_path)
    files.write()
    path = files.fixed("tracking.json", {"backend": "tensorboard"})
    mtime = path.stat().st_mtime_ns
    ConfigFiles(tmp_path).write()
    again = ConfigFiles(tmp_path)
    again.fixed("tracking.json", {"backend": "tensorboard"})
    again.write()
    assert path.stat().st_mtime_ns == mtime
    changed = ConfigFiles(tmp_path)
    changed.fixed("tracking.json", {"backend": "none"})
    changed.write()
    assert json.loads(path.read_text()) == {"backend": "none"}
