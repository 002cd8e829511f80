"""Shared fixtures: the repository root and the default config."""

import json
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Each of the two test workers computes on one thread: two workers with two threads each on two
    cores wait for each other (jobs that a test starts keep their own thread counts)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """The end-to-end workflow tests first: each takes minutes, and the workers take test files in this
    order, so started last they would leave one worker running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@pytest.fixture(scope="module")
def rl_sets():
    """The data sets of the RL tests (rl_start.DATA), built once a module."""
    from rl_start import DATA, TASK

    from sftrl.data import build_datasets

    return build_datasets(0, TASK, DATA)


@pytest.fixture(scope="module")
def start_dir(tmp_path_factory, rl_sets):
    """The weak tiny start model of the RL tests (rl_start.make_start_dir), built once a module."""
    from rl_start import make_start_dir

    return make_start_dir(tmp_path_factory.mktemp("start"), rl_sets)


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


def tiny_mllama_config(
    vocab_size, bos, eos, pad, vision_layers=1, text_layers=3, intermediate_size=256, max_positions=512, **extra
):
    """A tiny MllamaConfig laid out as Llama 3.2 Vision: a vision tower, and a cross-attention layer (1)
    among the decoder layers."""
    from transformers import MllamaConfig

    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=vision_layers,
        num_global_layers=1,
        attention_heads=2,
        intermediate_layers_indices=[0],
        vision_output_dim=64,  # hidden_size x (1 + intermediate layers)
        image_size=28,
        patch_size=14,
    )
    text = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=intermediate_size,
        num_hidden_layers=text_layers,
        cross_attention_layers=[1],
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    return MllamaConfig(vision_config=vision, text_config=text, **extra)


@pytest.fixture(scope="session")
def tiny_mllama():
    """A builder of tiny random MllamaForConditionalGeneration models sized to a tokenizer, three decoder
    layers."""
    import torch
    from transformers import MllamaForConditionalGeneration

    def build(tokenizer, seed: int = 0):
        # an int BOS is required; the word-level tokenizer has none
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        config = tiny_mllama_config(len(tokenizer), eos, eos, pad)
        torch.manual_seed(seed)
        return MllamaForConditionalGeneration(config)

    return build
