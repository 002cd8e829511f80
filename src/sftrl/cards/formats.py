"""Prompts, reference answers, and the reading of a reply into an Answer (never raises).

Two styles:

* ``paper``: the reference prompt, character for character (task description, cards, JSON skeleton),
  and a strict-JSON answer ``{"cards": ["7", "5", "J", "2"], "number": [7, 5, 11, 2], "formula":
  "(7-5)*11+2=24"}``.
* ``compact``: for a tiny word-level model, every token separated by one space::

      prompt  J = 11 Q = 12 K = 13 ; target 24 ; cards 7 5 J 2
      answer  numbers 7 5 11 2 ; 7 - 5 = 2 ; 2 * 11 = 22 ; 22 + 2 = 24

  Non-integer values are one word ``p/q`` (``8/3``), negative ones ``-3``.

Reading a reply (``parse``) tries, in order: strict JSON (the text from the first ``{`` to the last
``}`` is one object, up to 64 KB), a lenient ``formula: ...`` key with any quotes, the steps format
(a first segment starting with ``numbers``, or a reply made only of ``a op b = c`` segments;
segments are cut at ``;`` and newlines), and last a bare equation or a reply that is nothing but a
formula. A reply holding two answers is judged by the first, what a reader sees first: the first
``formula`` key (also when two JSON objects follow each other), the first equation, and the steps up
to a second ``numbers`` head. Every scan is linear with bounded quantifiers, so megabyte replies
cost milliseconds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fractions import Fraction

from .expr import DIGITS, OPERATORS, expression, read, solution_steps
from .rules import Rule, as_hand, get_rule, symbols

STYLES = ("paper", "compact")

MAX_JSON_CHARS = 1 << 16
MAX_SEGMENTS = 64
_FORMULA_WINDOW = 600
_EQUATIONS_TRIED = 16

# The reference prompt, character for character, quirks included: it starts with a newline, the rule
# sentence keeps its own period in both places ("count as '10'., and each card", "count as '10'.,"),
# the formula line ends with a comma, and the text ends with "}" and a blank line.
_PAPER_PROMPT = """
[Task Description]
You are an expert {target} points card game player. You will receive a set of {n} cards.
Note that {rule}, and each card must be used once.
Your goal is to output a formula that evaluates to {target} using numbers from the cards and \
operators such as '+', '-', '*', '/', '(', ')', and '='.

[Input]
Cards: {cards}

[Output]
{{
  "cards": [{card_vars}], where {rule},
  "number": [{number_vars}], where {number_list} are the numbers on the cards,
  "formula": 'an equation that equals {target}',
}}

"""
_CARD_VARS, _NUMBER_VARS = "xyzwvutsrqpo", "abcdefghijkl"


def _style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; known styles: {', '.join(STYLES)}")
    return style


def _and_list(items: list[str]) -> str:
    if len(items) < 3:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def word(value: Fraction | int) -> str:
    """A number as one word: ``24``, ``-3``, ``8/3``."""
    return str(Fraction(value))


def prompt(hand, rule: Rule | str, target: int = 24, style: str = "paper") -> str:
    """The first user turn for a hand.

    ``paper``: exactly what the reference code formats for its 4-card game (cards shown as Python's
    ``str`` of a list of card symbols, ``['7', 'J', '3', '10']``). Hands of 2 to 12 cards get the
    same text with their own card count and placeholder letters (``x, y, z, w, v`` and ``a, b, c, d,
    e`` for 5 cards); other sizes raise ValueError. ``compact``: one line of words, any size.
    """
    hand, rule = as_hand(hand), get_rule(rule)
    cards = symbols(hand)
    if _style(style) == "compact":
        return f"J = {rule.jack} Q = {rule.queen} K = {rule.king} ; target {target} ; cards {' '.join(cards)}"
    if not 2 <= len(hand) <= len(_CARD_VARS):
        raise ValueError(f"the paper prompt is for hands of 2 to {len(_CARD_VARS)} cards, got {len(hand)}")
    number_vars = list(_NUMBER_VARS[: len(hand)])
    return _PAPER_PROMPT.format(
        target=target,
        n=len(hand),
        rule=rule.sentence,
        cards=str(cards),
        card_vars=", ".join(_CARD_VARS[: len(hand)]),
        number_vars=", ".join(number_vars),
        number_list=_and_list(number_vars),
    )


def messages(hand, rule: Rule | str, target: int = 24, style: str = "paper") -> list[dict]:
    return [{"role": "user", "content": prompt(hand, rule, target, style)}]


# The answer template of the authors' SFT data (Chu et al.'s `prompt_lib.ResponseEqn`): a newline first, the
# cards and numbers as Python lists, and a trailing comma, so not JSON (the verifier reads it leniently).
_AUTHORS_ANSWER = """
{{
  "cards": {cards},
  "number": {numbers},
  "formula": "{formula}",
}}"""
LAYOUTS = ("json", "authors")


def answer(hand, rule: Rule | str, formula: str, target: int = 24, style: str = "paper", layout: str = "json") -> str:
    """The reference reply (SFT target) for a solution formula; ValueError if it is not one.

    `layout` (paper style): ``json``, one line of strict JSON; ``authors``, the authors' response template
    (multi-line, Python lists, trailing comma)."""
    hand, rule = as_hand(hand), get_rule(rule)
    values = rule.values(hand)
    reading = read(expression(formula))
    if (
        not reading.complete
        or reading.div_by_zero
        or reading.value != target
        or sorted(reading.numbers) != sorted(values)
    ):
        raise ValueError(f"{formula!r} is not a solution for the values {list(values)} and target {target}")
    if _style(style) == "compact":
        steps = " ; ".join(f"{word(a)} {op} {word(b)} = {word(r)}" for a, op, b, r in solution_steps(formula))
        return f"numbers {' '.join(map(str, values))} ; {steps}"
    written = f"{expression(formula).strip()}={target}"
    if layout == "authors":
        return _AUTHORS_ANSWER.format(cards=str(symbols(hand)), numbers=str(list(values)), formula=written)
    if layout != "json":
        raise ValueError(f"unknown answer layout {layout!r}; known layouts: {', '.join(LAYOUTS)}")
    return json.dumps({"cards": symbols(hand), "number": list(values), "formula": written})


ANSWER_LAYOUTS = {  # a compact answer as a base may write it: the task's own, or its steps alone
    "task": lambda reply: reply,
    "steps_only": lambda reply: reply.split(" ; ", 1)[1] if reply.startswith("numbers ") else reply,
}


def in_answer_layout(reply: str, layout: str) -> str:
    """A compact reply (`answer`, or a wrong attempt) in `layout`: ``task`` as written, ``steps_only``
    without its opening ``numbers`` field (the steps still apply the rule's values)."""
    if layout not in ANSWER_LAYOUTS:
        raise ValueError(f"unknown answer layout {layout!r}; known: {', '.join(ANSWER_LAYOUTS)}")
    return ANSWER_LAYOUTS[layout](reply)


@dataclass(frozen=True)
class Answer:
    """What a reply states. ``format``: "json", "lenient", "steps" or "none" (nothing found)."""

    formula: str | None
    cards: list[str] | None
    numbers: list[str] | None
    steps: list[str] | None
    format: str


_QUOTES = "\"'“”‘’`"
_CLOSING_QUOTE = {"“": "”", "‘": "’"}  # a quote not named here closes itself
_KEYS_TRIED = 64
_KEY_PATTERNS = {
    "formula": re.compile(r"formula[\"'“”‘’]?[ \t]{0,8}[:=][ \t]{0,8}"),
    **{key: re.compile(rf"{key}[\"']?[ \t]{{0,8}}:[ \t]{{0,8}}\[([^\]\n]{{0,200}})\]") for key in ("cards", "number")},
}
_NUMBERS_WORD = re.compile(r"numbers?\b", re.IGNORECASE)
_WORD_NUM = r"-?[0-9]{1,9}(?:/[0-9]{1,9})?"
STEP = re.compile(
    rf"({_WORD_NUM})[ \t]{{0,8}}([-+*/×÷−])[ \t]{{0,8}}({_WORD_NUM})[ \t]{{0,8}}=[ \t]{{0,8}}"
    rf"({_WORD_NUM})[ \t.]{{0,8}}"
)
OPEN_STEP = re.compile(rf"({_WORD_NUM})[ \t]{{0,8}}([-+*/×÷−])[ \t]{{0,8}}({_WORD_NUM})(?:[ \t]{{0,8}}=)?")  # no result
_FORMULA_CHARS = frozenset(DIGITS + "".join(OPERATORS) + "() \t")


def _json_answer(text: str) -> Answer | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start or end - start >= MAX_JSON_CHARS:
        return None
    try:
        data = json.loads(text[start : end + 1])
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or "formula" not in data:
        return None

    def strings(key: str) -> list[str] | None:
        items = data.get(key)
        return [str(item) for item in items] if isinstance(items, list) else None

    formula = data["formula"]
    return Answer(
        formula if isinstance(formula, str) else str(formula), strings("cards"), strings("number"), None, "json"
    )


def _first_key(text: str, key: str) -> re.Match | None:
    """The first ``key: value`` in the text, looking at most at _KEYS_TRIED mentions of the key."""
    at = 0
    for _ in range(_KEYS_TRIED):
        at = text.find(key, at)
        if at < 0:
            return None
        match = _KEY_PATTERNS[key].match(text, at)
        if match:
            return match
        at += 1
    return None


def _listed(text: str, key: str) -> list[str] | None:
    match = _first_key(text, key)
    if match is None:
        return None
    return [item.strip().strip(_QUOTES) for item in match.group(1).split(",") if item.strip()]


def _formula_value(text: str) -> str | None:
    """The value after the first ``formula:`` key: a quoted value up to the quote that closes its own
    opening quote (``"…"``, ``'…'``, ``“…”``, ``‘…’``), so another quote character inside it is part of
    the formula as written and is judged (``"10+6/(3/7)’*0=24"`` is illegal, not the solution before
    the ``’``); an unquoted value up to the next ``,`` or ``}``."""
    match = _first_key(text, "formula")
    if match is None:
        return None
    value = text[match.end() : match.end() + _FORMULA_WINDOW].split("\n", 1)[0]
    if value[:1] and value[0] in _QUOTES:
        closing = _CLOSING_QUOTE.get(value[0], value[0])
        value = value[1:]
        stop = value.find(closing)
        stop = len(value) if stop < 0 else stop
    else:
        stop = min((i for i in map(value.find, ",}") if i >= 0), default=len(value))
    return value[:stop].strip()


def _segments(text: str) -> list[str]:
    """The non-empty parts between ``;`` and newlines, at most MAX_SEGMENTS + 1 (the last one holds the rest)."""
    parts = [piece for part in text.split(";", MAX_SEGMENTS) for piece in part.split("\n", MAX_SEGMENTS)]
    head = [piece.strip() for piece in parts[:MAX_SEGMENTS]]
    tail = ";".join(parts[MAX_SEGMENTS:]).strip()
    return [piece for piece in [*head, tail] if piece]


def _steps_answer(text: str) -> Answer | None:
    segments = _segments(text)
    if not segments:
        return None
    head = _NUMBERS_WORD.match(segments[0])
    if head:
        numbers = segments[0][head.end() :].split(maxsplit=32)[:32]
        steps = segments[1:]
        end = next((i for i, s in enumerate(steps) if _NUMBERS_WORD.match(s)), len(steps))
        return Answer(None, None, numbers, steps[:end], "steps")  # a second ``numbers`` head starts another answer
    if all(STEP.fullmatch(s) for s in segments):
        return Answer(None, None, None, segments, "steps")
    return None


def _bare_formula(text: str) -> str | None:
    """A formula standing alone: the whole reply, or the left side of its first equation with a number."""
    stripped = text.strip()
    if len(stripped) <= _FORMULA_WINDOW and set(stripped) <= _FORMULA_CHARS and any(c in DIGITS for c in stripped):
        return stripped
    at = -1
    for _ in range(_EQUATIONS_TRIED):
        at = text.find("=", at + 1)
        if at < 0:
            return None
        left = text[max(0, at - _FORMULA_WINDOW) : at]
        start = len(left)
        while start and left[start - 1] in _FORMULA_CHARS:
            start -= 1
        candidate = left[start:].strip()
        if candidate and any(c in DIGITS for c in candidate):
            return candidate
    return None


def parse(text: str) -> Answer:
    """Read a reply in any supported format; never raises."""
    if not isinstance(text, str):
        return Answer(None, None, None, None, "none")
    found = _json_answer(text)
    if found:
        return found
    formula = _formula_value(text)
    if formula is not None:
        return _lenient(text, formula)
    found = _steps_answer(text)
    if found:
        return found
    formula = _bare_formula(text)
    if formula is not None:
        return _lenient(text, formula)
    return Answer(None, None, None, None, "none")


def _lenient(text: str, formula: str) -> Answer:
    """A formula found in free text, with the cards and numbers the text lists where it lists them."""
    return Answer(formula, _listed(text, "cards"), _listed(text, "number"), None, "lenient")
