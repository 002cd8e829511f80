"""Self-play refinement of the tiny base: it plays pretraining-style hands, then trains on episodes made of
its own failed attempts, each answered by the verifier's feedback, ending in a right answer.

Why: the corpus's wrong attempts are random, not the model's own. A base trained on them alone answers
feedback by repeating its own failed reply (about nine retries in ten), so it never succeeds after a
failure, and the study's multi-turn game is dead. Each round plays the model of the round before.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sftrl import cards, io
from sftrl.config import DataConfig, TaskConfig, base_seed, from_dict
from sftrl.data import check_pretrain, corpus_problems, episode_record, example, in_layout, pick_solutions, stage_rng
from sftrl.provenance import provenance as make_provenance


@dataclass(frozen=True)
class RefineConfig:
    """One round of the `model.refine` section: `train` holds SftConfig keys over `model.pretrain`'s.
    How many rounds there are is the workflow's business (rules/base.smk), so adding one reruns nothing."""

    hands: int
    replay_share: float
    train: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hands < 1 or not 0 <= self.replay_share < 1:
            raise ValueError(
                f"model.refine: hands >= 1 and 0 <= replay_share < 1, got hands {self.hands}, "
                f"replay_share {self.replay_share}"
            )


def problems(
    seed: int, round_: int, task: TaskConfig, data: DataConfig, hands: int, stream_seed: int | None = None
) -> list[dict]:
    """The hands one round plays: episode records drawn as the pretraining corpus draws its problems
    (the exclusions of the experiment's `seed`, so no evaluation problem is ever played), a fresh stream
    per round, drawn with `stream_seed` (the base's seed; default `seed`)."""
    rng = stage_rng(seed if stream_seed is None else stream_seed, f"selfplay-{round_}")
    drawn = zip(range(hands), corpus_problems(rng, seed, task, data), strict=False)
    return [episode_record(f"play{round_}-{i:06d}", hand, rule, target) for i, (hand, rule, target) in drawn]


def play(model_dir: str | os.PathLike, records: Sequence[dict], task: TaskConfig, eval_cfg) -> list[dict]:
    """Play every record to the end as evaluation does (`eval_cfg` decodes); the played episodes, in order.

    The engine plays one target at a time (an episode's target is the task's), so records are grouped. A
    base in the making is judged in any layout (never `task.strict_layout`): it learns the game in its
    corpus's layout, and the task's own layout is what SFT teaches it."""
    from sftrl.evaluate.backends import make_backend
    from sftrl.evaluate.engine import run_episodes

    backend = make_backend(model_dir, eval_cfg)
    played: dict[str, dict] = {}
    for target in sorted({r["target"] for r in records}):
        group = [r for r in records if r["target"] == target]
        for result in run_episodes(backend, group, replace(task, target=target, strict_layout=False), progress=False):
            played[result.uid] = result.to_record()
    return [played[str(r["uid"])] for r in records]


def failed_replies(episode: dict) -> list[str]:
    """The replies of a played episode that the verifier did not accept: all but a success's last."""
    replies = [turn["reply"] for turn in episode["turns"]]
    return replies[:-1] if episode["success"] else replies


def retry_episodes(
    played: Sequence[dict], task: TaskConfig, rng: random.Random, max_failed: int, layout: str = "task"
) -> list[dict]:
    """One training example per played episode that failed at least once: its first j failed replies
    (j uniform in 1..min(failures, max_failed)), each followed by the verifier's feedback, as the prompt;
    a right answer (a solver's solution) as the completion, in the corpus's answer `layout`."""
    episodes = []
    for record in played:
        failed = failed_replies(record)
        if not failed:
            continue
        hand, rule, target = tuple(record["hand"]), cards.Rule(**record["rule"]), record["target"]
        shown = failed[: rng.randint(1, min(len(failed), max_failed))]
        episode = cards.Episode(list(hand), rule, target, task.style, max_attempts=len(shown) + 1)
        for reply in shown:
            episode.step(reply)
        formula = pick_solutions(rng, cards.solutions(hand, rule, target), 1, task.style)[0]
        right = in_layout(example(record["uid"], hand, rule, target, formula, task.style), layout)
        episodes.append({**right, "prompt": episode.messages})
    return episodes


def training_set(
    episodes: Sequence[dict], corpus: Sequence[dict], replay_share: float, rng: random.Random
) -> list[dict]:
    """The round's episodes with replayed corpus examples making up `replay_share` of the set (so the
    first-attempt skill is rehearsed, not forgotten), shuffled."""
    replay = round(len(episodes) * replay_share / (1 - replay_share))
    if replay > len(corpus):
        raise ValueError(
            f"model.refine.replay_share {replay_share}: {replay} replayed examples, the corpus has {len(corpus)}"
        )
    mixed = [*episodes, *rng.sample(list(corpus), replay)]
    rng.shuffle(mixed)
    return mixed


def summary(played: Sequence[dict]) -> dict:
    """What a round's play shows: solves at the first attempt and after a failure, and how often a retry
    repeats an earlier reply of its episode (the failure self-play exists to remove)."""
    retries = repeats = 0
    for record in played:
        replies = [turn["reply"] for turn in record["turns"]]
        retries += len(replies) - 1
        repeats += sum(reply in replies[:i] for i, reply in enumerate(replies) if i)
    return {
        "episodes": len(played),
        "solved_first_attempt": sum(r["success"] and len(r["turns"]) == 1 for r in played),
        "solved_after_failure": sum(r["success"] and len(r["turns"]) > 1 for r in played),
        "retries": retries,
        "repeated_retries": repeats,
    }


def run_play(config: dict, model_dir: str | os.PathLike, round_: int, out: str | os.PathLike) -> dict:
    """The play stage of one round: `config` holds seed, task, data, model (`refine`) and eval."""
    from sftrl.evaluate import eval_config

    task = from_dict(TaskConfig, config["task"], "task")
    data = from_dict(DataConfig, config["data"], "data")
    refine = from_dict(RefineConfig, config["model"]["refine"], "model.refine")
    records = problems(config["seed"], round_, task, data, refine.hands, base_seed(config))
    played = play(model_dir, records, task, eval_config(config))
    io.write_jsonl(out, played)
    return summary(played)


def run_refine(
    config: dict,
    model_dir: str | os.PathLike,
    played_path: str | os.PathLike,
    corpus_path: str | os.PathLike,
    round_: int,
    out_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    log_path: str | os.PathLike,
):
    """The training stage of one round: continue training `model_dir` on its own retry episodes mixed
    with corpus replay; resumable like SFT. The exported model's provenance keeps the pretraining config
    (which problems its corpus left out) and the refinement's."""
    from sftrl.sft import PRETRAIN_DEFAULTS, sft_config, train

    task = from_dict(TaskConfig, config["task"], "task")
    data = from_dict(DataConfig, config["data"], "data")
    check_pretrain(task, data)
    refine = from_dict(RefineConfig, config["model"]["refine"], "model.refine")
    section = {**config["model"]["pretrain"], **refine.train}
    cfg = sft_config(section, base_seed(config), "model.refine.train", PRETRAIN_DEFAULTS)
    rng = stage_rng(base_seed(config), f"refine-{round_}")
    episodes = retry_episodes(
        io.read_jsonl(played_path), task, rng, data.pretrain.failed_attempts[1], data.pretrain.answer_layout
    )
    records = training_set(episodes, io.read_jsonl(corpus_path), refine.replay_share, rng)
    return train(
        str(model_dir),
        None,
        records,
        {},
        cfg,
        work_dir,
        lambda step: Path(out_dir) if step == cfg.max_steps else None,
        log_path,
        provenance={
            **make_provenance(config, cfg.seed),
            "resolved": {
                "refine": {**asdict(refine), "round": round_, "episodes": len(episodes)},
                "train": asdict(cfg),
            },
        },
        dtype=config["model"].get("dtype", "float32"),
    )
