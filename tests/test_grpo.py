"""GRPO through TRL: the verifier as reward function, config checks, learning, saving and resuming."""

import json
from dataclasses import replace

import pytest
from rl_start import TASK, run_files

from sftrl import cards, io
from sftrl.checkpoints import COMPLETE_MARKER
from sftrl.config import TaskConfig
from sftrl.modeling import load_model
from sftrl.rl import check_inputs
from sftrl.rl.grpo import GrpoConfig, prompt_dataset, reward_function, train_grpo, trainer_config
from sftrl.training_run import RunFiles

pytestmark = pytest.mark.usefixtures("one_thread")

SINGLE = TaskConfig(target=24, style="compact", max_attempts=1)
FAST = GrpoConfig(
    learning_rate=1e-3,
    lr_scheduler_type="constant",
    per_device_train_batch_size=64,
    num_generations=8,
    max_steps=4,
    save_every=2,
    max_completion_length=32,
)


def test_reward_is_the_verifiers(rl_sets):
    record = rl_sets["sft"][0]
    reward = reward_function(TASK)
    right = [{"role": "assistant", "content": record["completion"][0]["content"]}]
    garbage = [{"role": "assistant", "content": "numbers banana"}]
    row = prompt_dataset([record], TASK)[0]
    assert json.loads(row["rule"]) == record["rule"]
    scores = reward(
        prompts=[record["prompt"]] * 3,
        completions=[right, garbage, right[0]["content"]],
        hand=[row["hand"]] * 3,
        rule=[row["rule"], row["rule"], record["rule"]],
        target=[24] * 3,
        trainer_state=None,
    )
    expected = [
        cards.verify(c, record["hand"], cards.Rule(**record["rule"]), 24).reward
        for c in (right[0]["content"], "numbers banana", right[0]["content"])
    ]
    assert scores == expected and scores[0] == 5.0 and scores[1] < 0


def test_config_is_checked_before_any_work(tmp_path, start_dir, rl_sets):
    with pytest.raises(ValueError, match="must be a multiple of num_generations"):
        GrpoConfig(per_device_train_batch_size=12, num_generations=8)
    with pytest.raises(ValueError, match="num_generations must be at least 2"):
        GrpoConfig(num_generations=1)
    prompts = tmp_path / "rl_prompts.jsonl"
    io.write_jsonl(prompts, rl_sets["rl_prompts"][:4])
    config = {"seed": 0, "task": {"style": "compact"}, "rl": {"grpo": {"per_device_train_batch_size": 6}}}
    with pytest.raises(ValueError, match=r"rl.grpo: .*multiple of num_generations \(8\)"):
        check_inputs("grpo", config, 0, start_dir, prompts)
    with pytest.raises(ValueError, match="unknown key"):
        check_inputs("grpo", {**config, "rl": {"grpo": {"kl": 0.1}}}, 0, start_dir, prompts)
    args = trainer_config(FAST, tmp_path)
    assert (args.beta, args.loss_type, args.scale_rewards, args.gradient_checkpointing, args.use_vllm) == (
        0.0,
        "dapo",
        "group",
        False,
        False,
    )
    assert args.generation_batch_size == 64 and args.steps_per_generation == 1 and args.report_to == []


def test_grpo_learns_saves_and_resumes(tmp_path, start_dir, rl_sets):
    prompts = rl_sets["rl_prompts"]
    cfg = replace(FAST, max_steps=40, save_every=20)
    result = train_grpo(start_dir, prompts, SINGLE, cfg, run_files(tmp_path))
    assert result.steps == 40 and result.resumed_from is None
    rows = io.read_jsonl(tmp_path / "log")
    assert [row["step"] for row in rows] == list(range(1, 41))
    rewards = [row["reward"] for row in rows]
    print("reward by step:", [round(r, 2) for r in rewards])
    assert sum(rewards[-6:]) / 6 > sum(rewards[:6]) / 6 + 0.2, "the mean reward rises"
    _model, _ = load_model(tmp_path / "out")

    # Lose the last checkpoint mid-write and the output: the rerun resumes from step 20.
    work = tmp_path / "work"
    assert sorted(p.name for p in work.glob("checkpoint-*")) == ["checkpoint-20", "checkpoint-40"]
    (work / "checkpoint-40" / COMPLETE_MARKER).unlink()
    (tmp_path / "log").unlink()
    resumed = train_grpo(start_dir, prompts, SINGLE, cfg, RunFiles(tmp_path / "out2", work, tmp_path / "log"))
    assert resumed.resumed_from == work / "checkpoint-20" and resumed.steps == 40
    assert [row["step"] for row in io.read_jsonl(tmp_path / "log")] == list(range(1, 41))
    assert json.loads((work / "checkpoint-40" / COMPLETE_MARKER).read_text())["step"] == 40
    load_model(tmp_path / "out2")

    done = train_grpo(start_dir, prompts, SINGLE, cfg, RunFiles(tmp_path / "out3", work, tmp_path / "log"))
    assert done.resumed_from == work / "checkpoint-40" and (tmp_path / "out3" / "config.json").is_file()


def test_bf16_model_trains_float32_masters_and_is_exported_in_bf16(tmp_path, start_dir, rl_sets):
    """A bf16 start is trained as float32 master weights (checkpoints keep them, every tensor takes its
    small step) and the policy is written back in bf16."""
    import torch
    from safetensors.torch import load_file

    half = tmp_path / "bf16"
    model, tokenizer = load_model(start_dir)
    model.to(torch.bfloat16).save_pretrained(half)
    tokenizer.save_pretrained(half)
    cfg = replace(FAST, learning_rate=1e-6, max_steps=1, save_every=1, per_device_train_batch_size=16)
    train_grpo(half, rl_sets["rl_prompts"], SINGLE, cfg, run_files(tmp_path), dtype="bfloat16")
    masters = load_file(tmp_path / "work" / "checkpoint-1" / "model.safetensors")
    start = load_file(half / "model.safetensors")
    assert {t.dtype for t in masters.values()} == {torch.float32}
    assert all(not torch.equal(t, start[name].float()) for name, t in masters.items())
    assert load_model(tmp_path / "out", "auto")[0].dtype == torch.bfloat16


def test_the_policy_is_exported_along_the_run(tmp_path, start_dir, rl_sets):
    """RunFiles.exports: the policy after step 1 of 2 is its own Hugging Face directory, stamped with its step,
    neither the start nor the final policy; a rerun of the finished run puts it back where it was deleted."""
    import shutil

    from safetensors.torch import load_file

    files = RunFiles(tmp_path / "out", tmp_path / "work", tmp_path / "log", {"run": "grpo"}, {1: tmp_path / "u1"})
    cfg = replace(FAST, max_steps=2, save_every=1, per_device_train_batch_size=16, num_generations=4)
    train_grpo(start_dir, rl_sets["rl_prompts"], TASK, cfg, files)
    record = json.loads((tmp_path / "u1" / "provenance.json").read_text())
    assert (record["update"], record["step"], record["run"]) == (1, 1, "grpo")
    exported, start, final = (
        load_file(path / "model.safetensors") for path in (tmp_path / "u1", start_dir, tmp_path / "out")
    )
    assert any(not exported[n].equal(start[n]) for n in start) and any(not exported[n].equal(final[n]) for n in final)
    load_model(tmp_path / "u1")
    shutil.rmtree(tmp_path / "u1")  # as Snakemake deletes a rerun job's outputs
    train_grpo(start_dir, rl_sets["rl_prompts"], TASK, cfg, files)
    assert load_file(tmp_path / "u1" / "model.safetensors").keys() == exported.keys()
    assert all(load_file(tmp_path / "u1" / "model.safetensors")[n].equal(t) for n, t in exported.items())
