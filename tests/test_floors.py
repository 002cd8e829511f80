import json
import math

import pytest
import torch
from safetensors.torch import save_file

from sftrl.floors import Rates, RunWork, Shapes, Work, count_work, floor_rows, message_tokens


def write_model(folder, tied: bool) -> None:
    folder.mkdir()
    tensors = {
        "model.embed_tokens.weight": torch.zeros(100, 8),
        "model.layers.0.self_attn.q_proj.weight": torch.zeros(8, 8),
        "model.layers.0.mlp.up_proj.weight": torch.zeros(16, 8),
        "model.layers.0.input_layernorm.weight": torch.zeros(8),
    }
    if not tied:
        tensors["lm_head.weight"] = torch.zeros(100, 8)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"tie_word_embeddings": tied}))


@pytest.mark.parametrize("tied", [True, False])
def test_a_token_passes_through_the_layers_and_the_head_once(tmp_path, tied):
    """The embedding is a lookup; it costs a product only as the tied head. Norms are not matrices."""
    write_model(tmp_path / "m", tied)
    assert Shapes.of_model(tmp_path / "m").weights == 64 + 128 + 800


def test_a_floor_prices_each_kind_of_work():
    shapes = Shapes(((10, 10),))
    rates = Rates(matmul_flops=1000.0, svd_s=0.5, job_start_s=2.0, cold_start_s=3.0)
    work = Work(processes=3, tokens_trained=5, tokens_forward=7, svds=4)
    # 3 processes x 2 s + (6 x 5 + 2 x 7) x 100 FLOPs / 1000 FLOP/s + 4 SVDs x 0.5 s
    assert work.floor_s(rates, shapes) == pytest.approx(6 + 4.4 + 2)
    assert work.describe() == "3 processes, 5 tokens trained, 7 tokens forward, 4 SVDs"


def split_words(texts, add_special_tokens):
    return {"input_ids": [text.split() for text in texts]}


def write_jsonl(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_work_is_counted_from_the_runs_outputs(tmp_path):
    episode = {"system": "be brief", "turns": [{"user": "cards 1 2", "reply": "1 + 2"}, {"user": "fail", "reply": "2"}]}
    write_jsonl(tmp_path / "eval" / "base" / "ood" / "samples.jsonl", [episode, {**episode, "system": None}])
    write_jsonl(tmp_path / "sft" / "history.jsonl", [{"num_tokens": 10}, {"loss": 1.0}, {"num_tokens": 40}])
    write_jsonl(
        tmp_path / "rl" / "rl-ppo-from5-s0" / "history.jsonl",
        [{"scored_tokens": 30, "trained_tokens": 120}, {"scored_tokens": 20, "trained_tokens": 80}],
    )
    write_jsonl(tmp_path / "rl" / "rl-grpo-from5-s0" / "history.jsonl", [{"num_tokens": 9}, {"num_tokens": 25}])
    for model in ("a", "b"):
        (tmp_path / "work" / "svd" / model).mkdir(parents=True)
        for matrix in ("q", "k", "v"):
            (tmp_path / "work" / "svd" / model / f"{matrix}.safetensors").write_bytes(b"")
    work = count_work(tmp_path, {"eval": 2, "rl": 2, "spectrum": 6, "report": 1}, split_words)
    assert (
        message_tokens(tmp_path / "eval" / "base" / "ood" / "samples.jsonl", split_words) == 10 + 8
    )  # the system prompt once
    assert work.stages["eval"] == Work(processes=2, tokens_forward=18)
    assert work.stages["sft"].tokens_trained == 40  # TRL's count is cumulative: its last value
    assert work.stages["rl"] == Work(processes=2, tokens_forward=2 * 50 + 25, tokens_trained=200 + 25)
    assert work.stages["spectrum"] == Work(processes=6, svds=6)
    assert work.stages["report"] == Work(processes=1)


def test_floor_rows_set_each_stages_time_against_its_floor():
    shapes = Shapes(((10, 10),))
    rates = Rates(matmul_flops=1000.0, svd_s=0.5, job_start_s=2.0, cold_start_s=3.0)
    work = RunWork({"eval": Work(processes=1, tokens_forward=5)})
    rows = floor_rows(
        [{"stage": "eval", "jobs": 1, "total_s": 9.0}, {"stage": "report", "jobs": 2, "total_s": 8.0}],
        work,
        rates,
        shapes,
    )
    assert [(row["floor_s"], row["ratio"]) for row in rows] == [(3.0, 3.0), (4.0, 2.0)]


def test_rates_are_measured_on_this_machine():
    rates = Rates.measure(Shapes(((64, 32), (32, 64))), rows=64, repeats=3)
    assert 1e7 < rates.matmul_flops < 1e13  # between a slow core and a whole GPU: a FLOP/s, not a time
    assert 0 < rates.svd_s < 1
    assert 0.05 < rates.cold_start_s < 60  # a fresh Python that imports torch
    assert 0 < rates.job_start_s < rates.cold_start_s  # a job forked from a process that imported it
    assert all(math.isfinite(value) for value in (rates.matmul_flops, rates.svd_s, rates.job_start_s))
