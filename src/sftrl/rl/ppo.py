"""PPO in the multi-turn GeneralPoints environment, as the paper ran it (TRL no longer ships a PPO trainer).

Actor-critic on one backbone: the causal LM is the policy, and a small MLP (`ValueHead`) reads the last
hidden state of the last prompt token, i.e. the conversation so far, as the state value. One action is one
reply; its log-prob is the sum of its token log-probs, with the tokens of the "thought" (before the
formula, see `rollout.thought_weights`) weighted by `thought_weight`. Each update plays
`episodes_per_update` episodes of up to `task.max_attempts` turns, estimates per-turn advantages with GAE
across the turns of each episode, and optimises the clipped surrogate plus a clipped value loss for
`ppo_epochs` passes over shuffled minibatches. A minibatch is scored in groups of turns of similar length
(`rollout.length_groups`), so a first turn is not padded to a fifth turn's whole conversation.

Runs in one process, or data-parallel in several under `accelerate launch` (one per GPU, or gloo on a CPU;
DDP, or DeepSpeed ZeRO-2 when `deepspeed` names a config; see `sftrl.rl.parallel` for the split, which keeps
a W-process run equal to one process with W times the accumulation). Every random draw is seeded from
(seed, update, ...), and a checkpoint holds policy, value head, optimizer, scheduler and the log, so a run
killed after a checkpoint resumes and writes the same log as an uninterrupted one (on CPU). Checkpoints are
`work_dir/checkpoint-{update}`, written atomically and marked complete (see `sftrl.rl`); the policy in each
is a plain Hugging Face directory (`checkpoint-{update}/model`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, get_scheduler

from sftrl import io, tracking, training_run
from sftrl.checkpoints import keep_newest, mark_complete, model_dir_identity
from sftrl.config import TaskConfig, from_dict
from sftrl.ds_config import resolve_for_ppo
from sftrl.evaluate.engine import DECODINGS, Sampling
from sftrl.modeling import DTYPES, check_model_dir, load_model
from sftrl.rl import check_prompts
from sftrl.rl.parallel import Processes, launched_processes, to_cpu
from sftrl.rl.rollout import EPISODE_ENDS, Rollout, Turn, length_groups, play, score
from sftrl.trainer_args import OptimiserConfig, master_dtype

log = logging.getLogger(__name__)

# cosine, linear, constant: transformers' schedules over `updates` steps, corrected. cosine_annealing: torch's
# CosineAnnealingLR (T_max = updates, eta_min = min_learning_rate), periodic past T_max, as the authors built
# it (rl/trainer/*_trainer.py); stepped `scheduler_steps_per_update` times an update.
SCHEDULERS = ("cosine", "linear", "constant", "cosine_annealing")
# How the minibatches of an update's PPO epochs make optimizer steps. per_epoch: each epoch's passes are
# grouped into steps of `gradient_accumulation_steps` (a short last group steps too), corrected. across_epochs:
# the count runs on through all epochs, as accelerate and DeepSpeed counted it in the authors' runs (inferred
# from accelerate 1.3.0's source: DeepSpeed's engine steps on its own micro-step count): with 4 epochs of 32
# turns and accumulation 128 (Qwen) one optimizer step an update, after every minibatch was scored by the
# policy that sampled it, so the ratio is 1 and its clip never acts.
ACCUMULATIONS = ("per_epoch", "across_epochs")
# A forward call's fixed cost in tokens, against which grouping turns by length weighs the padding it saves
# (a forward and backward pass of the tiny model on CPU: about 20 tokens' time).
CALL_TOKENS = 32
# Wall-clock fields of a log row; every other field is the same for the same seed (on CPU).
TIMING_KEYS = ("seconds", "rollout_seconds", "tokens_per_s")


@dataclass(frozen=True)
class PpoConfig(OptimiserConfig):
    """PPO settings: the optimiser fields every stage shares (`OptimiserConfig`), then PPO's own. The
    defaults are the `rl.ppo` section of config.yaml (the tiny CPU run); the paper's values are noted where
    they differ.

    `minibatch_size` turns go through one forward/backward; an optimizer step follows every
    `gradient_accumulation_steps` minibatches. The lr schedule steps once per update.
    """

    learning_rate: float = 2e-4  # paper 1e-6
    min_learning_rate: float = 0.0  # cosine_annealing's eta_min (the authors' 1e-9)
    scheduler_steps_per_update: int = 1  # the authors' 4 (one per process, inferred)
    updates: int = 10  # paper: 100 (Llama), 300 (Qwen)
    episodes_per_update: int = 16  # paper: 4 GPUs x 128 (Llama), 4 x 32 (Qwen) env steps (turns)
    minibatch_size: int = 32  # per process
    gradient_accumulation_steps: int = 1  # paper 128; per process (a step takes this x processes minibatches)
    ppo_epochs: int = 1  # paper 4
    clip_range: float = 0.2  # paper 0.1 (per-reply ratios of a tiny model move fast; 0.1 clips most)
    value_clip_range: float = 0.2
    value_loss_coef: float = 0.5
    gamma: float = 0.9
    gae_lambda: float = 0.95
    accumulation: str = "per_epoch"  # ACCUMULATIONS
    episode_end: str = "terminal"  # rollout.EPISODE_ENDS
    decoding: str = "settings"  # settings: temperature and top_p; generation_config: the start's, at this temperature
    temperature: float = 1.0  # paper 0.2
    top_p: float = 1.0
    max_new_tokens: int = 32  # paper 512
    generation_batch_size: int = 64  # episodes played together; the groups are shared out among processes
    kl_coef: float = 0.0  # paper: no KL penalty, no reference model
    thought_weight: float = 0.5
    save_every: int = 5
    save_total_limit: int = 2
    deepspeed: str | None = None  # a ZeRO-2 JSON (configs/deepspeed/): DeepSpeed trains, as the paper under accelerate
    seed: int = 0

    def __post_init__(self):
        problems = self.optimiser_problems()
        for name in (
            "updates",
            "episodes_per_update",
            "minibatch_size",
            "gradient_accumulation_steps",
            "ppo_epochs",
            "max_new_tokens",
            "generation_batch_size",
            "save_every",
            "save_total_limit",
            "scheduler_steps_per_update",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("clip_range", "value_clip_range", "temperature"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, not {getattr(self, name)}")
        for name in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1], not {getattr(self, name)}")
        for name in ("value_loss_coef", "kl_coef", "thought_weight", "min_learning_rate"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be non-negative, not {getattr(self, name)}")
        for name, known in (("accumulation", ACCUMULATIONS), ("episode_end", EPISODE_ENDS), ("decoding", DECODINGS)):
            if getattr(self, name) not in known:
                problems.append(f"{name} must be one of {known}, not {getattr(self, name)!r}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], not {self.top_p}")
        if self.lr_scheduler_type not in SCHEDULERS:
            problems.append(f"lr_scheduler_type must be one of {SCHEDULERS}, not {self.lr_scheduler_type!r}")
        elif self.lr_scheduler_type == "cosine_annealing" and self.warmup_ratio:
            problems.append("warmup_ratio must be 0 with cosine_annealing (torch's CosineAnnealingLR has no warm-up)")
        if problems:
            raise ValueError("rl.ppo: " + "; ".join(problems))


class ValueHead(nn.Module):
    """State value from the last prompt token's hidden state: MLP h -> h/4 -> h/8 -> 1 (ReLU between)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        quarter, eighth = max(1, hidden_size // 4), max(1, hidden_size // 8)
        self.net = nn.Sequential(
            nn.Linear(hidden_size, quarter),
            nn.ReLU(),
            nn.Linear(quarter, eighth),
            nn.ReLU(),
            nn.Linear(eighth, 1),
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden).squeeze(-1)


class ActorCritic(nn.Module):
    """The policy and its value head as one module, so that a data-parallel wrapper (DDP, a DeepSpeed
    engine) sees one forward pass and averages every gradient."""

    def __init__(self, policy, value_head: ValueHead):
        super().__init__()
        self.policy, self.value_head = policy, value_head

    def forward(self, turns: Sequence[Turn], pad_id: int, temperature: float, entropy: bool = False):
        scored = score(self.policy, turns, pad_id, temperature, entropy)
        head_dtype = next(self.value_head.parameters()).dtype  # bf16 under DeepSpeed
        return scored, self.value_head(scored.state_hidden.to(head_dtype)).float()


def compute_gae(
    rewards: Sequence[float], values: Sequence[float], dones: Sequence[bool], gamma: float, lam: float
) -> list[float]:
    """Generalised advantage estimates over consecutive turns; `dones[t]` ends an episode at turn t, so
    nothing after it is bootstrapped or accumulated. The last turn must end an episode."""
    if not len(rewards) == len(values) == len(dones):
        raise ValueError("rewards, values and dones must have the same length")
    if len(dones) and not dones[-1]:
        raise ValueError("the last turn must end an episode (every rollout episode is played to its end)")
    advantages = [0.0] * len(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        following = 0.0 if dones[t] else values[t + 1]
        delta = rewards[t] + gamma * following - values[t]
        running = delta + gamma * lam * (0.0 if dones[t] else running)
        advantages[t] = running
    return advantages


def normalise(advantages: torch.Tensor) -> torch.Tensor:
    """Mean 0 and (population) std 1 over the buffer; only centred when all advantages are equal."""
    centred = advantages - advantages.mean()
    std = advantages.std(correction=0)
    return centred / std if std > 1e-8 else centred


def fingerprint(
    cfg: PpoConfig,
    task: TaskConfig,
    prompts: Sequence[dict],
    start: str,
    processes: int = 1,
    deepspeed: dict | None = None,
) -> str:
    """Identity of a run: its settings, task, start model and prompts, and the number of processes (it
    sets the batch of an optimizer step); the DeepSpeed config by content, not path."""
    settings = {**asdict(cfg), "deepspeed": deepspeed}
    return training_run.fingerprint(
        {"ppo": settings, "task": asdict(task), "start": start, "processes": processes},
        ([r["hand"], r["rule"], r.get("target")] for r in prompts),
    )


def prompt_indices(n_prompts: int, per_update: int, update: int, seed: int) -> list[int]:
    """The prompts of one update: consecutive slices of a stream of seeded shuffles of the prompt set."""
    chosen, orders = [], {}
    for position in range(update * per_update, (update + 1) * per_update):
        epoch, index = divmod(position, n_prompts)
        if epoch not in orders:
            orders[epoch] = list(range(n_prompts))
            random.Random(f"sftrl-ppo:{seed}:{epoch}").shuffle(orders[epoch])
        chosen.append(orders[epoch][index])
    return chosen


@dataclass
class PpoResult:
    updates: int
    resumed_from: Path | None
    fingerprint: str
    log: list[dict]


class PpoTrainer:
    """Policy, value head, optimizer and schedule of one run, with its update and checkpoint steps.

    With an `accelerator` (several processes, or DeepSpeed) the policy and value head train as one wrapped
    module (`engine`: DDP or a DeepSpeed engine); `model` and `value_head` stay the plain modules, used to
    generate, score without gradients and save.
    """

    def __init__(
        self,
        model,
        tokenizer,
        cfg: PpoConfig,
        task: TaskConfig,
        prompts: Sequence[dict],
        reference=None,
        compute_dtype: torch.dtype | None = None,
        accelerator=None,
    ):
        """`compute_dtype` (e.g. bfloat16): forward passes under autocast to it, while the weights, their
        gradients and the optimizer states stay in the model's own (float32) dtype. Under DeepSpeed the
        model comes in its compute dtype and DeepSpeed keeps the float32 masters."""
        self.model, self.tokenizer, self.cfg, self.task, self.prompts = model, tokenizer, cfg, task, prompts
        self.compute_dtype = compute_dtype
        self.processes = Processes.current()
        self.deepspeed = accelerator is not None and accelerator.state.deepspeed_plugin is not None
        self.model.eval()  # no dropout: the ratio must be exactly 1 before the first step
        self.device = model.device
        torch.manual_seed(cfg.seed)
        # the decoder's width (a vision-language config keeps it in its text config)
        hidden_size = model.config.get_text_config(decoder=True).hidden_size
        self.value_head = ValueHead(hidden_size).to(self.device)
        self.actor_critic = ActorCritic(model, self.value_head)
        self.reference = reference
        self.parameters = [p for p in model.parameters() if p.requires_grad] + list(self.value_head.parameters())
        adam: dict[str, Any] = dict(
            lr=cfg.learning_rate,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            eps=cfg.adam_epsilon,
            weight_decay=cfg.weight_decay,
        )
        if self.deepspeed and "optimizer" in accelerator.state.deepspeed_plugin.deepspeed_config:
            from accelerate.utils import DummyOptim  # DeepSpeed builds the optimizer its config names

            self.engine, self.optimizer = accelerator.prepare(self.actor_critic, DummyOptim(self.parameters, **adam))
        else:
            self.optimizer = torch.optim.AdamW(self.parameters, **adam)
            if self.deepspeed:
                self.engine, self.optimizer = accelerator.prepare(self.actor_critic, self.optimizer)
            elif accelerator is not None:
                self.engine = accelerator.prepare_model(self.actor_critic)  # DDP
            else:
                self.engine = self.actor_critic
        if cfg.lr_scheduler_type == "cosine_annealing":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=cfg.updates, eta_min=cfg.min_learning_rate
            )
        else:
            self.scheduler = get_scheduler(
                cfg.lr_scheduler_type,
                self.optimizer,
                num_warmup_steps=math.ceil(cfg.warmup_ratio * cfg.updates),  # as the HF trainers round a ratio
                num_training_steps=cfg.updates,
            )
        self.sampling = rollout_sampling(cfg, model)
        self.update = 0
        self.log: list[dict] = []

    # --- one update -------------------------------------------------------------------------------

    def autocast(self):
        """Mixed precision: matrix products in the compute dtype, weights and reductions in float32."""
        return torch.autocast(
            self.device.type, dtype=self.compute_dtype or torch.float32, enabled=self.compute_dtype is not None
        )

    def rollout(self) -> Rollout:
        """The update's episodes in groups of `generation_batch_size`, each process playing its share of the
        groups; every process gets the whole rollout, in group order."""
        cfg = self.cfg
        records = [
            self.prompts[i] for i in prompt_indices(len(self.prompts), cfg.episodes_per_update, self.update, cfg.seed)
        ]
        size = cfg.generation_batch_size
        groups = [records[begin : begin + size] for begin in range(0, len(records), size)]
        mine = {}
        with self.autocast():
            for g in self.processes.mine(len(groups)):
                mine[g] = play(
                    self.model,
                    self.tokenizer,
                    groups[g],
                    self.task,
                    sampling=self.sampling,
                    max_new_tokens=cfg.max_new_tokens,
                    thought_weight=cfg.thought_weight,
                    seed=(cfg.seed, self.update),
                    group=g,
                    episode_end=cfg.episode_end,
                )
        played = {g: rollout for part in self.processes.gather(mine) for g, rollout in part.items()}
        return Rollout.concat([played[g] for g in range(len(groups))])

    def forward(self, turns: Sequence[Turn], module=None, entropy: bool = False):
        """Scored replies and values of `turns`, through the wrapped module (with gradients) or `module`."""
        with self.autocast():
            return (module or self.engine)(turns, self.tokenizer.pad_token_id, self.cfg.temperature, entropy)

    def micro_batches(self, turns: Sequence[Turn], index: torch.Tensor) -> list[torch.Tensor]:
        """The turns `index` in groups of similar length (`length_groups`), each scored in one forward pass."""
        lengths = [len(turns[i].prompt_ids) + len(turns[i].reply_ids) for i in index.tolist()]
        return [index[group] for group in length_groups(lengths, CALL_TOKENS)]

    @torch.no_grad()
    def score_buffer(self, turns: list[Turn]) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Old log-probs and values of the rollout, advantages and returns (GAE across each episode's turns).

        Scored in minibatches, minibatch k by process k mod the number of processes (each in groups of
        similar length); all get every result."""
        size = self.cfg.minibatch_size
        mine = {}
        for k in self.processes.mine(math.ceil(len(turns) / size)):
            rows: dict[int, tuple] = {}  # turn -> (log-prob, value, reference log-probs or None, entropy)
            for group in self.micro_batches(turns, torch.arange(k * size, min((k + 1) * size, len(turns)))):
                batch = [turns[i] for i in group.tolist()]
                scored, value = self.forward(batch, self.actor_critic, entropy=True)
                ref_logps: list = [None] * len(batch)
                if self.reference is not None:
                    ref = score(self.reference, batch, self.tokenizer.pad_token_id, self.cfg.temperature)
                    ref_logps = to_cpu([row[mask > 0] for row, mask in zip(ref.token_logps, ref.mask, strict=True)])
                entropy = cast(torch.Tensor, scored.entropy).cpu()
                fields = zip(scored.logps.cpu(), value.cpu(), ref_logps, entropy, strict=True)
                rows.update(zip(group.tolist(), fields, strict=True))
            ordered_rows = [rows[i] for i in sorted(rows)]  # back in the rollout's order
            mine[k] = (
                torch.stack([row[0] for row in ordered_rows]),
                torch.stack([row[1] for row in ordered_rows]),
                [row[2] for row in ordered_rows if row[2] is not None],
                torch.stack([row[3] for row in ordered_rows]),
            )
        scored_by = {k: part for parts in self.processes.gather(mine) for k, part in parts.items()}
        ordered = [scored_by[k] for k in sorted(scored_by)]
        values = torch.cat([value for _, value, _, _ in ordered]).to(self.device)
        dones = [t.done for t in turns]
        dones[-1] = True  # nothing follows the buffer's last turn to bootstrap from (a truncated one too)
        gae = compute_gae([t.reward for t in turns], values.tolist(), dones, self.cfg.gamma, self.cfg.gae_lambda)
        advantages = torch.tensor(gae, device=self.device)
        return {
            "old_logps": torch.cat([logps for logps, _, _, _ in ordered]).to(self.device),
            "values": values,
            "returns": advantages + values,
            "advantages": normalise(advantages),
            "ref_logps": [row.to(self.device) for _, _, rows, _ in ordered for row in rows],
            "entropy": torch.cat([entropy for _, _, _, entropy in ordered]),
        }

    def loss(self, turns: Sequence[Turn], buffer: dict, index: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Summed (not averaged) loss of the turns `index`, so accumulation can divide by the group size."""
        cfg = self.cfg
        scored, values = self.forward([turns[i] for i in index.tolist()])
        old, advantages = buffer["old_logps"][index], buffer["advantages"][index]
        log_ratio = scored.logps - old
        ratio = log_ratio.exp()
        policy = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range))
        old_values, returns = buffer["values"][index], buffer["returns"][index]
        clipped = old_values + (values - old_values).clamp(-cfg.value_clip_range, cfg.value_clip_range)
        value = 0.5 * torch.max((values - returns) ** 2, (clipped - returns) ** 2)
        total = policy + cfg.value_loss_coef * value
        stats = {
            "policy_loss": policy.sum().item(),
            "value_loss": value.sum().item(),
            "approx_kl": ((ratio - 1) - log_ratio).sum().item(),
            "clip_fraction": ((ratio - 1).abs() > cfg.clip_range).float().sum().item(),
        }
        if self.reference is not None:
            # k3 estimator per reply token, averaged over each reply: non-negative, unbiased.
            per_turn = []
            for row, i in enumerate(index.tolist()):
                new = scored.token_logps[row][scored.mask[row] > 0]
                delta = buffer["ref_logps"][i] - new
                per_turn.append((delta.exp() - delta - 1).mean())
            kl = torch.stack(per_turn)
            total = total + cfg.kl_coef * kl
            stats["kl_to_start"] = kl.sum().item()
        return total.sum(), stats

    def accumulating(self, last: bool):
        """Gradients of a pass that is not the step's last stay local (DDP syncs on the last one)."""
        if last or self.deepspeed or self.processes.count == 1:
            return contextlib.nullcontext()
        return self.engine.no_sync()

    def backward(self, loss: torch.Tensor, last: bool) -> None:
        if self.deepspeed:
            self.engine.set_gradient_accumulation_boundary(last)  # PPO's steps are not DeepSpeed's count
            self.engine.backward(loss)
            self.engine.step()  # a no-op before the boundary
        else:
            loss.backward()

    def step_optimizer(self) -> float:
        """Clip (unless max_grad_norm is None) and step (DeepSpeed did both at the boundary); the gradient
        norm before clipping."""
        if self.deepspeed:
            return float(self.engine.get_global_grad_norm() or 0.0)
        clip = self.cfg.max_grad_norm if self.cfg.max_grad_norm is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.parameters, clip).item()
        self.optimizer.step()
        return norm

    def step_groups(self, n_turns: int, generator: torch.Generator) -> list[list[torch.Tensor]]:
        """The minibatches of one update's `ppo_epochs` seeded passes, grouped into optimizer steps of
        `gradient_accumulation_steps` per process: within each epoch, or counted on across epochs
        (`accumulation`, ACCUMULATIONS); a short last group is a step too."""
        cfg = self.cfg
        epochs = [
            list(torch.randperm(n_turns, generator=generator).split(cfg.minibatch_size)) for _ in range(cfg.ppo_epochs)
        ]
        streams = [[m for epoch in epochs for m in epoch]] if cfg.accumulation == "across_epochs" else epochs
        per_step = cfg.gradient_accumulation_steps * self.processes.count
        return [stream[i : i + per_step] for stream in streams for i in range(0, len(stream), per_step)]

    def optimise(self, turns: list[Turn], buffer: dict) -> dict:
        """`ppo_epochs` passes over the buffer in seeded random minibatches (`step_groups`). An optimizer step
        takes `gradient_accumulation_steps` minibatches per process, minibatch i of the step by process i mod
        W; a process left without one runs a zero-weight pass, so every process syncs as often. A minibatch
        goes forward and backward in groups of similar length (`micro_batches`); its gradient is their sum."""
        cfg = self.cfg
        count = self.processes.count
        generator = torch.Generator().manual_seed(cfg.seed * 100003 + self.update)
        sums: dict[str, float] = {}
        grad_norms = []
        seen = 0
        for group in self.step_groups(len(turns), generator):
            size = sum(len(m) for m in group)
            mine = group[self.processes.rank :: count]
            passes = math.ceil(len(group) / count)
            if not self.deepspeed:
                self.optimizer.zero_grad(set_to_none=True)
            for j in range(passes):
                index, weight = (mine[j], 1) if j < len(mine) else (group[0], 0)
                parts = self.micro_batches(turns, index)
                for m, part in enumerate(parts):
                    last = j == passes - 1 and m == len(parts) - 1
                    with self.accumulating(last):
                        loss, stats = self.loss(turns, buffer, part.to(self.device))
                        # DDP and DeepSpeed average over processes: x count makes it the step's sum / size
                        self.backward(loss * (weight * count) / size, last)
                    for key, value in stats.items():
                        sums[key] = sums.get(key, 0.0) + weight * value
            grad_norms.append(self.step_optimizer())
            seen += size
        totals: dict[str, float] = {}
        for part in self.processes.gather(sums):
            for key, value in part.items():
                totals[key] = totals.get(key, 0.0) + value
        stats = {key: value / seen for key, value in totals.items()}
        stats["grad_norm"] = statistics.fmean(grad_norms)
        return stats

    def step(self) -> dict:
        """One PPO update: play, score, optimise; returns the update's log row.

        Row: `episode_reward` (sum over an episode's turns, mean over episodes), `first_reward` (first
        attempts), `success_rate`, `mean_turns`, `turns`, `lr`; per turn and epoch: `policy_loss`,
        `value_loss`, `approx_kl` (to the rollout policy, k3 estimator), `clip_fraction`, `kl_to_start`
        (only with kl_coef > 0); `entropy` (the rollout policy's per token, a reply's mean, mean over
        turns); `grad_norm` (mean before clipping), `generated_tokens`, `tokens_per_s`
        (generation), `scored_tokens` (prompt and reply tokens of every turn: one pass over the rollout),
        `trained_tokens` (`ppo_epochs` such passes), `rollout_seconds`, `seconds`; `advantages`, the normalised advantage of every turn
        (4 decimals), whose distribution per start checkpoint the diagnostics draw.
        """
        begin = time.perf_counter()
        lr = self.scheduler.get_last_lr()[0]
        rollout = self.rollout()
        rollout_seconds = time.perf_counter() - begin
        buffer = self.score_buffer(rollout.turns)
        stats = self.optimise(rollout.turns, buffer)
        for _ in range(self.cfg.scheduler_steps_per_update):
            self.scheduler.step()
        self.update += 1
        seconds = time.perf_counter() - begin
        n = len(rollout.episode_rewards)
        scored_tokens = sum(len(t.prompt_ids) + len(t.reply_ids) for t in rollout.turns)
        row = {
            "update": self.update,
            "episode_reward": statistics.fmean(rollout.episode_rewards),
            "first_reward": statistics.fmean(rollout.first_rewards),
            "success_rate": sum(rollout.successes) / n,
            "mean_turns": statistics.fmean(rollout.attempts),
            "turns": len(rollout.turns),
            "lr": lr,
            **stats,
            "entropy": cast(torch.Tensor, buffer["entropy"]).mean().item(),
            "generated_tokens": rollout.generated_tokens,
            "tokens_per_s": rollout.generated_tokens / rollout_seconds,
            "scored_tokens": scored_tokens,
            "trained_tokens": self.cfg.ppo_epochs * scored_tokens,
            "rollout_seconds": rollout_seconds,
            "seconds": seconds,
            "advantages": [round(a, 4) for a in cast(torch.Tensor, buffer["advantages"]).tolist()],
        }
        self.log.append(row)
        return row

    # --- checkpoints ------------------------------------------------------------------------------

    def save(self, path: Path, run: str) -> None:
        """Everything a resume needs, under its final name only when complete (marker written last). The
        main process writes the model, value head and state; under DeepSpeed every process writes its
        partition of the optimizer (`deepspeed/`)."""
        main = self.processes.main
        with io.atomic_path(path) if main else contextlib.nullcontext() as tmp:
            tmp = Path(self.processes.broadcast(str(tmp) if main else None))
            if main:
                tmp.mkdir()
            self.processes.barrier()
            if self.deepspeed:
                self.engine.save_checkpoint(str(tmp), tag="deepspeed")
            if main:
                self.model.save_pretrained(tmp / "model", safe_serialization=True)
                self.tokenizer.save_pretrained(tmp / "model")
                save_file(self.value_head.state_dict(), tmp / "value_head.safetensors")
                state = {
                    "scheduler": self.scheduler.state_dict(),
                    "rng": {"python": random.getstate(), "torch": torch.get_rng_state()},
                }
                if not self.deepspeed:
                    state["optimizer"] = self.optimizer.state_dict()
                torch.save(state, tmp / "trainer_state.pt")
                io.write_json(tmp / "state.json", {"update": self.update, "log": self.log})
            self.processes.barrier()
            if main:
                mark_complete(tmp, self.update, run)
        self.processes.barrier()

    def load(self, path: Path) -> None:
        """Restore a checkpoint written by `save` into a trainer built on that checkpoint's policy."""
        if self.deepspeed:  # weights, value head and the float32 optimizer partitions
            self.engine.load_checkpoint(str(path), tag="deepspeed", load_lr_scheduler_states=False)
        else:
            self.value_head.load_state_dict(load_file(path / "value_head.safetensors", device=str(self.device)))
        state = torch.load(path / "trainer_state.pt", map_location=self.device, weights_only=True)
        if not self.deepspeed:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        random.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"])
        saved = io.read_json(path / "state.json")
        self.update, self.log = saved["update"], saved["log"]


def rollout_sampling(cfg: PpoConfig, model) -> Sampling:
    """How rollouts sample: rl.ppo's temperature and top_p, or with decoding generation_config the start
    checkpoint's own generation config at rl.ppo's temperature, as the authors' `generate(temperature=...)`
    sampled (Qwen2.5-Instruct: top-p 0.8, top-k 20, repetition penalty 1.05)."""
    if cfg.decoding == "settings":
        return Sampling(cfg.temperature, cfg.top_p)
    generation = getattr(model, "generation_config", None)
    sampling = Sampling.of_generation_config(
        {**(generation.to_diff_dict() if generation is not None else {}), "temperature": cfg.temperature}
    )
    if sampling.greedy:
        raise ValueError(
            "rl.ppo.decoding generation_config: the start checkpoint's generation config decodes greedily "
            "(do_sample false), and PPO needs sampled rollouts: set rl.ppo.decoding settings"
        )
    return sampling


def train_ppo(
    start_model_dir: str | os.PathLike,
    prompts: Sequence[dict],
    task: TaskConfig,
    cfg: PpoConfig,
    files: training_run.RunFiles,
    dtype: str = "float32",
    device: str | None = None,
    trust_remote_code: bool = False,
) -> PpoResult:
    """PPO from `start_model_dir`; resumes from the last complete checkpoint of the same run in
    `files.work_dir`.

    `files.log_path` (JSONL, one row per update) is rewritten after every update. The final policy goes to
    `files.out_dir` as a Hugging Face directory, in `dtype`. A half-precision `dtype` trains float32 master
    weights under autocast to it (`master_dtype`); checkpoints keep the masters, so a resume is exact.
    """
    check_prompts(prompts, task)
    start = check_model_dir(start_model_dir)
    count = launched_processes()
    deepspeed = None
    if cfg.deepspeed:
        hidden = AutoConfig.from_pretrained(start, trust_remote_code=trust_remote_code)
        hidden_size = hidden.get_text_config(decoder=True).hidden_size
        deepspeed = resolve_for_ppo(cfg.deepspeed, cfg, dtype, count, hidden_size)
    accelerator = distributed(deepspeed, device) if count > 1 or deepspeed else None
    processes = Processes.current()
    run = fingerprint(cfg, task, prompts, model_dir_identity(start), processes.count, deepspeed)
    resume = training_run.resume_point(files.work_dir, run, processes.main, processes.barrier)
    if accelerator is not None:
        device = str(accelerator.device)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    # DeepSpeed keeps float32 masters itself; otherwise the trainer does (`master_dtype`) under autocast.
    weights = dtype if deepspeed else master_dtype(dtype)
    model, tokenizer = load_model(resume / "model" if resume else start, weights, device, trust_remote_code)
    reference = None
    if cfg.kl_coef > 0:  # never trained: in the model's own dtype
        reference = load_model(start, dtype, device, trust_remote_code)[0].eval().requires_grad_(False)
    compute = cast(torch.dtype, DTYPES[dtype]) if weights != dtype else None
    trainer = PpoTrainer(model, tokenizer, cfg, task, prompts, reference, compute, accelerator)
    if resume:
        trainer.load(resume)
        log.info("resuming from %s (update %d of %d)", resume, trainer.update, cfg.updates)
    if processes.main:
        training_run.publish_exports(files, run, trainer.update)
    while trainer.update < cfg.updates:
        row = trainer.step()
        if processes.main:
            io.write_jsonl(files.log_path, trainer.log)
            training_run.export_along(model, tokenizer, files, run, trainer.update, dtype)
            if files.tracker is not None:
                files.tracker.log(tracking.scalars(row, "train/"), step=row["update"])
        log.info(
            "update %d/%d: episode reward %.3f, success %.3f, %.1f s",
            row["update"],
            cfg.updates,
            row["episode_reward"],
            row["success_rate"],
            row["seconds"],
        )
        if trainer.update % cfg.save_every == 0 or trainer.update == cfg.updates:
            trainer.save(files.work_dir / f"checkpoint-{trainer.update}", run)
            if processes.main:
                keep_newest(files.work_dir, cfg.save_total_limit)
    if processes.main:
        io.write_jsonl(files.log_path, trainer.log)
        training_run.export_model(model, tokenizer, files, dtype)  # the policy, no value head
    processes.barrier()
    return PpoResult(trainer.update, resume, run, trainer.log)


def distributed(deepspeed: dict | None, device: str | None):
    """The accelerator of a run in several processes (DDP; gloo on a CPU) or under DeepSpeed."""
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin, DistributedDataParallelKwargs

    if deepspeed is not None:
        return Accelerator(deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=deepspeed), mixed_precision="no")
    # buffers (rotary frequencies) are not trained: no broadcast, so processes may score different counts
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
    cpu = device == "cpu" or not torch.cuda.is_available()
    return Accelerator(cpu=cpu, mixed_precision="no", kwargs_handlers=[ddp])


def settings(section: dict, seed: int) -> PpoConfig:
    """PpoConfig from the config's `rl.ppo` section; unknown keys are an error, the seed is the run's."""
    return from_dict(PpoConfig, {**section, "seed": seed}, "rl.ppo")
