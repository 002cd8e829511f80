"""benchmarks/gpu_check.py: its checks run end to end (on a tiny model on the CPU here; on a GPU, the real one)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900)


def test_every_check_runs_on_a_tiny_model_on_the_cpu():
    result = run("--device", "cpu", "--small", "--sft-steps", "8")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for line in (
        "ok: bf16 SFT lowers the loss",
        "ok: float32 masters keep a 1e-6 update",
        "ok: cpu SVD of model.layers.0.self_attn.q_proj.weight agrees with scipy's",
        "all checks passed",
    ):
        assert line in out, out
    assert "HF greedy evaluation: 48 episodes" in out


def test_without_a_gpu_it_says_how_to_run_it():
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    result = run()
    assert result.returncode == 2 and "no CUDA device" in result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_gpu_check_passes_on_a_gpu():
    result = run()
    assert result.returncode == 0, result.stdout + result.stderr
