"""Judging a reply: category, reward and a one-sentence reason (never raises).

Formula replies, checked in this order (the first finding wins):

1. no formula, or an empty one                                   -> unparsable
2. illegal characters or token order (unary minus, ``**``, names,
   unicode digits, literals over 3 digits, over 512 chars, too deep,
   no number at all)                                              -> illegal_formula
3. a number that is not a card value, or a card value used too often -> wrong_numbers
4. division by zero                                               -> illegal_formula
5. complete and every card used once: equals the target           -> correct, else no_solution
6. the beginning of a solution: text that some continuation with the
   unused cards turns into a solution (``(7-5)*11+`` with a 2 left,
   an unclosed ``((7-5)*11+2``, or ``(7-5)*11`` with a 2 left)     -> partial
7. otherwise cards unused                                         -> wrong_numbers
8. otherwise (all cards used, incomplete, cannot be completed)    -> illegal_formula

Anything after the first ``=`` is ignored, so ``...=24`` and a wrong tail ``...=23`` are both judged
by the left side alone. Whitespace is allowed between tokens. A trailing number is taken as
complete (``(7-5)*1`` is not read as the start of ``(7-5)*11``). A formula with more than
``MAX_PARTIAL_DEPTH`` open parentheses that hold something is never partial (bounds the search).

Steps replies (``a op b = c`` per segment), checked step by step: a malformed step or ``p/0`` ->
illegal_formula; an operand that is neither an unused card value nor an unused earlier result ->
wrong_numbers; a stated result that is not the exact result (wrong arithmetic) -> no_solution;
division by zero -> illegal_formula. After the last step: one number left -> correct if it is the
target, else no_solution; several left -> partial if they can still be combined into the target,
else wrong_numbers. No steps at all -> unparsable.

Cost: microseconds for ordinary replies and about a millisecond for megabyte ones; the slowest path
is the partial search for a one-card prefix inside several parentheses (about 10 ms).

``numbers_follow_rule`` compares the stated card values (the ``number`` field, or the compact
``numbers`` words) with the rule's values as a multiset; it does not change the reward.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from .expr import OPERATORS, FormulaError, Reading, apply, expression, read
from .formats import STEP, Answer, parse, word
from .rules import Rule, as_hand, get_rule
from .solver import reaches, sub_multisets, table

CATEGORIES = ("correct", "partial", "no_solution", "wrong_numbers", "illegal_formula", "unparsable")
MAX_PARTIAL_DEPTH = 8
MAX_STEPS = 16
_INT = re.compile(r"-?[0-9]{1,9}")


@dataclass(frozen=True)
class Rewards:
    correct: float = 5.0
    partial: float = 1.0
    no_solution: float = -1.0
    wrong_numbers: float = -2.0
    illegal_formula: float = -3.0
    unparsable: float = -3.0


@dataclass(frozen=True)
class Verdict:
    """The judgement of one reply.

    ``message`` is one English sentence for the paper-style feedback ("the formula evaluates to 23,
    not 24."); ``compact`` says the same in a few space-separated words for the compact style
    ("value 23 not 24").
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


def _extend(options: dict[tuple, set], ops: str) -> dict[tuple, set]:
    """Add ``v op x`` (ops "*/" or "+-") for x any value built from a non-empty part of the unused numbers."""
    out = {rest: set(values) for rest, values in options.items()}
    for rest, values in options.items():
        for used, left in sub_multisets(rest):
            bucket = out.setdefault(left, set())
            for x in table(used):
                if ops == "+-":
                    bucket.update({v + x for v in values}, {v - x for v in values})
                else:
                    bucket.update({v * x for v in values}, {v / x for v in values} if x else ())
    return out


def _collapse(frames: tuple, unused: int) -> list:
    """Drop empty '(' frames beyond ``unused`` in a row: each extra wrapper could only add a card."""
    kept, run = [], 0
    for frame in frames:
        run = run + 1 if frame[0] is None and frame[2] is None else 0
        if run <= max(unused, 1):
            kept.append(frame)
    return kept


def _completable(reading: Reading, unused: tuple, target: Fraction) -> bool:
    """Whether some text appended to the formula, using exactly the unused values, reaches the target.

    From the innermost open frame outwards: the pending operand is any value of a part of the unused
    values; the current product may go on with ``* x`` / ``/ x`` and the sum with ``+ x`` / ``- x``
    (several further factors or terms are one parenthesised x); the closed frame is the operand of
    the frame around it. The outermost sum is checked goal-directed (is ``target - v`` or
    ``v - target`` a value of the rest?) rather than enumerated.
    """
    frames = _collapse(reading.frames, len(unused))
    if len(frames) > MAX_PARTIAL_DEPTH:
        return False
    options = None
    if reading.expecting:
        options = {}
        for used, left in sub_multisets(unused):
            options.setdefault(left, set()).update(table(used))
    for depth, (acc, add, term, mul) in enumerate(reversed(frames)):
        if options is None:  # the innermost frame's last operand is already complete
            terms = {unused: {term}}
        else:
            terms = {}
            for left, operands in options.items():
                bucket = terms.setdefault(left, set())
                for x in operands:
                    t = x if term is None else apply(term, mul, x)
                    if t is not None:
                        bucket.add(t)
        terms = _extend(terms, "*/")
        sums = {left: {t if acc is None else apply(acc, add, t) for t in ts} for left, ts in terms.items()}
        if depth < len(frames) - 1:
            options = _extend(sums, "+-")
    for left, values in sums.items():
        rest = table(left) if left else {}
        if any(v == target if not left else (target - v in rest or v - target in rest) for v in values):
            return True
    return False


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
            return _Finding("wrong_numbers", f"the formula uses {number}, which is not one of the card values "
                            f"{_values_text(values)}.", f"number {number} not available")
        if used[number] > cards[number]:
            return _Finding("wrong_numbers", f"the formula uses {number} more often than the card values "
                            f"{_values_text(values)} allow.", f"number {number} used too often")
    if reading.div_by_zero:
        return _Finding("illegal_formula", "the formula divides by zero.", "division by zero")
    unused = tuple(sorted((cards - used).elements()))
    if reading.complete and not unused:
        if reading.value == target:
            return _Finding("correct", "the formula is correct.", "correct", reading.value)
        return _Finding("no_solution", f"the formula evaluates to {word(reading.value)}, not {word(target)}.",
                        f"value {word(reading.value)} not {word(target)}", reading.value)
    if _completable(reading, unused, target):
        return _Finding("partial", "the formula is only the beginning of a solution.", "incomplete",
                        reading.value)
    if unused:
        return _Finding("wrong_numbers", f"the formula does not use the card value{'s' * (len(unused) > 1)} "
                        f"{_and_words(unused)}.", f"unused {' '.join(map(word, unused))}", reading.value)
    return _Finding("illegal_formula", "the formula is incomplete.", "illegal formula")


def _word_value(text: str) -> Fraction | None:
    numerator, _, denominator = text.partition("/")
    if denominator and int(denominator) == 0:
        return None
    return Fraction(int(numerator), int(denominator or 1))


def _judge_steps(steps: list[str], values: tuple[int, ...], target: Fraction) -> _Finding:
    if not steps:
        return _NO_FORMULA
    if len(steps) > MAX_STEPS:
        return _Finding("illegal_formula", f"the reply has more than {MAX_STEPS} steps.", "too many steps")
    pool = Counter(Fraction(v) for v in values)
    last = None
    for i, step in enumerate(steps, 1):
        match = STEP.fullmatch(step)
        numbers = [_word_value(match.group(k)) for k in (1, 3, 4)] if match else [None]
        if None in numbers:
            return _Finding("illegal_formula", f"step {i} is not of the form 'a op b = c'.", f"step {i} illegal")
        (a, b, stated), op = numbers, OPERATORS[match.group(2)]
        for operand in (a, b):
            if pool[operand] <= 0:
                return _Finding("wrong_numbers", f"step {i} uses {word(operand)}, which is neither an unused card "
                                f"value nor an unused result.", f"step {i} number {word(operand)} not available")
            pool[operand] -= 1
        result = apply(a, op, b)
        if result is None:
            return _Finding("illegal_formula", f"step {i} divides by zero.", f"step {i} division by zero")
        shown = f"{word(a)} {op} {word(b)}"
        if stated != result:
            return _Finding("no_solution", f"step {i} states {shown} = {word(stated)}, but {shown} = {word(result)}.",
                            f"step {i} : {shown} is {word(result)} not {word(stated)}", result)
        pool[result] += 1
        last = result
    left = tuple(sorted(pool.elements()))
    if len(left) == 1:
        if last == target:
            return _Finding("correct", "the steps are correct.", "correct", last)
        return _Finding("no_solution", f"the steps end at {word(last)}, not {word(target)}.",
                        f"value {word(last)} not {word(target)}", last)
    if reaches(left, target):
        return _Finding("partial", f"the steps are right so far, but {_and_words(left)} are still unused.",
                        "incomplete", last)
    return _Finding("wrong_numbers", f"the steps leave {_and_words(left)} unused, and they cannot reach "
                    f"{word(target)}.", f"unused {' '.join(map(word, left))}", last)


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


def verify(text: str, hand, rule: Rule | str, target: int = 24, rewards: Rewards = Rewards()) -> Verdict:
    """Judge one reply for a hand; hand and rule must be valid, the text may be anything."""
    values = get_rule(rule).values(as_hand(hand))
    try:
        parsed = parse(text)
        finding = _judge(parsed, values, target)
        follows = _follows_rule(parsed.numbers, values)
    except Exception:  # last resort: a reward function in a training loop must not crash on a bad reply
        finding, follows = _Finding("unparsable", "the reply could not be read.", "no answer"), None
    return Verdict(getattr(rewards, finding.category), finding.category, finding.message, finding.value,
                   follows, finding.compact)
