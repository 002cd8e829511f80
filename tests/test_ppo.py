"""PPO: GAE, the value head, thought weighting, learning from a weak SFT checkpoint, resume after a kill,
two processes against one."""

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from rl_start import TASK, run_files

from sftrl import cluster, io
from sftrl.checkpoints import COMPLETE_MARKER
from sftrl.modeling import build_tokenizer, load_model, save_model
from sftrl.rl import check_inputs
from sftrl.rl.ppo import (
    TIMING_KEYS,
    PpoConfig,
    PpoTrainer,
    ValueHead,
    compute_gae,
    normalise,
    settings,
    train_ppo,
)
from sftrl.rl.rollout import Turn, length_groups, score, thought_weights
from sftrl.trainer_args import master_dtype

pytestmark = pytest.mark.usefixtures("one_thread")

# Small, fast and hot: the paper's lr (1e-6) and grad clip (0.01) would show nothing in seconds.
FAST = PpoConfig(
    learning_rate=3e-4,
    ppo_epochs=4,
    updates=4,
    episodes_per_update=8,
    minibatch_size=8,
    max_new_tokens=32,
    save_every=2,
    temperature=1.0,
)


@pytest.fixture(scope="module")
def tokenizer(start_dir):
    return load_model(start_dir)[1]


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


# --- pure parts -------------------------------------------------------------------------------------


def test_gae_by_hand():
    rewards, values, dones = [1.0, -1.0, 5.0, -3.0], [0.5, 0.2, 0.4, 1.0], [False, False, True, True]
    gamma, lam = 0.9, 0.95
    a2 = 5.0 - 0.4  # last turn of the first episode: nothing to bootstrap
    a1 = (-1.0 + gamma * 0.4 - 0.2) + gamma * lam * a2
    a0 = (1.0 + gamma * 0.2 - 0.5) + gamma * lam * a1
    a3 = -3.0 - 1.0  # a one-turn episode: independent of the one before it
    assert compute_gae(rewards, values, dones, gamma, lam) == pytest.approx([a0, a1, a2, a3])
    assert compute_gae(rewards[:3], values[:3], dones[:3], gamma, lam) == pytest.approx([a0, a1, a2])
    assert a0 == pytest.approx(3.324515)
    with pytest.raises(ValueError, match="must end an episode"):
        compute_gae([1.0, 2.0], [0.0, 0.0], [True, False], gamma, lam)


def test_advantage_normalisation():
    normalised = normalise(torch.tensor([1.0, 2.0, 3.0, 10.0]))
    assert normalised.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert normalised.std(correction=0).item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(normalise(torch.tensor([2.0, 2.0, 2.0])), torch.zeros(3))


def test_config_is_strict():
    with pytest.raises(ValueError, match="unknown key"):
        settings({"lr": 1e-4}, seed=0)
    with pytest.raises(ValueError, match="clip_range"):
        PpoConfig(clip_range=0)
    assert settings({"updates": 3}, seed=5) == PpoConfig(updates=3, seed=5)


# --- value head, thought weights, log-probs ----------------------------------------------------------


def test_value_head_shape():
    head = ValueHead(64)
    assert [layer.out_features for layer in head.net if isinstance(layer, torch.nn.Linear)] == [16, 8, 1]
    assert head(torch.randn(5, 64)).shape == (5,)


def test_value_reads_the_last_prompt_token_and_ignores_padding(start_dir, tokenizer):
    model = load_model(start_dir)[0]
    head = ValueHead(model.config.hidden_size)
    prompt = tokenizer("<|user|> J = 10 Q = 10 K = 10 ; target 24 ; cards 3 8 A 2 <|end|><|assistant|>")["input_ids"]
    long_prompt = prompt[:-2] + tokenizer("fail ; value 23 not 24 <|end|><|assistant|>")["input_ids"]
    replies = [
        tokenizer(text)["input_ids"] for text in ("numbers 3 8 1 2 <|end|>", "numbers 3 8 1 2 ; 3 * 8 = 24 <|end|>")
    ]

    def turn(state, reply):
        return Turn(0, state, reply, [1.0] * len(reply), 0.0, True, "")

    def run(turns):
        with torch.no_grad():
            scored = score(model, turns, tokenizer.pad_token_id, 1.0)
            return head(scored.state_hidden), scored.logps

    values, _ = run([turn(prompt, replies[0]), turn(prompt, replies[1])])
    assert values[0] == pytest.approx(values[1].item(), abs=1e-5), "tokens after the prompt do not matter"
    alone, logp_alone = run([turn(prompt, replies[0])])
    padded, logp_padded = run([turn(prompt, replies[0]), turn(long_prompt, replies[1])])
    assert len(long_prompt) > len(prompt) + 2, "the first row is left-padded"
    assert padded[0] == pytest.approx(alone[0].item(), abs=1e-5)
    assert logp_padded[0] == pytest.approx(logp_alone[0].item(), abs=1e-4)
    assert values.shape == (2,)


def test_thought_weights(tokenizer):
    reply = tokenizer("numbers 3 8 1 2 ; 3 * 8 = 24 ; 24 * 1 = 24 ; 24 * 2 = 48 <|end|>")["input_ids"]
    weights = thought_weights(tokenizer, reply, ";", 0.5)
    assert weights == [0.5] * 5 + [1.0] * (len(reply) - 5), "`numbers 3 8 1 2` is the thought"
    assert thought_weights(tokenizer, reply[:5], ";", 0.5) == [1.0] * 5, "no marker: all action"
    paper = build_tokenizer(['{"cards": ["3", "8"], "number": [3, 8], "formula": "3*8=24"}'])
    ids = paper('{"cards": ["3", "8"], "number": [3, 8], "formula": "3*8=24"}')["input_ids"]
    assert thought_weights(paper, ids, '"formula"', 0.5) == [0.5] * 6 + [1.0] * 2


def test_action_logprob_is_the_weighted_sum(start_dir, tokenizer):
    model = load_model(start_dir)[0]
    prompt = tokenizer("<|user|> J = 10 Q = 10 K = 10 ; target 24 ; cards 3 8 A 2 <|end|><|assistant|>")["input_ids"]
    reply = tokenizer("numbers 3 8 1 2 ; 3 * 8 = 24 <|end|>")["input_ids"]
    weights = thought_weights(tokenizer, reply, ";", 0.5)
    with torch.no_grad():
        scored = score(model, [Turn(0, prompt, reply, weights, 0.0, True, "")], tokenizer.pad_token_id, 0.5)
        logits = model(torch.tensor([prompt + reply])).logits[0, len(prompt) - 1 : -1] / 0.5
    token = torch.log_softmax(logits, -1).gather(-1, torch.tensor(reply)[:, None]).squeeze(-1)
    assert scored.logps.item() == pytest.approx((0.5 * token[:5].sum() + token[5:].sum()).item(), abs=1e-4)


def test_length_groups_cost_the_fewest_tokens():
    lengths = [200, 40, 190, 45, 120, 50]
    groups = length_groups(lengths, call_tokens=32)
    assert sorted(i for group in groups for i in group) == list(range(6)), "every turn once"
    assert groups == [[1, 3, 5], [4], [2, 0]]  # 3 x 50 + 120 + 2 x 200 + 3 calls: 766, against 1,232 in one batch

    def cost(partition):
        return sum(len(g) * max(lengths[i] for i in g) + 32 for g in partition)

    # no partition costs less: every split of the length order into runs
    order = sorted(range(6), key=lambda i: lengths[i])
    for cuts in range(1 << 5):
        runs, begin = [], 0
        for end in range(1, 7):
            if end == 6 or cuts >> (end - 1) & 1:
                runs.append(order[begin:end])
                begin = end
        assert cost(groups) <= cost(runs)
    assert length_groups(lengths, call_tokens=10**6) == [[1, 3, 5, 4, 2, 0]], "calls dearer than padding: one batch"
    assert length_groups([], 32) == []


def test_a_minibatch_in_length_groups_has_the_whole_batchs_gradient(start_dir, rl_sets):
    """Scoring in groups changes nothing but the float sums: the buffer and the gradient of a minibatch equal
    those of one padded batch."""
    model, tokenizer = load_model(start_dir)
    trainer = PpoTrainer(model, tokenizer, replace(FAST, minibatch_size=64), TASK, rl_sets["rl_prompts"])
    turns = trainer.rollout().turns
    lengths = {len(t.prompt_ids) + len(t.reply_ids) for t in turns}
    index = torch.arange(len(turns))
    assert len(lengths) > 3 and len(trainer.micro_batches(turns, index)) > 1, "turns of several lengths, grouped"
    buffer = trainer.score_buffer(turns)
    scored, values = trainer.forward(turns, trainer.actor_critic, entropy=True)
    assert torch.allclose(buffer["old_logps"], scored.logps.detach(), atol=1e-4)
    assert torch.allclose(buffer["values"], values.detach(), atol=1e-5)
    assert torch.allclose(buffer["entropy"], scored.entropy, atol=1e-5)

    def gradient(parts):
        trainer.optimizer.zero_grad(set_to_none=True)
        for part in parts:
            trainer.loss(turns, buffer, part)[0].backward()
        return torch.cat([p.grad.flatten() for p in trainer.parameters if p.grad is not None])

    whole, grouped = gradient([index]), gradient(trainer.micro_batches(turns, index))
    assert whole.abs().max() > 0
    # float sums in another order: tiny against the gradient (each part's rounding is relative to its norm)
    assert (grouped - whole).norm() < 3e-5 * whole.norm()


# --- training ------------------------------------------------------------------------------------


def test_ppo_raises_the_reward_of_a_weak_checkpoint(tmp_path, start_dir, rl_sets):
    # The weak start solves nothing, and a reply that leaves cards unused earns no partial credit, so the
    # reward can only rise by failing less badly (legal steps, the right numbers): a slow signal, hence
    # lr 1e-3 and 60 updates. clip 0.2 (paper 0.1): the ratio is per reply, ~25 tokens.
    # Rise (mean of the last 10 updates - the first 10) at seeds 0-3: +1.4, +1.4, +1.9, +1.5.
    cfg = replace(
        FAST, learning_rate=1e-3, updates=60, episodes_per_update=16, minibatch_size=16, clip_range=0.2, save_every=60
    )
    result = train_ppo(start_dir, rl_sets["rl_prompts"], TASK, cfg, run_files(tmp_path))
    rewards = [row["episode_reward"] for row in result.log]
    first, last = sum(rewards[:10]) / 10, sum(rewards[-10:]) / 10
    print("episode reward by update:", [round(r, 2) for r in rewards])
    assert last > first + 0.7, f"mean episode reward did not rise: first 10 {first:.2f}, last 10 {last:.2f}"
    rows = io.read_jsonl(tmp_path / "log")
    assert [row["update"] for row in rows] == list(range(1, 61))
    for key in (
        "success_rate",
        "mean_turns",
        "value_loss",
        "policy_loss",
        "approx_kl",
        "clip_fraction",
        "grad_norm",
        "tokens_per_s",
        "seconds",
        "first_reward",
    ):
        assert key in rows[0]
    for row in rows:  # every turn's prompt and reply, passed once to score and ppo_epochs times to train
        assert row["scored_tokens"] > row["generated_tokens"] > 0
        assert row["trained_tokens"] == cfg.ppo_epochs * row["scored_tokens"]
    out = tmp_path / "out"
    assert not (out / "value_head.safetensors").exists(), "the exported model is a plain causal LM"
    load_model(out)


def test_ppo_trains_a_vision_language_model_on_text(tmp_path, tokenizer, rl_sets, tiny_mllama):
    """Llama 3.2 Vision's class: the value head reads the text decoder's width, and the exported policy keeps
    the start's layout, vision tower and cross-attention layer untouched."""
    from sftrl.spectral.weights import ModelWeights

    start = tmp_path / "start"
    save_model(tiny_mllama(tokenizer), tokenizer, start)
    cfg = replace(FAST, updates=1, episodes_per_update=4, minibatch_size=4, ppo_epochs=1, max_new_tokens=8)
    train_ppo(start, rl_sets["rl_prompts"], TASK, cfg, run_files(tmp_path))
    before, after = ModelWeights(start), ModelWeights(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["architectures"] == [
        "MllamaForConditionalGeneration"
    ]
    assert after.names == before.names
    changed = {name for name in before.names if not before.get(name).equal(after.get(name))}
    assert "language_model.model.layers.0.self_attn.q_proj.weight" in changed
    assert not {name for name in changed if name.startswith(("vision_model.", "multi_modal_projector."))}
    assert not {name for name in changed if name.startswith("language_model.model.layers.1.")}


def test_resume_continues_and_matches_an_uninterrupted_run(tmp_path, start_dir, rl_sets, monkeypatch):
    prompts = rl_sets["rl_prompts"]
    full = train_ppo(start_dir, prompts, TASK, FAST, run_files(tmp_path / "a"))
    assert full.updates == 4 and full.resumed_from is None
    assert sorted(p.name for p in (tmp_path / "a" / "work").iterdir()) == ["checkpoint-2", "checkpoint-4"]

    # Killed during update 3, after the checkpoint of update 2 ...
    step = PpoTrainer.step

    def killed(self):
        if self.update == 2:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(PpoTrainer, "step", killed)
    work = tmp_path / "b" / "work"
    with pytest.raises(KeyboardInterrupt):
        train_ppo(start_dir, prompts, TASK, FAST, run_files(tmp_path / "b"))
    monkeypatch.undo()
    assert len(io.read_jsonl(tmp_path / "b" / "log")) == 2 and not (tmp_path / "b" / "out").exists()
    assert (work / "checkpoint-2" / "value_head.safetensors").is_file()
    # ... or while writing a later checkpoint: one without its marker, and a temporary of an atomic write.
    (work / "checkpoint-4").mkdir()
    (work / "checkpoint-4" / "value_head.safetensors").write_bytes(b"half")
    (work / ".checkpoint-4.abc.tmp").mkdir()

    resumed = train_ppo(start_dir, prompts, TASK, FAST, run_files(tmp_path / "b"))
    assert resumed.resumed_from == work / "checkpoint-2" and resumed.updates == 4
    assert [row["update"] for row in io.read_jsonl(tmp_path / "b" / "log")] == [1, 2, 3, 4]
    assert without_timing(resumed.log) == without_timing(full.log), "same seed, same log, across a resume"
    assert is_marked(work / "checkpoint-4", 4) and not (work / ".checkpoint-4.abc.tmp").exists()
    load_model(tmp_path / "b" / "out")

    again = train_ppo(start_dir, prompts, TASK, FAST, run_files(tmp_path / "b"))
    assert again.resumed_from == work / "checkpoint-4" and len(again.log) == 4, "a finished run only exports"


def test_kl_penalty_to_the_start_model(tmp_path, start_dir, rl_sets):
    cfg = replace(FAST, updates=1, kl_coef=0.1)
    result = train_ppo(start_dir, rl_sets["rl_prompts"], TASK, cfg, run_files(tmp_path / "kl"))
    assert result.log[0]["kl_to_start"] >= 0
    without = train_ppo(
        start_dir, rl_sets["rl_prompts"], TASK, replace(cfg, kl_coef=0.0), run_files(tmp_path / "no-kl")
    )
    assert "kl_to_start" not in without.log[0]


def is_marked(path, step):
    return json.loads((path / COMPLETE_MARKER).read_text())["step"] == step


def test_inputs_are_checked_before_any_work(tmp_path, start_dir, rl_sets):
    prompts = tmp_path / "rl_prompts.jsonl"
    io.write_jsonl(prompts, rl_sets["rl_prompts"][:4])
    config = {"seed": 0, "task": {"style": "compact"}, "rl": {"ppo": {"updates": 2}}}
    inputs = check_inputs("ppo", config, 3, start_dir, prompts)
    assert inputs.cfg.seed == 3 and inputs.cfg.updates == 2 and inputs.task.style == "compact"
    with pytest.raises(ValueError, match=r"rl.ppo: unknown key"):
        check_inputs("ppo", {**config, "rl": {"ppo": {"update": 2}}}, 0, start_dir, prompts)
    with pytest.raises(ValueError, match="unknown RL algorithm"):
        check_inputs("a2c", config, 0, start_dir, prompts)
    with pytest.raises(ValueError, match="does not exist"):
        check_inputs("ppo", config, 0, tmp_path / "missing", prompts)
    with pytest.raises(ValueError, match="target 24 but the task says 12"):
        check_inputs("ppo", {**config, "task": {"style": "compact", "target": 12}}, 0, start_dir, prompts)

    script = [
        sys.executable,
        str(ROOT / "scripts" / "rl.py"),
        "--config",
        json.dumps(config),
        "--seed",
        "0",
        "--start",
        str(tmp_path / "missing"),
        "--prompts",
        str(prompts),
        "--out",
        str(tmp_path / "out"),
        "--work-dir",
        str(tmp_path / "work"),
        "--log",
        str(tmp_path / "log"),
    ]
    done = subprocess.run([*script, "--algorithm", "ppo"], capture_output=True, text=True)
    assert done.returncode == 2 and "missing" in done.stderr and "does not exist" in done.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_bf16_ppo_trains_float32_master_weights(tmp_path, start_dir, rl_sets):
    """At the paper's lr (1e-6) an update of bf16 weights rounds away (a weight near 0.02 has a rounding
    step near 1e-4); with float32 masters under bf16 autocast the update is the float32 one. Same start,
    same rollout: only the precision differs."""
    half = tmp_path / "bf16"
    model, tokenizer = load_model(start_dir)
    model.to(torch.bfloat16).save_pretrained(half)
    tokenizer.save_pretrained(half)
    cfg = replace(FAST, learning_rate=1e-6, ppo_epochs=1, updates=1, save_every=1)

    def trainer(weights: str, compute):
        model, tokenizer = load_model(half, weights)
        return PpoTrainer(model, tokenizer, cfg, TASK, rl_sets["rl_prompts"], compute_dtype=compute)

    full = trainer("float32", None)
    turns = full.rollout().turns

    def update(run: PpoTrainer) -> torch.Tensor:
        before = {name: p.detach().float().clone() for name, p in run.model.named_parameters()}
        run.optimise(turns, run.score_buffer(turns))
        return torch.cat([(p.detach().float() - before[n]).flatten() for n, p in run.model.named_parameters()])

    reference = update(full)
    mixed = update(trainer(master_dtype("bfloat16"), torch.bfloat16))
    plain_bf16 = update(trainer("bfloat16", None))
    moved = reference != 0
    assert moved.float().mean() > 0.5
    assert (mixed[moved].sign() == reference[moved].sign()).float().mean() > 0.9
    assert mixed.norm().item() == pytest.approx(reference.norm().item(), rel=0.1)
    assert (plain_bf16 != 0).float().mean() < 0.01  # what training the bf16 weights themselves does

    result = train_ppo(half, rl_sets["rl_prompts"], TASK, cfg, run_files(tmp_path), dtype="bfloat16")
    assert result.updates == 1
    assert load_model(tmp_path / "out", "auto")[0].dtype == torch.bfloat16  # exported as the model came
    assert load_model(tmp_path / "work" / "checkpoint-1" / "model", "auto")[0].dtype == torch.float32  # masters


# --- several processes ---------------------------------------------------------------------------

# Two groups of episodes, two scoring minibatches per turn set: each process has its share of every stage.
SPLIT = replace(FAST, updates=2, episodes_per_update=8, generation_batch_size=4, minibatch_size=4, save_every=1)


def launch_two(tmp_path: Path, start: Path, prompts: Path, name: str) -> subprocess.CompletedProcess:
    """scripts/rl.py under the workflow's own launcher: two processes on the CPU (gloo), one thread each."""
    config = {"seed": 0, "task": asdict(TASK), "rl": {"ppo": {k: v for k, v in asdict(SPLIT).items() if k != "seed"}}}
    command = [
        *cluster.launcher(0, cpu_processes=2, cpu_threads=1).split(),
        str(ROOT / "scripts" / "rl.py"),
        *("--config", json.dumps(config), "--algorithm", "ppo", "--seed", "0", "--start", str(start)),
        *("--prompts", str(prompts), "--out", str(tmp_path / name / "out")),
        *("--work-dir", str(tmp_path / "work"), "--log", str(tmp_path / name / "log")),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_processes_train_as_one_process_with_twice_the_accumulation(tmp_path, start_dir, rl_sets):
    """PPO under `accelerate launch --num_processes 2`: the rollout, its scores and every update equal one
    process's with gradient_accumulation_steps x 2 (the documented batch split) up to the order of float
    sums; killed after its first checkpoint, the two-process run resumes and ends as it did uninterrupted."""
    prompts = tmp_path / "rl_prompts.jsonl"
    io.write_jsonl(prompts, rl_sets["rl_prompts"])
    two = launch_two(tmp_path, start_dir, prompts, "two")
    one = train_ppo(
        start_dir,
        rl_sets["rl_prompts"],
        TASK,
        replace(SPLIT, gradient_accumulation_steps=2),
        run_files(tmp_path / "one"),
    )
    two_log = io.read_jsonl(tmp_path / "two" / "log")
    assert len(two_log) == 2 and "resuming" not in two.stderr
    for mine, theirs in zip(without_timing(two_log), without_timing(one.log), strict=False):
        for key in ("turns", "generated_tokens", "episode_reward", "success_rate", "mean_turns", "lr"):
            assert mine[key] == theirs[key], key  # the same episodes, replies and rewards
        for key in ("policy_loss", "value_loss", "approx_kl", "grad_norm"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key
    two_model, one_model = load_model(tmp_path / "two" / "out")[0], load_model(tmp_path / "one" / "out")[0].state_dict()
    start = load_model(start_dir)[0].state_dict()
    moved = 0
    for name, weight in two_model.state_dict().items():
        assert torch.allclose(weight, one_model[name], atol=1e-5), name
        moved += not torch.equal(weight, start[name])
    assert moved > len(start) // 2, "the updates changed the weights"

    # Killed during update 2, after the checkpoint of update 1, with a half-written checkpoint 2.
    shutil.rmtree(tmp_path / "work" / "checkpoint-2")
    (tmp_path / "work" / ".checkpoint-2.abc.tmp").mkdir()
    again = launch_two(tmp_path, start_dir, prompts, "again")
    assert "resuming from" in again.stderr and "(update 1 of 2)" in again.stderr
    assert without_timing(io.read_jsonl(tmp_path / "again" / "log")) == without_timing(two_log)
    resumed = load_model(tmp_path / "again" / "out")[0].state_dict()
    assert all(torch.equal(weight, resumed[name]) for name, weight in two_model.state_dict().items())


# --- as the authors ran it ---------------------------------------------------------------------------


def trainer_on(start_dir, rl_sets, **changes) -> PpoTrainer:
    model, tokenizer = load_model(start_dir)
    cfg = replace(FAST, updates=4, episodes_per_update=4, max_new_tokens=16, minibatch_size=1, **changes)
    return PpoTrainer(model, tokenizer, cfg, TASK, rl_sets["rl_prompts"])


def test_accumulation_across_epochs_is_one_step_from_the_sampling_policy(start_dir, rl_sets):
    """Qwen's regime in small: 4 epochs of N one-turn minibatches, accumulation 4N. Counted per epoch that
    is 4 steps, later epochs scored by an updated policy; counted across epochs (as accelerate and DeepSpeed
    counted it for the authors) one step, every minibatch scored by the policy that sampled it."""
    per_epoch = trainer_on(start_dir, rl_sets, gradient_accumulation_steps=64)
    turns = per_epoch.rollout().turns
    n = len(turns)
    per_epoch = trainer_on(start_dir, rl_sets, gradient_accumulation_steps=4 * n)
    across = trainer_on(start_dir, rl_sets, gradient_accumulation_steps=4 * n, accumulation="across_epochs")
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert [len(g) for g in per_epoch.step_groups(n, generator())] == [n] * 4
    assert [len(g) for g in across.step_groups(n, generator())] == [4 * n]
    assert [
        len(g)
        for g in trainer_on(
            start_dir, rl_sets, gradient_accumulation_steps=3, accumulation="across_epochs"
        ).step_groups(5, generator())
    ] == [3] * 6 + [2]
    stats = {
        name: run.optimise(turns, run.score_buffer(turns)) for name, run in (("per", per_epoch), ("across", across))
    }
    assert stats["across"]["approx_kl"] == pytest.approx(0.0, abs=1e-6) and stats["across"]["clip_fraction"] == 0
    assert stats["per"]["approx_kl"] > 1e-6  # epochs 2-4 were scored after a step


def test_no_clip_steps_with_the_gradient_as_it_is(start_dir, rl_sets):
    """max_grad_norm None (the authors' 0.01 did not apply under DeepSpeed): the optimizer steps with the
    raw gradient; a clip scales it to the clip's norm."""
    turns = trainer_on(start_dir, rl_sets).rollout().turns
    for clip in (1e-6, None):
        run = trainer_on(start_dir, rl_sets, max_grad_norm=clip)
        norms: list[float] = []
        step = run.optimizer.step

        def measured(*args, run=run, norms=norms, step=step, **kwargs):
            norms.append(sum(p.grad.norm() ** 2 for p in run.parameters if p.grad is not None).item() ** 0.5)
            return step(*args, **kwargs)

        run.optimizer.step = measured
        stats = run.optimise(turns, run.score_buffer(turns))
        if clip is None:
            assert stats["grad_norm"] == pytest.approx(sum(norms) / len(norms), rel=1e-4) and max(norms) > 1e-3
        else:
            assert max(norms) == pytest.approx(clip, rel=1e-3) and all(n <= clip * 1.001 for n in norms)


def test_the_sixth_reply_is_paid_minus_one_unread_and_truncates(start_dir, rl_sets):
    """episode_end truncated_sixth_reply (TASK has 2 attempts, so the extra reply is the third): after the
    last failure the model is asked again with that failure's feedback; the reply is paid -1 whatever it
    says, is not a success, and does not end the return: GAE bootstraps into the next episode."""
    run = trainer_on(start_dir, rl_sets, episode_end="truncated_sixth_reply")
    rollout = run.rollout()
    failed = [e for e, ok in enumerate(rollout.successes) if not ok]
    assert failed, "the weak start fails episodes"
    by_episode: dict[int, list] = {}
    for turn in rollout.turns:
        by_episode.setdefault(turn.episode, []).append(turn)
    for e in failed:
        turns = by_episode[e]
        assert len(turns) == TASK.max_attempts + 1 and rollout.attempts[e] == 3
        assert (turns[-1].reward, turns[-1].done, turns[-1].category) == (-1.0, False, "step_limit")
        assert all(not t.done for t in turns)
        assert rollout.episode_rewards[e] == pytest.approx(sum(t.reward for t in turns))
        assert len(turns[-1].prompt_ids) > len(turns[-2].prompt_ids)  # the last failure's feedback is in it
    buffer = run.score_buffer(rollout.turns)
    dones = [t.done for t in rollout.turns]
    dones[-1] = True
    expected = compute_gae(
        [t.reward for t in rollout.turns], buffer["values"].tolist(), dones, FAST.gamma, FAST.gae_lambda
    )
    assert torch.allclose(buffer["returns"] - buffer["values"], torch.tensor(expected), atol=1e-5)
    terminal = trainer_on(start_dir, rl_sets).rollout()
    assert max(terminal.attempts) == TASK.max_attempts and terminal.turns[-1].done


def test_the_authors_cosine_annealing_stepped_once_per_process(tmp_path, start_dir, rl_sets):
    """CosineAnnealingLR over `updates` stepped 4 times an update (inferred: once per process of 4): with 4
    updates the rate is at its minimum after the first update and back at its peak after the second."""
    cfg = replace(
        FAST,
        updates=2,
        episodes_per_update=2,
        max_new_tokens=8,
        ppo_epochs=1,
        save_every=2,
        lr_scheduler_type="cosine_annealing",
        min_learning_rate=1e-9,
        scheduler_steps_per_update=4,
    )
    cfg = replace(cfg, updates=2)
    trainer = trainer_on(
        start_dir, rl_sets, lr_scheduler_type="cosine_annealing", min_learning_rate=1e-9, scheduler_steps_per_update=4
    )
    rates = []
    for _ in range(3):
        rates.append(trainer.scheduler.get_last_lr()[0])
        for _ in range(trainer.cfg.scheduler_steps_per_update):
            trainer.scheduler.step()
    assert rates == pytest.approx([FAST.learning_rate, 1e-9, FAST.learning_rate], rel=1e-6)
    result = train_ppo(start_dir, rl_sets["rl_prompts"], TASK, replace(cfg, updates=4), run_files(tmp_path))
    assert [row["lr"] for row in result.log] == pytest.approx([3e-4, 1e-9, 3e-4, 1e-9], rel=1e-6)


def test_rollouts_can_sample_as_the_start_checkpoint_configures(start_dir):
    from transformers import GenerationConfig

    from sftrl.evaluate.engine import Sampling
    from sftrl.rl.ppo import rollout_sampling

    model = load_model(start_dir)[0]
    cfg = replace(FAST, temperature=0.2, decoding="generation_config")
    assert rollout_sampling(replace(cfg, decoding="settings"), model) == Sampling(0.2, 1.0)
    model.generation_config = GenerationConfig(
        do_sample=True, temperature=0.7, top_p=0.8, top_k=20, repetition_penalty=1.05
    )
    assert rollout_sampling(cfg, model) == Sampling(0.2, 0.8, 20, 1.05)  # Qwen2.5-Instruct's, at T 0.2
    model.generation_config = GenerationConfig(do_sample=False)
    with pytest.raises(ValueError, match="decodes greedily"):
        rollout_sampling(cfg, model)
    with pytest.raises(ValueError, match="accumulation must be one of"):
        PpoConfig(accumulation="sometimes")


def test_exports_along_the_run_survive_a_kill_and_a_rerun(tmp_path, start_dir, rl_sets, monkeypatch):
    """The policy after updates 1 and 3 of 4 (RunFiles.exports), in the model's dtype: killed during update
    3, its outputs deleted as Snakemake deletes a rerun job's, the run resumes from update 2, puts back
    update 1 from its work directory and writes update 3, as an uninterrupted run does."""
    from sftrl.training_run import RunFiles

    def files(root):
        return RunFiles(root / "out", root / "work", root / "log", {"run": "ppo"}, {1: root / "u1", 3: root / "u3"})

    prompts = rl_sets["rl_prompts"]
    full = files(tmp_path / "a")
    train_ppo(start_dir, prompts, TASK, FAST, full)
    step = PpoTrainer.step

    def killed(self):
        if self.update == 2:
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(PpoTrainer, "step", killed)
    again = files(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):
        train_ppo(start_dir, prompts, TASK, FAST, again)
    monkeypatch.undo()
    assert (tmp_path / "b" / "u1").is_dir() and not (tmp_path / "b" / "u3").exists()
    shutil.rmtree(tmp_path / "b" / "u1")
    train_ppo(start_dir, prompts, TASK, FAST, again)
    for update in (1, 3):
        mine, theirs = (load_model(root / f"u{update}")[0].state_dict() for root in (tmp_path / "b", tmp_path / "a"))
        assert all(torch.equal(mine[n], theirs[n]) for n in theirs), update
        assert json.loads((tmp_path / "b" / f"u{update}" / "provenance.json").read_text())["update"] == update
    assert not all(
        torch.equal(a, b)
        for a, b in zip(
            load_model(tmp_path / "b" / "u1")[0].state_dict().values(),
            load_model(tmp_path / "b" / "u3")[0].state_dict().values(),
            strict=False,
        )
    )
