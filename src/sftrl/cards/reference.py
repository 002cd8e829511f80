"""The reference verifier's feedback text, word for word (``task.feedback: reference``).

The authors' environment (``gym_cards/envs/general_points_oneline.py``, ``utils_rl.step_rewards``,
``utils_general.re_match``) tells the model "You failed this trial because " followed by its own messages,
joined by ", " and closed by ".": ``you used invalid numbers: [11].``, ``your formula does not match any
solution.``, ``(7-5)*1 is partially correct but the full formula does not match any solution.``, and ``.``
alone where it finds nothing to say (a float ``eval`` of ``8/(3-8/3)`` is not exactly 24). This module
reproduces those messages for any reply, so an evaluation or RL run can show the model what the authors'
model read after a failed attempt. It only writes text: the reward and the verdict stay
`sftrl.cards.verify`'s.

Nothing here evaluates model output with ``eval``. Where the reference evaluates a formula (only one that
passed its character, sequence and card-usage checks: at most one number per card, operators and
parentheses), the same value is computed with Python's own number semantics on the parsed tokens (integers,
``/`` as true division, so floats exactly as ``eval`` gives them), and where ``eval`` would raise (an
unclosed parenthesis, a trailing operator, a literal with a leading zero or non-ASCII digits, a division by
zero) the reference's exception branch is taken. The stored solutions the reference compares prefixes
against are its solver's strings (the Rosetta Code enumeration with its bracket placements), rebuilt here
with exact arithmetic.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from fractions import Fraction
from functools import lru_cache

from .expr import FormulaError, read
from .rules import Rule, as_hand, get_rule

FEEDBACK = "You failed this trial because {message}"
_TOKENS = re.compile(r"\d+|[+\-*/()]")
_NUMBER = re.compile(r"\d+")
_FORMULA_FIELD = re.compile(r'"formula": "(.*?)"')  # the reference's RE_PATTERN_DICT["formula"]
MAX_SCANNED = 1 << 16  # longer replies are cut before the reference's regular expressions run on them


def extract_formula(text: str) -> str:
    """What the reference reads as the formula (`re_match(text, "formula")`, then `.split("=")[0]`): the
    `formula` value of a reply that is one JSON object, else the first ``"formula": "..."`` match, else the
    string ``None``."""
    text = text[:MAX_SCANNED]
    try:
        value = json.loads(text)["formula"]
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        match = _FORMULA_FIELD.search(text)
        value = match.group(1) if match else "None"
    formula = value if isinstance(value, str) else str(value)
    return formula.split("=")[0]


def _token_type(token: str) -> str:
    if token in "+-*/":
        return "operator"
    if token == "(":
        return "open_paren"
    if token == ")":
        return "close_paren"
    return "number"


def _sequence_messages(tokens: list[str]) -> list[str]:
    """The reference's token-order checks, one message per violation, in order."""
    messages: list[str] = []
    previous: str | None = None
    depth = 0
    for token in tokens:
        kind = _token_type(token)
        if kind == "number" and previous not in (None, "operator", "open_paren"):
            messages.append("invalid sequence after number")
        elif kind == "operator" and previous not in ("number", "close_paren"):
            messages.append("invalid sequence after operator")
        elif kind == "open_paren":
            if previous in (None, "operator", "open_paren"):
                depth += 1
            else:
                messages.append("invalid sequence before '('")
        elif kind == "close_paren":
            if previous in ("number", "close_paren"):
                if depth:
                    depth -= 1
                else:
                    messages.append("unmatched closing parenthesis")
            else:
                messages.append("invalid sequence after ')'")
        previous = kind
    return messages


def _number_messages(formula: str, values: tuple[int, ...]) -> list[str]:
    """The reference's card-usage checks: foreign or overused numbers, then unused cards (Python lists)."""
    used = Counter(int(number) for number in _NUMBER.findall(formula))
    cards = Counter(values)
    messages = []
    invalid = [number for number in used if number not in cards]
    overused = [number for number in used if used[number] > cards[number]]
    if invalid:
        messages.append(f"you used invalid numbers: {invalid}")
    elif overused:
        messages.append(f"you used numbers: {overused} too many times")
    unused = [number for number in cards if cards[number] > used[number]]
    if unused:
        messages.append(f"you didn't use numbers: {unused}")
    return messages


class _EvalError(Exception):
    """Where Python's ``eval`` of the formula would raise."""


def python_value(tokens: list[str]) -> int | float:
    """The value ``eval`` gives a formula of well-ordered tokens (ints, true division); _EvalError where
    ``eval`` would raise. Only called on formulas that passed the reference's checks (a few numbers)."""
    for token in tokens:
        if token[0].isdigit() and (not token.isascii() or (len(token) > 1 and token[0] == "0" and token.strip("0"))):
            raise _EvalError("not a Python literal")
    position = 0

    def expression(depth: int) -> int | float:
        nonlocal position
        value = term(depth)
        while position < len(tokens) and tokens[position] in "+-":
            op = tokens[position]
            position += 1
            right = term(depth)
            value = value + right if op == "+" else value - right
        return value

    def term(depth: int) -> int | float:
        nonlocal position
        value = factor(depth)
        while position < len(tokens) and tokens[position] in "*/":
            op = tokens[position]
            position += 1
            right = factor(depth)
            if op == "*":
                value = value * right
            elif right == 0:
                raise _EvalError("division by zero")
            else:
                value = value / right
        return value

    def factor(depth: int) -> int | float:
        nonlocal position
        if position >= len(tokens) or depth >= 200:  # CPython's parser nests at most 200 parentheses
            raise _EvalError("incomplete")
        token = tokens[position]
        position += 1
        if token == "(":
            value = expression(depth + 1)
            if position >= len(tokens) or tokens[position] != ")":
                raise _EvalError("unclosed parenthesis")
            position += 1
            return value
        if _token_type(token) != "number":
            raise _EvalError("operand expected")
        return int(token)

    value = expression(0)
    if position != len(tokens):
        raise _EvalError("trailing tokens")
    return value


# The reference solver's bracket placements for 4 numbers (insertion points into [a, op, b, op, c, op, d, ""]).
_EXPRESSION_LENGTH = 7
_BRACKETS = (
    [()]
    + [
        (x, y)
        for x in range(0, _EXPRESSION_LENGTH, 2)
        for y in range(x + 4, _EXPRESSION_LENGTH + 2, 2)
        if (x, y) != (0, _EXPRESSION_LENGTH + 1)
    ]
    + [(0, 3 + 1, 4 + 2, 7 + 3)]
)


@lru_cache(maxsize=4096)
def reference_solutions(values: tuple[int, ...], target: int) -> frozenset[str]:
    """The solution strings the reference's solver stores for these card values (any order gives the same
    set), rebuilt with exact arithmetic; only 4-card hands, as the reference's bracket list."""
    if len(values) != 4:
        raise ValueError(f"the reference solver takes 4 cards, not {len(values)}")
    found = set()
    for digits in set(itertools.permutations(values)):
        for ops in itertools.product("+-*/", repeat=3):
            spine = [str(digits[0]), ops[0], str(digits[1]), ops[1], str(digits[2]), ops[2], str(digits[3]), ""]
            for brackets in _BRACKETS:
                text = list(spine)
                for point, bracket in zip(brackets, "()" * (len(brackets) // 2), strict=False):
                    text.insert(point, bracket)
                formula = "".join(text).rstrip()
                try:
                    reading = read(formula)
                except FormulaError:
                    continue
                if not reading.div_by_zero and reading.value == Fraction(target):
                    found.add(formula)
    return frozenset(found)


def reference_message(text: str, hand, rule: Rule | str, target: int = 24) -> str:
    """The reference verifier's message for a reply (its `step_rewards` messages joined and closed by a
    period), e.g. ``you didn't use numbers: [3].``; never raises on any text."""
    values = get_rule(rule).values(as_hand(hand))
    formula = extract_formula(text if isinstance(text, str) else "")
    tokens = _TOKENS.findall(formula)
    if "".join(tokens) != formula:
        return "illegal characters."
    messages = _sequence_messages(tokens) + _number_messages(formula, values)
    if messages:
        return ", ".join(messages) + "."
    solutions = reference_solutions(tuple(sorted(values)), target) if len(values) == 4 else frozenset()
    try:
        if python_value(tokens) == target:
            return "Correct solution."
    except _EvalError:
        if any(solution.startswith(formula) for solution in solutions):
            return "partial solution."
    register = ""
    for token in tokens:
        previous, register = register, register + token
        if not any(solution.startswith(register) for solution in solutions):
            if previous == "":
                return "your formula does not match any solution."
            return f"{previous} is partially correct but the full formula does not match any solution."
    return "."


def reference_feedback(text: str, hand, rule: Rule | str, target: int = 24) -> str:
    """The user turn the authors' environment adds after a failed attempt."""
    return FEEDBACK.format(message=reference_message(text, hand, rule, target))
