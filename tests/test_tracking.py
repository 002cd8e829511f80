"""Trackers: what SFT, PPO, GRPO and evaluation log, read back from each backend's own files and compared with
the stage's own history log."""

import json
import logging
import struct
import time
from dataclasses import replace
from pathlib import Path

import pytest
from rl_start import TASK

from sftrl import io, sft, tracking
from sftrl.rl.grpo import GrpoConfig, train_grpo
from sftrl.rl.ppo import PpoConfig, train_ppo
from sftrl.training_run import RunFiles

pytestmark = pytest.mark.usefixtures("one_thread")

PPO = PpoConfig(
    learning_rate=3e-4,
    ppo_epochs=2,
    updates=2,
    episodes_per_update=8,
    minibatch_size=8,
    max_new_tokens=32,
    save_every=2,
    temperature=1.0,
    kl_coef=0.1,
)
GRPO = GrpoConfig(
    learning_rate=1e-3,
    lr_scheduler_type="constant",
    per_device_train_batch_size=8,
    num_generations=4,
    max_steps=2,
    save_every=2,
    max_completion_length=32,
)
SFT = sft.SftConfig(
    learning_rate=3e-3,
    warmup_ratio=0.0,
    per_device_batch_size=4,
    max_steps=4,
    save_every=2,
    extra_steps=(),
    logging_steps=1,
    max_length=96,
)
# The list for PPO: mean reward, success, policy and value loss, clip fraction, approximate KL to the
# start policy, entropy, learning rate, gradient norm, tokens per second.
PPO_CURVES = [
    "episode_reward",
    "success_rate",
    "policy_loss",
    "value_loss",
    "clip_fraction",
    "kl_to_start",
    "entropy",
    "lr",
    "grad_norm",
    "tokens_per_s",
]


def settings(tmp_path: Path, backend: str) -> Path:
    """The resolved tracking file a job receives."""
    path = tmp_path / f"{backend}.json"
    path.write_text(json.dumps({"backend": backend, "offline": True, "dir": str(tmp_path / backend), "project": "t"}))
    return path


def tensorboard_scalars(logdir: Path) -> dict[str, dict[int, float]]:
    """Every scalar curve of a TensorBoard run directory, read with TensorBoard's own event reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def assert_curves_match(
    curves: dict[str, dict[int, float]], rows: list[dict], step: str, names: list[str], prefix: str
):
    for name in names:
        logged = {row[step]: row[name] for row in rows if name in row}
        assert logged, f"{name} is not in the history"
        assert curves[f"{prefix}{name}"] == pytest.approx(logged, rel=1e-6, abs=1e-7), name


def test_ppo_logs_its_update_rows_to_tensorboard(tmp_path, start_dir, rl_sets):
    with tracking.tracker(settings(tmp_path, "tensorboard"), "rl-ppo-from60-s0", {"seed": 0}) as run:
        files = RunFiles(tmp_path / "out", tmp_path / "work", tmp_path / "log.jsonl", tracker=run)
        train_ppo(start_dir, rl_sets["rl_prompts"], TASK, PPO, files)
    rows = io.read_jsonl(tmp_path / "log.jsonl")
    curves = tensorboard_scalars(tmp_path / "tensorboard" / "rl-ppo-from60-s0")
    assert_curves_match(curves, rows, "update", PPO_CURVES, "train/")
    assert all(row["entropy"] > 0 for row in rows)


def test_grpo_logs_what_its_trainer_logs_to_tensorboard(tmp_path, start_dir, rl_sets):
    with tracking.tracker(settings(tmp_path, "tensorboard"), "rl-grpo-from60-s0") as run:
        files = RunFiles(tmp_path / "out", tmp_path / "work", tmp_path / "log.jsonl", tracker=run)
        train_grpo(start_dir, rl_sets["rl_prompts"], replace(TASK, max_attempts=1), GRPO, files)
    rows = io.read_jsonl(tmp_path / "log.jsonl")
    curves = tensorboard_scalars(tmp_path / "tensorboard" / "rl-grpo-from60-s0")
    assert_curves_match(curves, rows, "step", ["reward", "loss", "learning_rate", "grad_norm"], "train/")


def test_sft_logs_train_and_per_set_eval_curves_to_tensorboard(tmp_path, start_dir, rl_sets):
    evals = {"ood": rl_sets["loss_ood"]}
    with tracking.tracker(settings(tmp_path, "tensorboard"), "sft") as run:
        sft.train(
            str(start_dir),
            None,
            rl_sets["sft"],
            evals,
            SFT,
            tmp_path / "work",
            lambda step: None,
            tmp_path / "log.jsonl",
            tracker=run,
        )
    rows = io.read_jsonl(tmp_path / "log.jsonl")
    curves = tensorboard_scalars(tmp_path / "tensorboard" / "sft")
    assert_curves_match(curves, rows, "step", ["loss", "learning_rate", "grad_norm"], "train/")
    for name in ["ood_loss", "ood_entropy"]:  # the history's eval_ood_loss is the tracker's eval/ood_loss
        logged = {row["step"]: row[f"eval_{name}"] for row in rows if f"eval_{name}" in row}
        assert logged and curves[f"eval/{name}"] == pytest.approx(logged, rel=1e-6), name


def test_an_evaluation_logs_each_split_with_its_interval_at_the_model_s_step(tmp_path):
    model = tmp_path / "sft-40"
    model.mkdir()
    (model / "provenance.json").write_text(json.dumps({"step": 40}))
    assert tracking.evaluation_run(model) == ("eval/sft-40", 40)
    metrics = {"split": "ood", "success": {"rate": 0.25, "ci_low": 0.1, "ci_high": 0.4, "n": 20}}
    with tracking.tracker(settings(tmp_path, "tensorboard"), "eval/sft-40") as run:
        run.log(tracking.evaluation_scalars(metrics), step=40)
    curves = tensorboard_scalars(tmp_path / "tensorboard" / "eval" / "sft-40")
    assert {tag: curve[40] for tag, curve in curves.items()} == pytest.approx(
        {"eval/ood/success": 0.25, "eval/ood/ci_low": 0.1, "eval/ood/ci_high": 0.4}
    )


def test_an_evaluation_is_a_run_of_its_own_at_its_model_s_step(tmp_path):
    for name, recorded, expected in [
        ("rl-ppo-from100-s2-u5", {"update": 5}, ("eval/rl-ppo-from100-s2-u5", 5)),
        ("rl-grpo-from50-s0", {"update": 10}, ("eval/rl-grpo-from50-s0", 10)),
        ("base", {"step": 300}, ("eval/base", 0)),  # the base's own training steps are not the study's
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "provenance.json").write_text(json.dumps(recorded))
        assert tracking.evaluation_run(tmp_path / name) == expected
    assert tracking.evaluation_run(tmp_path / "base", "edits/a__b/layer-x") == ("eval/edits/a__b/layer-x", 0)


def test_a_failing_tracker_warns_once_and_training_goes_on(tmp_path, start_dir, rl_sets, monkeypatch, caplog):
    from accelerate.tracking import TensorBoardTracker

    calls = []

    def disk_full(self, values, step=None, **kwargs):
        calls.append(step)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TensorBoardTracker, "log", disk_full)
    with (
        caplog.at_level(logging.WARNING, logger="sftrl.tracking"),
        tracking.tracker(settings(tmp_path, "tensorboard"), "rl-ppo-from60-s0") as run,
    ):
        files = RunFiles(tmp_path / "out", tmp_path / "work", tmp_path / "log.jsonl", tracker=run)
        result = train_ppo(start_dir, rl_sets["rl_prompts"], TASK, replace(PPO, kl_coef=0.0), files)
    assert result.updates == PPO.updates and (tmp_path / "out" / "config.json").is_file()
    assert calls == [1], "the first failure switches the tracker off"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "No space left on device" in warnings[0]


def test_an_unknown_or_missing_backend_is_refused_naming_what_to_install(monkeypatch):
    with pytest.raises(ValueError, match="'neptune' is not one of none, tensorboard, wandb, mlflow"):
        tracking.check({"backend": "neptune"})
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"needs the package wandb \(pip install -e '\.\[trackers\]'\)"):
        tracking.check({"backend": "wandb"})
    tracking.check({"backend": "none"})


def test_the_config_is_flattened_for_the_backends():
    flat = tracking.flatten({"rl": {"ppo": {"lr": 1e-6, "betas": [0.9, 0.95]}}, "seed": 0, "start": None})
    assert flat == {"rl/ppo/lr": 1e-6, "rl/ppo/betas": "[0.9, 0.95]", "seed": 0, "start": None}


def wandb_records(run_dir: Path) -> list:
    """The records of an offline W&B run's transaction log (LevelDB's log format: 32 KiB blocks of records
    with a 7-byte header, after the file's own 7-byte header), as W&B's protobuf types."""
    from wandb.proto import wandb_internal_pb2

    data = next(run_dir.glob("*.wandb")).read_bytes()
    block, pos, part, raws = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        part, pos = part + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a whole record, or its last piece
            raws.append(part)
            part = b""
    records = []
    for raw in raws:
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]  # generated protobuf, no stubs
        record.ParseFromString(raw)
        records.append(record)
    return records


def wandb_history(run_dir: Path, timeout: float = 120.0) -> dict[str, dict[int, float]]:
    """The history of an offline W&B run once its log holds the run's exit record: W&B's service writes the
    log in its own process, which on a loaded machine can still be writing when `finish` has returned."""
    deadline = time.monotonic() + timeout
    records = wandb_records(run_dir)
    while not any(r.WhichOneof("record_type") == "exit" for r in records):
        assert time.monotonic() < deadline, f"no exit record in {run_dir} after {timeout:.0f}s"
        time.sleep(0.5)
        records = wandb_records(run_dir)
    curves: dict[str, dict[int, float]] = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):
                    curves.setdefault(key, {})[record.history.step.num] = json.loads(item.value_json)
    return curves


def test_wandb_runs_offline_with_the_update_rows(tmp_path, start_dir, rl_sets, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with tracking.tracker(settings(tmp_path, "wandb"), "rl-ppo-from60-s0", {"seed": 0}) as run:
        files = RunFiles(tmp_path / "out", tmp_path / "work", tmp_path / "log.jsonl", tracker=run)
        train_ppo(start_dir, rl_sets["rl_prompts"], TASK, PPO, files)
    rows = io.read_jsonl(tmp_path / "log.jsonl")
    (run_dir,) = (tmp_path / "wandb" / "wandb").glob("offline-run-*")
    assert_curves_match(wandb_history(run_dir), rows, "update", PPO_CURVES, "train/")


def test_mlflow_runs_offline_into_a_local_store_with_the_update_rows(tmp_path, start_dir, rl_sets, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # restored after the test: the tracker sets it
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with tracking.tracker(settings(tmp_path, "mlflow"), "rl-ppo-from60-s0", {"seed": 0}) as run:
        files = RunFiles(tmp_path / "out", tmp_path / "work", tmp_path / "log.jsonl", tracker=run)
        train_ppo(start_dir, rl_sets["rl_prompts"], TASK, PPO, files)
    rows = io.read_jsonl(tmp_path / "log.jsonl")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("t").experiment_id])
    assert found.data.tags["mlflow.runName"] == "rl-ppo-from60-s0" and found.data.params["seed"] == "0"
    curves = {
        f"train/{name}": {m.step: m.value for m in client.get_metric_history(found.info.run_id, f"train/{name}")}
        for name in PPO_CURVES
    }
    assert_curves_match(curves, rows, "update", PPO_CURVES, "train/")
