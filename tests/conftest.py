"""Shared fixtures: the repository root and the default config."""

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def default_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny-model tests: tiny models gain nothing from a second
    thread, and on shared busy cores two threads that wait for each other run several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_ood_samples(path: Path, selection_rate: float, report_rate: float | None = None, n: int = 100) -> None:
    """An OOD samples.jsonl of n episodes whose selection half (even positions) and report half (odd
    positions) succeed at the given rates (the report half at the selection rate unless given)."""
    report_rate = selection_rate if report_rate is None else report_rate
    half = n // 2
    records = []
    for i in range(n):
        rate, position = (selection_rate, i // 2) if i % 2 == 0 else (report_rate, i // 2)
        records.append({"uid": f"ood-{i:05d}", "sample": 0, "success": position < round(rate * half)})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
