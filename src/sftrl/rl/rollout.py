"""Multi-turn rollouts for PPO: the token ids of every turn of every episode, and the batched forward pass
that scores them.

The evaluator returns text; PPO needs the exact prompt and reply token ids of each turn, so that the update
recomputes log-probabilities of the very tokens that were sampled. All live episodes of a group advance one turn per
batched `generate` call (left padding, KV cache), as in `sftrl.evaluate`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from sftrl import cards
from sftrl.config import TaskConfig
from sftrl.evaluate.backends import generate_kwargs
from sftrl.evaluate.engine import Sampling

# The reply text that ends the "thought": the paper's JSON answer states cards and numbers before its
# `"formula":` key; the compact answer states `numbers ...` before its first `;` step.
THOUGHT_MARKERS = {"paper": '"formula"', "compact": ";"}
# How an episode that failed every attempt ends. terminal: after its last attempt, its return ends there.
# truncated_sixth_reply: the authors' environment (gym_cards general_points_oneline.py, verify_iter 5) asks
# once more, pays that reply -1 unread ("step_limit_reached") and truncates the episode, and their GAE
# (use_proper_time_limits false) bootstraps across the truncation into the next episode's first turn.
EPISODE_ENDS = ("terminal", "truncated_sixth_reply")
TRUNCATED_REWARD = -1.0


def derived_seed(*parts) -> int:
    """A stable seed for one random draw, so a resumed run samples what an uninterrupted one would."""
    digest = hashlib.sha256(":".join(map(str, ("sftrl-rl", *parts))).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def thought_weights(tokenizer, reply_ids: Sequence[int], marker: str, weight: float) -> list[float]:
    """Per-token weights of a reply's log-prob: `weight` for the tokens that end before the first `marker`,
    1 for the rest; all 1 when the reply holds no marker (then the whole reply is the action).

    A token belongs to the thought when the decoded reply up to and including it ends at or before the
    marker, found by bisection over decoded prefixes (works for word-level and byte-level BPE tokenizers).
    """
    ids = list(reply_ids)
    start = tokenizer.decode(ids, skip_special_tokens=True).find(marker)
    if start < 0 or weight == 1:
        return [1.0] * len(ids)
    low, high = 0, len(ids)
    while low < high:
        middle = (low + high + 1) // 2
        if len(tokenizer.decode(ids[:middle], skip_special_tokens=True)) <= start:
            low = middle
        else:
            high = middle - 1
    return [float(weight)] * low + [1.0] * (len(ids) - low)


@dataclass
class Turn:
    """One attempt: the state (prompt ids), the action (reply ids) and what the verifier paid for it."""

    episode: int
    prompt_ids: list[int]
    reply_ids: list[int]
    weights: list[float]
    reward: float
    done: bool
    category: str


@dataclass
class Rollout:
    turns: list[Turn] = field(default_factory=list)  # episode by episode, turns in order
    episode_rewards: list[float] = field(default_factory=list)  # the sum over the episode's turns
    first_rewards: list[float] = field(default_factory=list)  # the reward of the first attempt
    successes: list[bool] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    generated_tokens: int = 0

    @classmethod
    def concat(cls, parts: Sequence[Rollout]) -> Rollout:
        """The rollouts of consecutive groups as one, episodes numbered across them."""
        whole, offset = cls(), 0
        for part in parts:
            whole.turns += [replace(t, episode=t.episode + offset) for t in part.turns]
            whole.episode_rewards += part.episode_rewards
            whole.first_rewards += part.first_rewards
            whole.successes += part.successes
            whole.attempts += part.attempts
            whole.generated_tokens += part.generated_tokens
            offset += len(part.episode_rewards)
        return whole


def eos_ids(model, tokenizer) -> list[int]:
    """Stop at the tokenizer's eos and at every eos the checkpoint's generation config names."""
    ids = [tokenizer.eos_token_id]
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids += configured if isinstance(configured, list) else [configured]
    return sorted({i for i in ids if i is not None})


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[list[int]],
    *,
    sampling: Sampling,
    max_new_tokens: int,
    seed: int,
) -> list[list[int]]:
    """Sampled replies, each cut after its first eos (kept: stopping is part of the action)."""
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    stop = eos_ids(model, tokenizer)
    torch.manual_seed(seed)
    out = model.generate(
        input_ids=ids.to(model.device),
        attention_mask=mask.to(model.device),
        **generate_kwargs(sampling),
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop,
        use_cache=True,
    )
    replies = []
    for row in out[:, ids.shape[1] :].tolist():
        end = next((i + 1 for i, token in enumerate(row) if token in stop), len(row))
        replies.append(row[:end])
    return replies


def play(
    model,
    tokenizer,
    records: Sequence[dict],
    task: TaskConfig,
    *,
    sampling: Sampling,
    max_new_tokens: int,
    thought_weight: float,
    seed: tuple,
    group: int = 0,
    episode_end: str = "terminal",
) -> Rollout:
    """Play one episode per record to the end, all live episodes in one batched generate per turn.

    The records are one group of an update's episodes (at most `generation_batch_size`); turn t of group
    g samples with a seed drawn from (`seed`, t, g), so a group plays the same wherever it is played.
    With `episode_end` "truncated_sixth_reply" (EPISODE_ENDS) an episode that failed every attempt is
    asked once more, and that reply is paid TRUNCATED_REWARD whatever it says and ends the episode
    without ending its return (`Turn.done` False).
    """
    sixth = episode_end == "truncated_sixth_reply"
    episodes = [
        task.episode(
            r["hand"],
            cards.Rule(**r["rule"]),
            r.get("target", task.target),
            max_attempts=task.max_attempts + sixth,  # the extra turn's prompt holds the last failure's feedback
        )
        for r in records
    ]
    marker = THOUGHT_MARKERS[task.style]
    per_episode: list[list[Turn]] = [[] for _ in episodes]
    truncated: set[int] = set()
    generated = 0
    live = list(range(len(episodes)))
    turn = 0
    while live:
        states = [prompt_ids(tokenizer, episodes[i].messages) for i in live]
        replies = generate(
            model,
            tokenizer,
            states,
            sampling=sampling,
            max_new_tokens=max_new_tokens,
            seed=derived_seed(*seed, turn, group),
        )
        for i, state, reply in zip(live, states, replies, strict=False):
            weights = thought_weights(tokenizer, reply, marker, thought_weight)
            if sixth and episodes[i].attempts == task.max_attempts:  # the step limit: not judged
                per_episode[i].append(Turn(i, state, reply, weights, TRUNCATED_REWARD, False, "step_limit"))
                truncated.add(i)
            else:
                verdict = episodes[i].step(tokenizer.decode(reply, skip_special_tokens=True))
                done = episodes[i].success or (not sixth and episodes[i].done)
                per_episode[i].append(Turn(i, state, reply, weights, float(verdict.reward), done, verdict.category))
            generated += len(reply)
        live = [i for i in live if not (episodes[i].done or i in truncated)]
        turn += 1
    return Rollout(
        turns=[t for turns in per_episode for t in turns],
        episode_rewards=[float(sum(t.reward for t in turns)) for turns in per_episode],
        first_rewards=[float(e.rewards[0]) for e in episodes],
        successes=[e.success for e in episodes],
        attempts=[len(turns) for turns in per_episode],
        generated_tokens=generated,
    )


def length_groups(lengths: Sequence[int], call_tokens: int) -> list[list[int]]:
    """The positions of `lengths` in groups to score together, fewest tokens computed first.

    A batch is padded to its longest sequence, and a PPO rollout mixes first turns (a short prompt) with fifth
    turns (the whole conversation so far): scored as one batch, most of its tokens are padding. The groups are
    runs of the length order that minimise the padded tokens of all groups plus `call_tokens` for each
    forward call (its fixed cost, in tokens); an exact partition by dynamic programming (a batch holds tens of
    turns). Scoring a batch in groups gives each turn what the whole batch gives it, up to float rounding."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    ordered = [lengths[i] for i in order]
    best = [0.0] + [math.inf] * len(order)
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for begin in range(end):
            cost = best[begin] + (end - begin) * ordered[end - 1] + call_tokens
            if cost < best[end]:
                best[end], cut[end] = cost, begin
    groups, end = [], len(order)
    while end:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


@dataclass
class Scored:
    """Per-token log-probs of the replies (right-aligned, `mask` marks real tokens), the thought weights
    laid out the same way, the last hidden state at each turn's last prompt token, and (where asked) each
    reply's mean entropy of the sampling distribution per token."""

    token_logps: torch.Tensor
    mask: torch.Tensor
    weights: torch.Tensor
    state_hidden: torch.Tensor
    entropy: torch.Tensor | None = None

    @property
    def logps(self) -> torch.Tensor:
        """The action log-prob of each turn: the weighted sum over its reply tokens."""
        return (self.token_logps * self.weights * self.mask).sum(dim=1)


def score(model, turns: Sequence[Turn], pad_id: int, temperature: float, entropy: bool = False) -> Scored:
    """One forward pass over prompt + reply of each turn (left padded, positions from the mask).

    Log-probs are those of the sampling distribution (logits / temperature), so the ratio of the update's
    log-prob to the rollout's is 1 before the first step. `entropy`: also each reply's mean token entropy
    (a diagnostic: computed without gradients).
    """
    ids, mask = left_pad([t.prompt_ids + t.reply_ids for t in turns], pad_id)
    device = model.device
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    longest = max(len(t.reply_ids) for t in turns)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        output_hidden_states=True,
        use_cache=False,
        logits_to_keep=longest + 1,
    )
    logits = out.logits[:, :-1].float() / temperature
    replies = ids[:, -longest:]
    all_logps = torch.log_softmax(logits, dim=-1)
    token_logps = all_logps.gather(-1, replies.unsqueeze(-1)).squeeze(-1)
    reply_mask = torch.zeros_like(token_logps)
    weights = torch.zeros_like(token_logps)
    for i, t in enumerate(turns):
        n = len(t.reply_ids)
        reply_mask[i, longest - n :] = 1
        weights[i, longest - n :] = torch.tensor(t.weights, dtype=weights.dtype)
    width = ids.shape[1]
    last_prompt = torch.tensor([width - len(t.reply_ids) - 1 for t in turns], device=device)
    hidden = out.hidden_states[-1][torch.arange(len(turns), device=device), last_prompt].float()
    reply_entropy = None
    if entropy:
        with torch.no_grad():
            per_token = -(all_logps.exp() * all_logps).sum(dim=-1)
            reply_entropy = (per_token * reply_mask).sum(dim=1) / reply_mask.sum(dim=1).clamp(min=1)
    return Scored(token_logps * reply_mask, reply_mask, weights, hidden, reply_entropy)
