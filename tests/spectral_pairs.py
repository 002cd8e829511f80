"""Model pairs with known spectral differences, shared by the spectral metric and figure tests."""

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from sftrl.spectral.weights import SINGLE_FILE

Q = "model.layers.0.self_attn.q_proj.weight"
DOWN = "model.layers.1.mlp.down_proj.weight"
THETA = math.radians(20)
FRACTIONS = (0.125, 0.25, 1.0)  # k = 1, 2, 8 of rank 8


def orthonormal(n, seed):
    return torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]


def compose(u, s, v):
    return ((u * s) @ v.T).float().contiguous()


def write_model(path, tensors):
    path.mkdir()
    save_file(tensors, path / SINGLE_FILE)
    (path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return path


def value(table, name, metric, index=-1):
    rows = table[(table["name"] == name) & (table["metric"] == metric) & (table["index_or_k"] == index)]
    assert len(rows) == 1, (name, metric, index)
    return float(rows["value"].iloc[0])


def plane_rotation(n, i, j, theta):
    r = torch.eye(n, dtype=torch.float64)
    r[i, i] = r[j, j] = math.cos(theta)
    r[i, j], r[j, i] = -math.sin(theta), math.sin(theta)
    return r


@pytest.fixture(scope="module")
def factors():
    """An 8-rank 20×8 "q" matrix and a 8×24 "down" matrix with distinct singular values."""
    s = torch.linspace(8, 1, 8, dtype=torch.float64)
    return {Q: (orthonormal(20, 0), s, orthonormal(8, 1)), DOWN: (orthonormal(8, 2), s, orthonormal(24, 3))}


@pytest.fixture(scope="module")
def rotated_pair(tmp_path_factory, factors):
    """B = A with u_1 rotated by THETA towards u_2 (q) and v_1 rotated towards v_2 (down)."""
    root = tmp_path_factory.mktemp("pair")
    a = {name: compose(u[:, :8], s, v[:, :8]) for name, (u, s, v) in factors.items()}
    (uq, sq, vq), (ud, sd, vd) = factors[Q], factors[DOWN]
    b = {
        Q: compose(uq[:, :8] @ plane_rotation(8, 0, 1, THETA), sq, vq),
        DOWN: compose(ud, sd, vd[:, :8] @ plane_rotation(8, 0, 1, THETA)),
    }
    return write_model(root / "a", a), write_model(root / "b", b)


def three_summary_rows(a, b):
    """Summary rows of three pairs: a model against itself, against its rotation, and an update pair."""
    from sftrl.spectral import metrics

    same = metrics.analyse_pair(a, a, k_fractions=FRACTIONS)
    moved = metrics.analyse_pair(a, b, k_fractions=FRACTIONS)
    updates = metrics.compare_updates(a, b, a, k_fractions=FRACTIONS)
    return [
        metrics.summary_row("base_to_sft", "base", "sft-10", same),
        metrics.summary_row("base_to_sft", "base", "sft-20", moved),
        metrics.summary_row("sft_vs_rl", "sft-20", "rl-ppo-from20-s0", updates),
    ]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny bf16 model saved as the workflow saves one."""
    from sftrl.modeling import TinyModelConfig, build_tiny_model, build_tokenizer, save_model

    tiny = TinyModelConfig(hidden_size=64, num_hidden_layers=2, intermediate_size=128, max_position_embeddings=64)
    tokenizer = build_tokenizer(["a b c"], max_number=20)
    path = tmp_path_factory.mktemp("m") / "model"
    save_model(build_tiny_model(tokenizer, tiny, seed=0).to(torch.bfloat16), tokenizer, path)
    return path
