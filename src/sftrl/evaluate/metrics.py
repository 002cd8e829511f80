"""Aggregate metrics of an evaluation, lm-evaluation-harness style: rates with intervals and stderrs."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from sftrl.cards import CATEGORIES, Rule, verify
from sftrl.evaluate.engine import EpisodeResult

# Answers the verifier could not read as a legal formula: the model has not learnt the answer format.
FORMAT_ERRORS = ("illegal_formula", "unparsable")


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials.

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at k = 0 or k = n,
    which is where small-model evaluations live. n = 0 gives the uninformative (0, 1).
    """
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(k: int, n: int, z: float = 1.96) -> dict:
    """A rate with its Wilson interval and binomial standard error; rate None when n = 0."""
    low, high = wilson_interval(k, n, z)
    rate = k / n if n else None
    stderr = math.sqrt(rate * (1 - rate) / n) if rate is not None else None
    return {"k": k, "n": n, "rate": rate, "ci_low": low, "ci_high": high, "stderr": stderr}


def category_shares(categories: Sequence[str]) -> dict:
    counts = Counter(categories)
    names = list(CATEGORIES) + sorted(set(counts) - set(CATEGORIES))
    n = len(categories)
    return {"n": n, "counts": {c: counts[c] for c in names}, "share": {c: counts[c] / n if n else None for c in names}}


def compute_metrics(results: Sequence[EpisodeResult], z: float = 1.96) -> dict:
    """Every aggregate of `metrics.json` that depends only on the episodes."""
    turns = [turn for result in results for turn in result.turns]
    firsts = [result.turns[0] for result in results if result.turns]
    stated = [turn.numbers_follow_rule for turn in turns if turn.numbers_follow_rule is not None]
    stated_first = [turn.numbers_follow_rule for turn in firsts if turn.numbers_follow_rule is not None]
    solved = sum(r.success for r in results)
    solved_first = sum(t.category == "correct" for t in firsts)
    any_layout_first = sum(
        verify(r.turns[0].reply, r.hand, Rule(**r.rule), r.target).correct for r in results if r.turns
    )
    n_turns = len(turns)
    n_episodes = len(results)
    return {
        "n_episodes": n_episodes,
        "n_attempts": n_turns,
        "success": proportion(solved, n_episodes, z),
        "first_attempt_success": proportion(solved_first, n_episodes, z),
        "first_attempt_any_layout": proportion(any_layout_first, n_episodes, z),
        "success_after_failure": proportion(solved - solved_first, solved, z),
        "mean_attempts": n_turns / n_episodes if n_episodes else None,
        "mean_reward_per_attempt": sum(t.reward for t in turns) / n_turns if n_turns else None,
        "mean_reward_per_episode": (
            sum(sum(t.reward for t in r.turns) for r in results) / n_episodes if n_episodes else None
        ),
        "verdicts_all_attempts": category_shares([t.category for t in turns]),
        "verdicts_first_attempt": category_shares([t.category for t in firsts]),
        "format_error_rate": (sum(t.category in FORMAT_ERRORS for t in turns) / n_turns if n_turns else None),
        "rule_following": proportion(sum(stated), len(stated), z),
        "rule_following_first": proportion(sum(stated_first), len(stated_first), z),
        "mean_reply_words": sum(len(t.reply.split()) for t in turns) / n_turns if n_turns else None,
        "ci": {"method": "wilson", "z": z},
        "definitions": {
            "success": "episodes with a correct attempt within max_attempts / episodes",
            "first_attempt_success": "episodes whose first attempt is correct / episodes",
            "first_attempt_any_layout": (
                "episodes whose first reply is right in any layout the parser reads (task.strict_layout counts "
                "only the task's own) / episodes: the skill a model has outside the task's format"
            ),
            "format_error_rate": f"attempts with verdict in {list(FORMAT_ERRORS)} / all attempts",
            "success_after_failure": "successful episodes whose first attempt failed / successful episodes",
            "rule_following": "answers whose stated card values follow the rule / answers that state values",
            "rule_following_first": "first answers whose stated card values follow the rule / first answers that state values",
            "mean_reply_words": "whitespace-separated words per reply, over all attempts",
        },
    }
