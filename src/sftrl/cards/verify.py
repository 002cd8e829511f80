"""Judging a reply: category, reward and a one-sentence reason (never raises).

Formula replies, checked in this order (the first finding wins):

1. no formula, or an empty one                                    -> unparsable
2. illegal characters or token order (unary minus, ``**``, names,
   unicode digits, literals over 3 digits, over 512 chars, too deep,
   no number at all)                                               -> illegal_formula
3. card usage: a number that is not a card value, a card value used
   too often, or a card value left unused                          -> wrong_numbers
4. division by zero                                                -> illegal_formula
5. complete: equals the target                                     -> correct, else no_solution
6. incomplete, and closing its open parentheses gives the target
   (``((7-5)*11+2`` with the cards 7 5 J 2 under the OOD rule)       -> partial
7. otherwise incomplete (ends on an operator or ``(``, or closing
   its parentheses does not give the target)                      -> illegal_formula

As in the reference verifier, partial needs every card used and a text that cannot be evaluated as
it stands yet is the beginning of a solution; "beginning" is judged exactly here (closing the
parentheses reaches the target) rather than as a string prefix of a stored solution. A prefix that
leaves a card unused (``(7-5)*11+``, or a single card value) is a number error, never partial, so no
short reply can collect +1 on every attempt of an episode.

Anything after the first ``=`` is ignored, so ``...=24`` and a wrong tail ``...=23`` are both judged
by the left side alone. Whitespace is allowed between tokens. A trailing number is taken as
complete (``(7-5)*1`` is not read as the start of ``(7-5)*11``).

Steps replies (``a op b = c`` per segment), checked step by step: a malformed step or ``p/0`` ->
illegal_formula; an operand that is neither an unused card value nor an unused earlier result ->
wrong_numbers; division by zero -> illegal_formula; a stated result that is not the exact result
(wrong arithmetic) -> no_solution. The last segment may be a step missing only its stated result
(``22 + 2 =`` or ``22 + 2``): if it consumes the last two numbers left and its exact result is the
target -> partial; if numbers are left besides its operands -> wrong_numbers; otherwise
illegal_formula. After the last complete step: one number left -> correct if it is the target, else
no_solution; several left (cards or results) -> wrong_numbers. No steps at all -> unparsable.

Cost: one linear scan of the reply, microseconds for ordinary replies and about a millisecond for
megabyte ones; no search over continuations.

With a strict layout (``verify(..., layout="compact")``, config ``task.strict_layout``) a reply counts only
in the task's own answer layout: the compact steps opening with their ``numbers`` field. Anything else —
steps without that field, a formula, JSON — is unparsable ("no numbers"), however right its arithmetic:
a model that can solve the game but answers in another layout scores nothing, as a base model that has
not met the task's format.

``numbers_follow_rule`` compares the stated card values (the ``number`` field, or the compact
``numbers`` words) with the rule's values as a multiset; it does not change the reward.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

from .expr import OPERATORS, FormulaError, apply, expression, read
from .formats import OPEN_STEP, STEP, Answer, parse, word
from .rules import Rule, as_hand, get_rule

CATEGORIES = ("correct", "partial", "no_solution", "wrong_numbers", "illegal_formula", "unparsable")
MAX_STEPS = 16
_INT = re.compile(r"-?[0-9]{1,9}")


@dataclass(frozen=True)
class Rewards:
    """The reward of each category (the paper's values by default).

    ``partial`` is paid only for a reply that uses every card and misses nothing but its closing
    parentheses (formula) or the stated result of its last step (steps); see the module docstring.
    """

    correct: float = 5.0
    partial: float = 1.0
    no_solution: float = -1.0
    wrong_numbers: float = -2.0
    illegal_formula: float = -3.0
    unparsable: float = -3.0


@dataclass(frozen=True)
class Verdict:
    """The judgement of one reply.

    ``category`` is one of CATEGORIES (partial: every card used, only the closing parentheses or the
    last stated result missing, and the target reached once they are supplied). ``message`` is one
    English sentence for the paper-style feedback ("the formula evaluates to 23, not 24.");
    ``compact`` says the same in a few space-separated words for the compact style ("value 23 not
    24"). ``value`` is the formula's value, or the last step's result, where there is one.
    """

    reward: float
    category: str
    message: str
    value: Fraction | None = None
    numbers_follow_rule: bool | None = None
    compact: str = ""

    @property
    def correct(self) -> bool:
        return self.category == "correct"


@dataclass(frozen=True)
class _Finding:
    category: str
    message: str
    compact: str
    value: Fraction | None = None


_NO_FORMULA = _Finding("unparsable", "the reply holds no formula.", "no answer")


def _values_text(values) -> str:
    return "[" + ", ".join(map(word, values)) + "]"


def _and_words(values) -> str:
    items = list(map(word, values))
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _judge_formula(formula: str, values: tuple[int, ...], target: Fraction) -> _Finding:
    text = expression(formula)
    if not text.strip():
        return _NO_FORMULA
    try:
        reading = read(text)
    except FormulaError as error:
        return _Finding("illegal_formula", str(error), "illegal formula")
    if not reading.numbers:
        return _Finding("illegal_formula", "the formula holds no number.", "illegal formula")
    cards, used = Counter(values), Counter(reading.numbers)
    for number in reading.numbers:
        if number not in cards:
            return _Finding(
                "wrong_numbers",
                f"the formula uses {number}, which is not one of the card values {_values_text(values)}.",
                f"number {number} not available",
            )
        if used[number] > cards[number]:
            return _Finding(
                "wrong_numbers",
                f"the formula uses {number} more often than the card values {_values_text(values)} allow.",
                f"number {number} used too often",
            )
    unused = tuple(sorted((cards - used).elements()))
    if unused:
        return _Finding(
            "wrong_numbers",
            f"the formula does not use the card value{'s' * (len(unused) > 1)} {_and_words(unused)}.",
            f"unused {' '.join(map(word, unused))}",
            reading.value,
        )
    if reading.div_by_zero:
        return _Finding("illegal_formula", "the formula divides by zero.", "division by zero")
    if reading.value is not None:
        if reading.value == target:
            return _Finding("correct", "the formula is correct.", "correct", reading.value)
        return _Finding(
            "no_solution",
            f"the formula evaluates to {word(reading.value)}, not {word(target)}.",
            f"value {word(reading.value)} not {word(target)}",
            reading.value,
        )
    if reading.closed_value == target:
        return _Finding("partial", "the formula lacks only its closing parentheses.", "incomplete", target)
    return _Finding("illegal_formula", "the formula is incomplete.", "illegal formula")


def _word_value(text: str) -> Fraction | None:
    numerator, _, denominator = text.partition("/")
    if denominator and int(denominator) == 0:
        return None
    return Fraction(int(numerator), int(denominator or 1))


def _unused(left: tuple, value: Fraction | None = None) -> _Finding:
    return _Finding(
        "wrong_numbers", f"the steps leave {_and_words(left)} unused.", f"unused {' '.join(map(word, left))}", value
    )


def _judge_steps(steps: list[str] | None, values: tuple[int, ...], target: Fraction) -> _Finding:
    if not steps:
        return _NO_FORMULA
    if len(steps) > MAX_STEPS:
        return _Finding("illegal_formula", f"the reply has more than {MAX_STEPS} steps.", "too many steps")
    pool = Counter(Fraction(v) for v in values)
    last = None
    for i, step in enumerate(steps, 1):
        match = STEP.fullmatch(step) or (OPEN_STEP.fullmatch(step) if i == len(steps) else None)
        words = (match.group(1, 3) + ((match.group(4),) if match.re is STEP else ())) if match else ()
        read_numbers = [_word_value(w) for w in words]
        if match is None or not read_numbers or None in read_numbers:
            return _Finding("illegal_formula", f"step {i} is not of the form 'a op b = c'.", f"step {i} illegal")
        numbers = cast(list[Fraction], read_numbers)
        a, b, op = numbers[0], numbers[1], OPERATORS[match.group(2)]
        for operand in (a, b):
            if pool[operand] <= 0:
                return _Finding(
                    "wrong_numbers",
                    f"step {i} uses {word(operand)}, which is neither an unused card value nor an unused result.",
                    f"step {i} number {word(operand)} not available",
                )
            pool[operand] -= 1
        result = apply(a, op, b)
        if result is None:
            return _Finding("illegal_formula", f"step {i} divides by zero.", f"step {i} division by zero")
        if match.re is OPEN_STEP:  # the last step without its stated result
            left = tuple(sorted(pool.elements()))
            if left:
                return _unused(left)
            if result == target:
                return _Finding("partial", f"step {i} lacks only its result.", "incomplete", result)
            return _Finding("illegal_formula", f"step {i} is not of the form 'a op b = c'.", f"step {i} illegal")
        shown = f"{word(a)} {op} {word(b)}"
        if numbers[2] != result:
            return _Finding(
                "no_solution",
                f"step {i} states {shown} = {word(numbers[2])}, but {shown} = {word(result)}.",
                f"step {i} : {shown} is {word(result)} not {word(numbers[2])}",
                result,
            )
        pool[result] += 1
        last = result
    left = tuple(sorted(pool.elements()))
    if len(left) > 1:
        return _unused(left, last)
    if last == target:
        return _Finding("correct", "the steps are correct.", "correct", last)
    return _Finding(
        "no_solution",
        f"the steps end at {word(cast(Fraction, last))}, not {word(target)}.",
        f"value {word(cast(Fraction, last))} not {word(target)}",
        last,
    )


def _follows_rule(numbers: list[str] | None, values: tuple[int, ...]) -> bool | None:
    if numbers is None:
        return None
    if not all(_INT.fullmatch(n) for n in numbers):
        return False
    return Counter(map(int, numbers)) == Counter(values)


def _judge(parsed: Answer, values: tuple[int, ...], target: int) -> _Finding:
    """The finding for an already parsed reply (see the module docstring for the order of checks)."""
    if parsed.format == "steps":
        return _judge_steps(parsed.steps, values, Fraction(target))
    if parsed.formula is None:
        return _NO_FORMULA
    return _judge_formula(parsed.formula, values, Fraction(target))


STRICT_LAYOUTS = ("compact",)  # the styles whose own layout a strict verifier can insist on
_OTHER_LAYOUT = _Finding(
    "unparsable", "the reply is not in the task's layout: it must open with its numbers.", "no numbers"
)


def in_layout(parsed: Answer, layout: str | None) -> bool:
    """Whether a parsed reply is in the strict `layout` (None: any layout counts)."""
    return layout is None or (parsed.format == "steps" and parsed.numbers is not None)


def verify(
    text: str, hand, rule: Rule | str, target: int = 24, rewards: Rewards = Rewards(), layout: str | None = None
) -> Verdict:
    """Judge one reply for a hand; hand and rule must be valid, the text may be anything. `layout`: the
    style whose own answer layout alone counts (strict), or None for any layout the parser reads."""
    values = get_rule(rule).values(as_hand(hand))
    if layout is not None and layout not in STRICT_LAYOUTS:
        raise ValueError(f"no strict layout for the {layout!r} style; strict layouts: {', '.join(STRICT_LAYOUTS)}")
    try:
        parsed = parse(text)
        finding = _judge(parsed, values, target) if in_layout(parsed, layout) else _OTHER_LAYOUT
        follows = _follows_rule(parsed.numbers, values)
    except Exception:  # last resort: a reward function in a training loop must not crash on a bad reply
        finding, follows = _Finding("unparsable", "the reply could not be read.", "no answer"), None
    return Verdict(
        getattr(rewards, finding.category), finding.category, finding.message, finding.value, follows, finding.compact
    )
