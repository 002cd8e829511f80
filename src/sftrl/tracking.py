"""Live training and evaluation curves in TensorBoard, Weights & Biases or MLflow, through one setting.

`tracking.backend` picks the backend for every job of an experiment. SFT, GRPO and the base's pretraining
log what their Hugging Face trainer logs (the `train/` and `eval/` names its own integrations use), PPO its
update row, evaluation each split's success with its interval. Every job is one run, named after what it
trains or evaluates (`sft`, `rl-ppo-from100-s0`, `eval/sft-100`, …), and carries its config and provenance.

All backends go through accelerate's trackers, wrapped so that a tracker which fails (disk full, server
gone) logs one warning and is switched off: training never dies for its dashboard. This is also why the
trainers keep `report_to=[]` and get `sftrl.training_run.TrackerCallback` instead: the integrations
`report_to` installs let a failing tracker end the run. The workflow imports this module while it builds
its DAG, so it imports neither torch nor transformers.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """What a backend needs: the module it imports, the package that provides it (what to install), and
    where under the experiment's results its files go."""

    module: str | None
    package: str | None
    folder: str | None


BACKENDS: dict[str, Backend] = {
    "none": Backend(None, None, None),
    "tensorboard": Backend("tensorboard", "tensorboard", "tb"),
    "wandb": Backend("wandb", "wandb (pip install -e '.[trackers]')", "wandb"),
    "mlflow": Backend("mlflow", "mlflow-skinny, sqlalchemy and alembic (pip install -e '.[trackers]')", "mlflow"),
}


@dataclass(frozen=True)
class TrackingConfig:
    """The `tracking` section, resolved for a job: `dir` is where the backend writes (results/{exp}/tb for
    TensorBoard), `project` the experiment's name. `offline`: W&B writes offline runs (`wandb sync` uploads
    them) and MLflow a SQLite store under `dir`; with false they use the server the environment names
    (WANDB_*, MLFLOW_TRACKING_URI)."""

    backend: str = "tensorboard"
    offline: bool = True
    dir: str = ""
    project: str = "sftrl"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"tracking.backend {self.backend!r}: expected one of {list(BACKENDS)}")

    @property
    def enabled(self) -> bool:
        return self.backend != "none"


def resolve(section: Mapping[str, Any], results: str | os.PathLike, project: str) -> dict[str, Any]:
    """The config's `tracking` section with where its files go, as the jobs receive it."""
    backend = BACKENDS[section.get("backend", "none")]
    folder = str(Path(results) / backend.folder) if backend.folder else ""
    return {**section, "dir": folder, "project": project}


def check(section: Mapping[str, Any]) -> None:
    """Refuse, before any job, a backend that does not exist or whose package is not installed."""
    name = section.get("backend", "none")
    if name not in BACKENDS:
        raise ValueError(f"tracking.backend {name!r} is not one of {', '.join(BACKENDS)}")
    backend = BACKENDS[name]
    if backend.module and importlib.util.find_spec(backend.module) is None:
        raise ValueError(f"tracking.backend {name!r} needs the package {backend.package}, which is not installed")


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str | None]:
    """Nested config as `a/b/c` keys with scalar values (lists as JSON), the form every backend stores."""
    flat: dict[str, bool | int | float | str | None] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}/"))
        elif value is None or isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, sort_keys=True, default=str)
    return flat


def scalars(row: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a log row (lists and text left out), each under `prefix`."""
    return {
        f"{prefix}{key}": float(value)
        for key, value in row.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def _accelerate_tracker(cfg: TrackingConfig, run_name: str):
    from accelerate import PartialState
    from accelerate import tracking as trackers

    PartialState()  # the trackers' own logging needs accelerate's state (the launched process's, where there is one)

    if cfg.backend == "tensorboard":
        return trackers.TensorBoardTracker(run_name, cfg.dir)
    if cfg.backend == "wandb":
        options: dict[str, Any] = {"name": run_name, "dir": cfg.dir}
        if cfg.offline:
            options["mode"] = "offline"
        Path(cfg.dir).mkdir(parents=True, exist_ok=True)
        return trackers.WandBTracker(cfg.project, **options)
    if cfg.offline:
        Path(cfg.dir).mkdir(parents=True, exist_ok=True)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(cfg.dir).resolve() / 'mlflow.db'}"
    return trackers.MLflowTracker(experiment_name=cfg.project, run_name=run_name)


class Tracker:
    """One job's run in the configured backend, a context manager that finishes the run. Every call is
    guarded: the first failure logs a warning and switches the tracker off for the rest of the job. With
    backend `none`, or off the main process, it does nothing."""

    def __init__(self, cfg: TrackingConfig, run_name: str, config: Mapping[str, Any] | None = None):
        self.cfg, self.run_name = cfg, run_name
        self._tracker = None
        if cfg.enabled and _main_process():
            self._guard("start", self._start, config or {})

    @property
    def active(self) -> bool:
        return self._tracker is not None

    def _start(self, config: Mapping[str, Any]) -> None:
        tracker = _accelerate_tracker(self.cfg, self.run_name)
        tracker.start()
        self._tracker = tracker
        if not config:
            return
        if self.cfg.backend == "tensorboard":  # as text: hparams would add a second run to the run list
            text = json.dumps(config, indent=1, sort_keys=True, default=str)
            tracker.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()))
        else:
            tracker.store_init_configuration(flatten(config))

    def _guard(self, what: str, call, *args, **kwargs) -> None:
        try:
            call(*args, **kwargs)
        except Exception as err:  # a dashboard's failure must never end the job
            log.warning("tracking (%s) switched off: %s failed: %s", self.cfg.backend, what, err)
            self._tracker = None

    def log(self, values: Mapping[str, float], step: int) -> None:
        """Log scalar `values` at `step`."""
        if self._tracker is not None and values:
            self._guard("log", self._tracker.log, dict(values), step=step)

    def finish(self) -> None:
        if self._tracker is not None:
            self._guard("finish", self._tracker.finish)
            self._tracker = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


def _main_process() -> bool:
    from sftrl.training_run import launched_as_main

    return launched_as_main()


def tracker(settings: str | os.PathLike | None, run_name: str, config: Mapping[str, Any] | None = None) -> Tracker:
    """The job's tracker from the file of its resolved `tracking` section (None: no tracker)."""
    section = json.loads(Path(settings).read_text()) if settings is not None else {"backend": "none"}
    return Tracker(TrackingConfig(**section), run_name, config)


def trainer_logs(logs: Mapping[str, Any]) -> dict[str, float]:
    """A Hugging Face trainer's log row under the names its integrations use: `eval_x` as `eval/x`,
    everything else as `train/x`."""
    named = {}
    for key, value in scalars(logs).items():
        named[f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"] = value
    return named


def evaluation_run(model_dir: str | os.PathLike, name: str | None = None) -> tuple[str, int]:
    """The run an evaluation of the model `name` logs to (its directory's name unless given; an edited
    model's is `edits/{pair}/{edit}`), and at which step: `eval/{name}` at an SFT checkpoint's step, at an
    RL policy's update (its provenance.json's), at 0 for any other model (the base, an edit), so the
    ladder's evaluations line up along the SFT steps and an RL run's along its updates.

    One run per job: TensorBoard's loader drops a run's points whose step is below one it has read (a
    restart, to it), which evaluations finishing out of order in one run would be."""
    from sftrl.names import SFT_MODEL_RE, is_rl_model

    path = Path(model_dir)
    name = name or path.name
    step = 0
    if match := SFT_MODEL_RE.match(name):
        step = int(match.group("step"))
    elif is_rl_model(name) and (path / "provenance.json").is_file():
        step = int(json.loads((path / "provenance.json").read_text()).get("update", 0))
    return f"eval/{name}", step


def evaluation_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """A split's success with its interval, as `eval/{split}/success`, `…/ci_low`, `…/ci_high`."""
    success, split = metrics["success"], metrics["split"]
    return {f"eval/{split}/{key}": float(success[field]) for key, field in EVAL_FIELDS.items()}


EVAL_FIELDS = {"success": "rate", "ci_low": "ci_low", "ci_high": "ci_high"}
