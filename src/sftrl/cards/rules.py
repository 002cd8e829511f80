"""Card ranks, their symbols, and face-card rules (what J, Q and K are worth).

A rule is plain data so that the ID rule (J, Q, K = 10), the OOD rule (11, 12, 13) and any
custom or random variant flow through the same code paths.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CARD_SYMBOLS: dict[int, str] = {1: "A", **{r: str(r) for r in range(2, 11)}, 11: "J", 12: "Q", 13: "K"}

Hand = tuple[int, ...]

# Formulas may only hold literals of up to 3 digits, so a card value must fit in 3 digits too.
MAX_CARD_VALUE = 999


def _check_value(face: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CARD_VALUE:
        raise ValueError(f"{face} must be an int in 0..{MAX_CARD_VALUE}, got {value!r}")


@dataclass(frozen=True)
class Rule:
    """Face values of J, Q and K; ranks 1..10 always count as themselves."""

    jack: int
    queen: int
    king: int
    name: str = "custom"

    def __post_init__(self) -> None:
        for face in ("jack", "queen", "king"):
            _check_value(face, getattr(self, face))

    def value(self, rank: int) -> int:
        """The number a card of this rank counts as."""
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= 13:
            raise ValueError(f"a card rank is an int in 1..13, got {rank!r}")
        return (self.jack, self.queen, self.king)[rank - 11] if rank > 10 else rank

    def values(self, hand) -> tuple[int, ...]:
        return tuple(self.value(rank) for rank in hand)

    @property
    def sentence(self) -> str:
        """The prompt sentence stating the rule (the reference wording)."""
        if self.jack == self.queen == self.king:
            return f"'J', 'Q', and 'K' count as '{self.jack}'."
        return f"'J', 'Q', and 'K' count as '{self.jack}', '{self.queen}', and '{self.king}' respectively."

    @classmethod
    def random(cls, rng: random.Random, low: int = 1, high: int = 13) -> Rule:
        """A rule whose three face values are drawn independently from low..high."""
        jack, queen, king = (rng.randint(low, high) for _ in range(3))
        return cls(jack, queen, king, name=f"random-{jack}-{queen}-{king}")


RULES: dict[str, Rule] = {"id": Rule(10, 10, 10, "id"), "ood": Rule(11, 12, 13, "ood")}


def get_rule(rule: Rule | str) -> Rule:
    """Accept a Rule or the name of a predefined one."""
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str) and rule in RULES:
        return RULES[rule]
    raise ValueError(f"unknown rule {rule!r}; known rules: {', '.join(RULES)}")


def as_hand(hand) -> Hand:
    """Validate a hand of card ranks (display order kept)."""
    ranks = tuple(hand)
    if not ranks:
        raise ValueError("a hand holds at least one card")
    for rank in ranks:
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= 13:
            raise ValueError(f"a card rank is an int in 1..13, got {rank!r} in {ranks!r}")
    return ranks


def symbols(hand) -> list[str]:
    """The hand as card symbols, e.g. (1, 11) -> ['A', 'J']."""
    return [CARD_SYMBOLS[rank] for rank in as_hand(hand)]
