"""Multi-turn GeneralPoints episodes driven by a text generator.

`run_episodes` advances every live episode one turn per batched generate call, so the cost of an
evaluation is (attempts of the slowest episode) batched calls instead of one call per attempt; finished
episodes drop out, so nothing is generated after a success or after the last attempt.
`run_episodes_sequential` is the reference implementation's way (one prompt per call), kept for the
equivalence test and the throughput benchmark.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from sftrl import cards
from sftrl.config import TaskConfig

DTYPES = ("auto", "float32", "bfloat16", "float16")
BACKENDS = ("hf", "vllm")
# Whose sampling knobs the evaluation decodes with: the eval section's (temperature 0: greedy), or each
# checkpoint's own generation_config.json, as `generate()` does when it is passed none (the authors' evaluation).
DECODINGS = ("settings", "generation_config")
# What `generate()` used where a generation config leaves a knob unset, in transformers 4.46 (the authors' pin).
GENERATE_DEFAULTS = {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 50, "repetition_penalty": 1.0}


@dataclass(frozen=True)
class Sampling:
    """How a reply's tokens are drawn: greedy at temperature 0, else sampled after a temperature, top-k (0: all
    tokens) and top-p (1: all); a repetition penalty (1: none) divides the positive logits and multiplies the
    negative ones of every token the conversation already holds, in greedy decoding too (as `generate`)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @classmethod
    def of_generation_config(cls, config: Mapping[str, Any]) -> Sampling:
        """The sampling of a checkpoint's generation config (its JSON), unset knobs as GENERATE_DEFAULTS."""
        values = {**GENERATE_DEFAULTS, **{k: v for k, v in config.items() if k in GENERATE_DEFAULTS and v is not None}}
        penalty = float(values["repetition_penalty"])
        if not values["do_sample"] or not values["temperature"]:
            return cls(repetition_penalty=penalty)
        return cls(float(values["temperature"]), float(values["top_p"]), int(values["top_k"]), penalty)


@dataclass(frozen=True)
class EvalConfig:
    """Decoding and batching of one evaluation (the config's `eval` section, whose values are the defaults).

    `seed` defaults to the experiment seed when the section leaves it out (see `scripts/evaluate.py`).
    """

    batch_size: int = 512
    max_new_tokens: int = 32
    decoding: str = "settings"  # DECODINGS: temperature and top_p below, or each checkpoint's generation config
    temperature: float = 0.0
    top_p: float = 1.0
    samples: int = 1
    seed: int = 0
    backend: str = "hf"
    dtype: str = "float32"
    device: str = "auto"
    trust_remote_code: bool = False
    reuse_cache: bool = True  # keep each episode's KV cache between turns (memory: one cache per live episode)

    def __post_init__(self) -> None:
        problems = []
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.samples < 1:
            problems.append(f"samples must be >= 1, got {self.samples}")
        if self.decoding not in DECODINGS:
            problems.append(f"decoding must be one of {DECODINGS}, got {self.decoding!r}")
        if self.samples > 1 and self.temperature == 0 and self.decoding == "settings":
            problems.append("samples > 1 needs temperature > 0: greedy decoding repeats the same episode")
        if self.backend not in BACKENDS:
            problems.append(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if problems:
            raise ValueError("eval config: " + "; ".join(problems))

    def sampling(self, generation_config: Mapping[str, Any] | None = None) -> Sampling:
        """The sampling of this evaluation; with decoding generation_config, that of the checkpoint's
        `generation_config` (its JSON; none: `generate()`'s defaults), and more than one sample per hand needs
        it to sample."""
        if self.decoding == "settings":
            return Sampling(self.temperature, self.top_p)
        sampling = Sampling.of_generation_config(generation_config or {})
        if sampling.greedy and self.samples > 1:
            raise ValueError(
                "eval.samples > 1 with eval.decoding generation_config, but the checkpoint's generation config "
                "decodes greedily (do_sample false): every sample would repeat the same episode"
            )
        return sampling


class Backend(Protocol):
    """Anything that continues chat conversations: one assistant reply per conversation, in order.

    `keys` name each conversation across calls (one per episode), so a backend may keep per-conversation
    state such as a KV cache; it may ignore them. A backend may also count `tokens_generated` (an int
    attribute); progress lines then show tokens/s. A backend that has a `render(conversation)` method
    (the text the model reads) has its first prompt recorded in metrics.json.
    """

    def generate(self, conversations: list[list[dict]], keys: list[str] | None = None) -> list[str]: ...


@dataclass
class Turn:
    """One attempt: the user message it answered, the reply, and the verifier's judgement."""

    user: str
    reply: str
    category: str
    reward: float
    message: str
    value: str | None
    numbers_follow_rule: bool | None


@dataclass
class EpisodeResult:
    """One played episode; `sample` tells apart the copies of an eval item when sampling."""

    uid: str
    hand: list[int]
    cards: list[str]
    rule: dict
    target: int
    sample: int
    system: str | None
    turns: list[Turn] = field(default_factory=list)
    success: bool = False

    @property
    def attempts(self) -> int:
        return len(self.turns)

    def to_record(self) -> dict:
        """The `samples.jsonl` line: everything needed to audit the episode without rerunning it."""
        record = asdict(self)
        record["attempts"] = self.attempts
        return record


def _start(record: dict, task: TaskConfig) -> tuple[cards.Episode, EpisodeResult]:
    """An episode and its (empty) result for one eval-set record."""
    target = record.get("target", task.target)
    if target != task.target:
        raise ValueError(
            f"episode {record.get('uid')!r} has target {target} but the task config says {task.target}: "
            "the eval set was built for another task"
        )
    rule = cards.Rule(**record["rule"])
    episode = task.episode(list(record["hand"]), rule, target)
    first = episode.messages
    system = first[0]["content"] if first and first[0]["role"] == "system" else None
    result = EpisodeResult(
        uid=str(record["uid"]),
        hand=list(record["hand"]),
        cards=[cards.CARD_SYMBOLS[rank] for rank in record["hand"]],
        rule=dict(record["rule"]),
        target=target,
        sample=record.get("sample", 0),
        system=system,
    )
    return episode, result


def first_conversation(record: dict, task: TaskConfig) -> list[dict]:
    """The conversation of an eval-set record's first turn."""
    return _conversation(_start(record, task)[0])


def _conversation(episode: cards.Episode) -> list[dict]:
    """A copy of the conversation, so a backend can never alter the episode's own history."""
    return [dict(message) for message in episode.messages]


def _advance(episode: cards.Episode, result: EpisodeResult, conversation: list[dict], reply: str) -> None:
    """Score one reply and record the turn; `str(reply)` guards against a backend returning None."""
    reply = "" if reply is None else str(reply)
    verdict = episode.step(reply)
    result.turns.append(
        Turn(
            user=conversation[-1]["content"],
            reply=reply,
            category=verdict.category,
            reward=float(verdict.reward),
            message=verdict.message,
            value=None if verdict.value is None else str(verdict.value),
            numbers_follow_rule=verdict.numbers_follow_rule,
        )
    )
    result.success = bool(episode.success)


def _generate(backend: Backend, conversations: list[list[dict]], keys: list[str] | None = None) -> list[str]:
    replies = backend.generate(conversations, keys=keys)
    if len(replies) != len(conversations):
        raise RuntimeError(f"backend returned {len(replies)} replies for {len(conversations)} conversations")
    return replies


class _Progress:
    """One short stderr line per report: episodes done, solved, and generation speed."""

    def __init__(self, backend: Backend, total: int, enabled: bool):
        self.backend, self.total, self.enabled = backend, total, enabled
        self.start = time.perf_counter()
        self.tokens0 = getattr(backend, "tokens_generated", None)

    def report(self, label: str, done: int, solved: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        speed = ""
        tokens = getattr(self.backend, "tokens_generated", None)
        if tokens is not None and self.tokens0 is not None and elapsed > 0:
            speed = f", {(tokens - self.tokens0) / elapsed:.0f} generated tokens/s"
        print(
            f"[eval] {label}: {done}/{self.total} episodes done, {solved} solved, {elapsed:.1f}s{speed}",
            file=sys.stderr,
            flush=True,
        )


def run_episodes(
    backend: Backend, episodes: Sequence[dict], task: TaskConfig, progress: bool = True
) -> list[EpisodeResult]:
    """Play every episode to the end, all live episodes advancing one turn per backend call.

    `episodes` are eval-set records (optionally with a `sample` index); results come back in input order.
    """
    started = [_start(record, task) for record in episodes]
    results = [result for _, result in started]
    meter = _Progress(backend, len(started), progress)
    live = [i for i, (episode, _) in enumerate(started) if not episode.done]
    turn = 0
    while live:
        turn += 1
        conversations = [_conversation(started[i][0]) for i in live]
        replies = _generate(backend, conversations, [f"{results[i].uid}#{results[i].sample}" for i in live])
        for i, conversation, reply in zip(live, conversations, replies, strict=False):
            _advance(*started[i], conversation, reply)
        live = [i for i in live if not started[i][0].done]
        meter.report(f"turn {turn}", len(started) - len(live), sum(r.success for r in results))
    return results


def run_episodes_sequential(
    backend: Backend, episodes: Sequence[dict], task: TaskConfig, progress: bool = True
) -> list[EpisodeResult]:
    """Reference: one episode at a time, one prompt per backend call."""
    results = []
    meter = _Progress(backend, len(episodes), progress)
    every = max(1, len(episodes) // 10)
    for n, record in enumerate(episodes, 1):
        episode, result = _start(record, task)
        while not episode.done:
            conversation = _conversation(episode)
            _advance(episode, result, conversation, _generate(backend, [conversation])[0])
        results.append(result)
        if n % every == 0 or n == len(episodes):
            meter.report(f"episode {n}", n, sum(r.success for r in results))
    return results
