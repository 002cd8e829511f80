"""Evaluation: batched multi-turn episodes, per-episode samples and aggregate metrics.

`evaluate_model` is the library entry point behind `scripts/evaluate.py`. Importing this package does not
import torch; `sftrl.evaluate.backends` does.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from sftrl import io
from sftrl.config import TaskConfig, from_dict
from sftrl.evaluate.engine import (
    Backend,
    EpisodeResult,
    EvalConfig,
    Turn,
    first_conversation,
    run_episodes,
    run_episodes_sequential,
)
from sftrl.evaluate.metrics import compute_metrics, wilson_interval
from sftrl.names import EVAL_SPLITS
from sftrl.provenance import provenance

__all__ = [
    "Backend",
    "EpisodeResult",
    "EvalConfig",
    "Turn",
    "check_decoding",
    "check_inputs",
    "check_split",
    "compute_metrics",
    "eval_config",
    "evaluate_model",
    "evaluate_splits",
    "load_episodes",
    "run_episodes",
    "run_episodes_sequential",
    "wilson_interval",
]


def eval_config(cfg: dict) -> EvalConfig:
    """The `eval` section; seed, dtype and remote-code trust default to the experiment's and the model's."""
    section = dict(cfg.get("eval") or {})
    section.setdefault("seed", cfg["seed"])
    model = cfg.get("model") or {}
    for key in ("dtype", "trust_remote_code"):
        if key in model:
            section.setdefault(key, model[key])
    return from_dict(EvalConfig, section, "eval")


def check_decoding(cfg: dict, model_dir: str | Path | None) -> None:
    """Refuse, before any job, an evaluation its base's generation config cannot run: several samples per
    hand with eval.decoding generation_config where that config decodes greedily (checked where on disk)."""
    section = eval_config(cfg)
    path = Path(model_dir) / "generation_config.json" if model_dir is not None else None
    if section.decoding == "generation_config" and path is not None and path.is_file():
        section.sampling(io.read_json(path))


def check_split(split: str | None) -> None:
    if split is not None and split not in EVAL_SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(EVAL_SPLITS)}")


def load_episodes(path: str | Path) -> list[dict]:
    """The eval-set records, with a clear error naming the file when it is missing, empty or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"episodes file {path} does not exist")
    try:
        records = io.read_jsonl(path)
    except ValueError as err:
        raise ValueError(f"episodes file {path} is not valid JSON lines: {err}") from err
    if not records:
        raise ValueError(f"episodes file {path} holds no episodes")
    for n, record in enumerate(records, 1):
        missing = [key for key in ("uid", "hand", "rule") if key not in record]
        if missing:
            raise ValueError(f"episodes file {path}, line {n}: missing key(s) {missing}")
    return records


def check_inputs(model_dir: str | Path, episodes_path: str | Path, split: str | None) -> list[dict]:
    """Every check that needs no model: split name, episodes file, model directory layout.

    Returns the episode records. A hub id (``org/name``) is left for `from_pretrained` to resolve.
    """
    check_split(split)
    records = load_episodes(episodes_path)
    from sftrl.modeling import check_model_dir, is_hub_id

    if not is_hub_id(str(model_dir)):
        check_model_dir(model_dir)
    return records


def expand_samples(records: list[dict], samples: int) -> list[dict]:
    """`samples` episodes per eval item (sampling only), told apart by their `sample` index."""
    return [{**record, "sample": s} for record in records for s in range(samples)]


def evaluate_model(
    model_dir: str | Path,
    episodes_path: str | Path,
    task: TaskConfig,
    cfg: EvalConfig,
    out_dir: str | Path,
    split: str | None = None,
    config: dict | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate one model directory on one eval set; write `samples.jsonl` and `metrics.json` to `out_dir`."""
    [metrics] = evaluate_splits(model_dir, [(split, episodes_path, out_dir)], task, cfg, config, progress)
    return metrics


MODEL_RECORDS = ("provenance.json", "edit.json")  # what a model directory says of how it was made


def model_records(model_dir: str | Path) -> dict:
    """The evaluated model's own records, so a result keeps them after a temporary model is deleted
    (keep_models: ladder); none for a hub id."""
    paths = [Path(model_dir) / name for name in MODEL_RECORDS]
    return {path.name: io.read_json(path) for path in paths if path.is_file()}


def evaluate_splits(
    model_dir: str | Path,
    sets: list[tuple[str | None, str | Path, str | Path]],
    task: TaskConfig,
    cfg: EvalConfig,
    config: dict | None = None,
    progress: bool = True,
) -> list[dict]:
    """Evaluate one model on several (split, episodes file, output directory) sets, loading it once.

    Every input is checked before the model is loaded, so a bad path fails in seconds. `config` is the
    resolved config recorded as provenance (default: the task and eval sections). Returns the metrics.
    """
    checked = [
        (split, episodes_path, out_dir, expand_samples(check_inputs(model_dir, episodes_path, split), cfg.samples))
        for split, episodes_path, out_dir in sets
    ]
    from sftrl.evaluate.backends import make_backend

    backend = make_backend(model_dir, cfg)
    return [
        _evaluate_set(backend, model_dir, split, episodes_path, records, task, cfg, out_dir, config, progress)
        for split, episodes_path, out_dir, records in checked
    ]


def _evaluate_set(backend, model_dir, split, episodes_path, records, task, cfg, out_dir, config, progress) -> dict:
    tokens_before = getattr(backend, "tokens_generated", None)
    start = time.perf_counter()
    results = run_episodes(backend, records, task, progress=progress)
    wall = time.perf_counter() - start
    tokens_after = getattr(backend, "tokens_generated", None)
    tokens = tokens_after - tokens_before if tokens_after is not None else None

    out_dir = Path(out_dir)
    io.write_jsonl(out_dir / "samples.jsonl", (result.to_record() for result in results))
    render = getattr(backend, "render", None)
    metrics = {
        "split": split,
        "model": str(model_dir),
        "episodes_file": str(episodes_path),
        "n_items": len(records) // cfg.samples,
        # what the model read on the first turn of the first episode: the prompt in its chat template
        "first_prompt": render(first_conversation(records[0], task)) if render and records else None,
        **compute_metrics(results),
        "decoding": asdict(cfg),
        "task": asdict(task),
        "runtime": {
            "wall_s": wall,
            "generated_tokens": tokens,
            "generated_tokens_per_s": tokens / wall if tokens is not None and wall > 0 else None,
        },
        "provenance": provenance(config or {"task": asdict(task), "eval": asdict(cfg)}, cfg.seed),
        "model_records": model_records(model_dir),
    }
    io.write_json(out_dir / "metrics.json", metrics)
    return metrics
