"""Reading a formula: a one-pass tokenizer and evaluator over exact Fractions.

Model output is hostile, so nothing here uses eval/compile/ast: one left-to-right scan with bounded
length, literal size and nesting, in O(len) time. The grammar is the infix one of the prompt:
numbers, ``+ - * /`` (``×`` ``÷`` ``−`` read as ``* / -``) and parentheses. Unary minus, powers,
decimals, names and non-ASCII digits are illegal. Division by zero is recorded, not raised, so
that the caller can rank it after a number-usage error.

The scan keeps one frame per open parenthesis (sum so far, pending +/-, current product, pending
*/), which is exactly the state an incomplete formula such as ``((7-5)*11+2`` stops in; the verifier
asks ``Reading.closed_value`` what closing its open parentheses would give.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import cast

MAX_FORMULA_CHARS = 512
MAX_DIGITS = 3
MAX_DEPTH = 32

DIGITS = "0123456789"  # ASCII only: str.isdigit() would admit '٣'
OPERATORS = {"+": "+", "-": "-", "*": "*", "/": "/", "×": "*", "÷": "/", "−": "-"}

Step = tuple[Fraction, str, Fraction, Fraction]
# (sum so far or None, pending '+'/'-', product so far or None, pending '*'/'/')
Frame = tuple[Fraction | None, str, Fraction | None, str]


class FormulaError(ValueError):
    """An illegal formula; ``str(error)`` is a one-sentence explanation for the model."""


@dataclass(frozen=True)
class Reading:
    """What a scan of a formula found: its numbers, and its value or the state it stopped in."""

    numbers: tuple[int, ...]
    steps: tuple[Step, ...]
    frames: tuple[Frame, ...]  # open frames, outermost first; one frame when the formula is complete
    expecting: bool  # the innermost frame awaits an operand
    div_by_zero: bool
    value: Fraction | None  # set when the formula is complete

    @property
    def complete(self) -> bool:
        return self.value is not None

    @property
    def closed_value(self) -> Fraction | None:
        """The value once every open parenthesis is closed: the value of a complete formula, that of
        ``((7-5)*11+2`` read as ``((7-5)*11+2)``; None when the text ends on an operator or ``(``
        (no closing helps) or closing divides by zero."""
        if self.complete or self.expecting:
            return self.value
        value = None
        for acc, add, term, mul in reversed(self.frames):  # innermost first
            if value is not None:  # the closed inner frame is this frame's pending operand
                term = value if term is None else apply(term, mul, value)
                if term is None:
                    return None
            value = term if acc is None else apply(acc, add, cast(Fraction, term))
        return value


def apply(a: Fraction, op: str, b: Fraction) -> Fraction | None:
    """One exact binary operation; None on division by zero."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b if b else None


class _Scan:
    """Mutable state of one scan (kept out of the public Reading)."""

    def __init__(self) -> None:
        self.frames: list[list] = [[None, "+", None, "*"]]
        self.steps: list[Step] = []
        self.div_by_zero = False

    def _op(self, a: Fraction, op: str, b: Fraction) -> Fraction:
        result = apply(a, op, b)
        if result is None:  # keep scanning for syntax errors; the value no longer matters
            self.div_by_zero, result = True, Fraction(0)
        self.steps.append((a, op, b, result))
        return result

    def operand(self, value: Fraction) -> None:
        frame = self.frames[-1]
        frame[2] = value if frame[2] is None else self._op(frame[2], frame[3], value)

    def end_term(self) -> None:
        frame = self.frames[-1]
        frame[0] = frame[2] if frame[0] is None else self._op(frame[0], frame[1], frame[2])
        frame[2] = None

    def close(self) -> Fraction:
        self.end_term()
        return self.frames.pop()[0]


def read(formula: str) -> Reading:
    """Scan one formula (no ``=`` tail). Raises FormulaError when it is illegal."""
    if len(formula) > MAX_FORMULA_CHARS:
        raise FormulaError(f"the formula is longer than {MAX_FORMULA_CHARS} characters.")
    if "**" in formula or "^" in formula:
        raise FormulaError("the formula uses a power operator, which is not allowed.")
    scan = _Scan()
    numbers: list[int] = []
    expecting = True
    i, n = 0, len(formula)
    while i < n:
        char = formula[i]
        if char in DIGITS:
            j = i
            while j < n and formula[j] in DIGITS:
                j += 1
            if j - i > MAX_DIGITS:
                raise FormulaError(f"the formula holds a number with more than {MAX_DIGITS} digits.")
            if not expecting:
                raise FormulaError("the formula has a number where an operator should be.")
            numbers.append(int(formula[i:j]))
            scan.operand(Fraction(numbers[-1]))
            expecting, i = False, j
            continue
        i += 1
        if char.isspace():
            continue
        if char == "(":
            if not expecting:
                raise FormulaError("the formula has '(' where an operator should be.")
            if len(scan.frames) > MAX_DEPTH:
                raise FormulaError("the formula nests parentheses too deeply.")
            scan.frames.append([None, "+", None, "*"])
        elif char == ")":
            if expecting or len(scan.frames) == 1:
                raise FormulaError("the formula has a ')' that closes nothing or closes too early.")
            scan.operand(scan.close())
        elif char in OPERATORS:
            if expecting:
                raise FormulaError(f"the formula has the operator '{char}' where a number should be.")
            op = OPERATORS[char]
            if op in "+-":
                scan.end_term()
                scan.frames[-1][1] = op
            else:
                scan.frames[-1][3] = op
            expecting = True
        else:
            raise FormulaError(f"the formula contains {char!r}, which is not allowed.")
    frames = tuple(tuple(frame) for frame in scan.frames)
    value = None
    if len(scan.frames) == 1 and not expecting:
        value = scan.close()
    return Reading(tuple(numbers), tuple(scan.steps), frames, expecting, scan.div_by_zero, value)


def expression(formula: str) -> str:
    """The part of a formula before its first ``=``: a tail such as ``=24`` (or ``=23``) is ignored."""
    return formula.split("=", 1)[0]


def solution_steps(formula: str) -> list[Step]:
    """The formula as binary steps (a, op, b, result) in evaluation order.

    Raises ValueError when the formula is illegal, incomplete or divides by zero.
    """
    reading = read(expression(formula))
    if not reading.complete or reading.div_by_zero:
        raise ValueError(f"{formula!r} is not a complete formula with a value")
    return list(reading.steps)
