"""The multi-turn game: up to ``max_attempts`` replies, with feedback after each failed one."""

from __future__ import annotations

from .formats import messages as first_messages
from .reference import reference_feedback
from .rules import Rule, as_hand, get_rule
from .verify import STRICT_LAYOUTS, Rewards, Verdict, verify

FEEDBACK = "You failed this trial because {message}"
COMPACT_FEEDBACK = "fail ; {message}"
# Whose words the feedback turn uses: this verifier's one sentence per finding, or the reference verifier's
# messages word for word (`sftrl.cards.reference`; the paper style only). The reward is this verifier's in both.
FEEDBACK_TEXTS = ("sftrl", "reference")


def feedback(verdict: Verdict, style: str = "paper") -> str:
    """The user turn that follows a failed attempt, in the words of the given style."""
    if style == "compact":
        return COMPACT_FEEDBACK.format(message=verdict.compact)
    return FEEDBACK.format(message=verdict.message)


class Episode:
    """One hand played as a conversation.

    ``messages`` always ends with a user turn while the episode is not done, so it can be handed
    to a generator as is; after a success or the last attempt no further user turn is added.
    """

    def __init__(
        self,
        hand,
        rule: Rule | str,
        target: int = 24,
        style: str = "paper",
        max_attempts: int = 5,
        rewards: Rewards = Rewards(),
        feedback_text: str = "sftrl",
        strict_layout: bool = False,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if feedback_text not in FEEDBACK_TEXTS:
            raise ValueError(f"feedback_text must be one of {FEEDBACK_TEXTS}, got {feedback_text!r}")
        self.hand, self.rule, self.target = as_hand(hand), get_rule(rule), target
        self.style, self.max_attempts, self.rewards_table = style, max_attempts, rewards
        self.feedback_text = feedback_text
        self.layout = style if strict_layout else None  # the only answer layout that counts (None: any)
        if self.layout is not None and self.layout not in STRICT_LAYOUTS:
            raise ValueError(f"no strict layout for the {style!r} style; strict layouts: {', '.join(STRICT_LAYOUTS)}")
        self.messages: list[dict] = first_messages(self.hand, self.rule, target, style)
        self.verdicts: list[Verdict] = []

    @property
    def attempts(self) -> int:
        return len(self.verdicts)

    @property
    def success(self) -> bool:
        return any(verdict.correct for verdict in self.verdicts)

    @property
    def done(self) -> bool:
        return self.success or self.attempts >= self.max_attempts

    @property
    def rewards(self) -> list[float]:
        """The reward of each attempt so far."""
        return [verdict.reward for verdict in self.verdicts]

    def step(self, reply: str) -> Verdict:
        """Judge one assistant reply and, if it failed and attempts remain, add the feedback turn."""
        if self.done:
            outcome = "succeeded" if self.success else f"used all {self.max_attempts} attempts"
            raise RuntimeError(f"the episode is over (it {outcome}); start a new Episode")
        verdict = verify(reply, self.hand, self.rule, self.target, self.rewards_table, self.layout)
        self.messages.append({"role": "assistant", "content": reply})
        self.verdicts.append(verdict)
        if not self.done:
            if self.feedback_text == "reference":
                turn = reference_feedback(reply, self.hand, self.rule, self.target)
            else:
                turn = feedback(verdict, self.style)
            self.messages.append({"role": "user", "content": turn})
        return verdict
