"""Exhaustive exact solver: every distinct formula over the card values that reaches the target.

Why a canonical form: the raw count of expression trees over 4 numbers is in the thousands per
hand, mostly commutative/associative rewrites of each other (``a+b+c``, ``c+(a+b)``, ``a-(b-c)`` vs
``a+c-b``). Expressions are therefore kept as flattened sums (positive and negative terms) and
products (numerator and denominator factors), each part sorted, so two formulas that differ only by
commutativity, associativity or how signs/divisions are distributed over a sum/product collapse to
one node. A node renders with minimal parentheses, e.g. ``(7-5)*11+2`` or ``8/(3-8/3)``.

Speed: values reachable from each sub-multiset of card values are tabulated once (value -> nodes)
and cached; the full hand is then solved goal-directed, looking up for each value ``a`` of one side
the partner ``b`` the other side needs (``t-a``, ``a-t``, ``t/a`` ...). All 1,820 rank multisets
under both rules take well under a second cold.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Collection
from fractions import Fraction

from .rules import RULES, Rule, as_hand, get_rule

# Nodes are tuples whose first item is a tag, so that nodes of any kind compare and sort:
# ("n", value) | ("+", positive_terms, negative_terms) | ("*", numerator, denominator).
Node = tuple

MAX_DEALS = 10_000
_CACHE_SIZE = 1 << 16


def _parts(node: Node, tag: str) -> tuple[tuple, tuple]:
    return (node[1], node[2]) if node[0] == tag else ((node,), ())


def _combine(left: Node, op: str, right: Node) -> Node:
    """Canonical node of ``left op right``."""
    tag = "+" if op in "+-" else "*"
    (lp, ln), (rp, rn) = _parts(left, tag), _parts(right, tag)
    if op in "-/":
        rp, rn = rn, rp
    return (tag, tuple(sorted(lp + rp)), tuple(sorted(ln + rn)))


def _render(node: Node) -> str:
    """Infix with minimal parentheses: only a sum inside a product needs them."""
    tag, first, second = node[0], node[1], node[2] if len(node) > 2 else ()
    if tag == "n":
        return str(first)
    if tag == "+":
        return "+".join(map(_render, first)) + "".join("-" + _render(term) for term in second)

    def factor(child: Node) -> str:
        return f"({_render(child)})" if child[0] == "+" else _render(child)

    return "*".join(map(factor, first)) + "".join("/" + factor(child) for child in second)


def _splits(values: tuple) -> list[tuple[tuple, tuple]]:
    """The distinct ways to cut a sorted multiset into two non-empty sub-multisets (unordered)."""
    n, seen = len(values), set()
    for mask in range(1, 1 << n, 2):  # masks holding item 0: each unordered cut once (up to duplicates)
        if mask == (1 << n) - 1:
            continue
        a = tuple(v for i, v in enumerate(values) if mask >> i & 1)
        b = tuple(v for i, v in enumerate(values) if not mask >> i & 1)
        seen.add((a, b) if a <= b else (b, a))
    return sorted(seen)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def table(values: tuple) -> dict[Fraction, frozenset]:
    """Every value reachable with each number of a sorted multiset used once -> its canonical nodes."""
    if len(values) == 1:
        return {Fraction(values[0]): frozenset([("n", values[0])])}
    found: dict[Fraction, set] = {}
    for a_values, b_values in _splits(values):
        tb = table(b_values)
        for a, a_nodes in table(a_values).items():
            for b, b_nodes in tb.items():
                results = [
                    ("+", a + b, a_nodes, b_nodes),
                    ("*", a * b, a_nodes, b_nodes),
                    ("-", a - b, a_nodes, b_nodes),
                    ("-", b - a, b_nodes, a_nodes),
                ]
                if b:
                    results.append(("/", a / b, a_nodes, b_nodes))
                if a:
                    results.append(("/", b / a, b_nodes, a_nodes))
                for op, value, lefts, rights in results:
                    bucket = found.setdefault(value, set())
                    bucket.update(_combine(x, op, y) for x in lefts for y in rights)
    return {value: frozenset(nodes) for value, nodes in found.items()}


def _partners(a: Fraction, t: Fraction, tb: Collection[Fraction]) -> list[tuple[str, Fraction, bool]]:
    """(op, b, a_is_left) for each b in ``tb`` with ``a op b == t`` or ``b op a == t``."""
    wanted = [("+", t - a, True), ("-", a - t, True), ("-", t + a, False)]
    if a:
        wanted += [("*", t / a, True), ("/", t * a, False)]
        if t:
            wanted.append(("/", a / t, True))
    elif not t:  # 0 * b == 0 and 0 / b == 0 for every b
        wanted += [("*", b, True) for b in tb] + [("/", b, True) for b in tb if b]
    return [(op, b, left) for op, b, left in wanted if b in tb]


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _solve(values: tuple, target: Fraction) -> tuple[str, ...]:
    if len(values) == 1:
        return (str(values[0]),) if values[0] == target else ()
    found = set()
    for a_values, b_values in _splits(values):
        ta, tb = table(a_values), table(b_values)
        if len(ta) > len(tb):
            ta, tb = tb, ta
        for a, a_nodes in ta.items():
            for op, b, a_left in _partners(a, target, tb):
                for x in a_nodes:
                    for y in tb[b]:
                        found.add(_combine(x, op, y) if a_left else _combine(y, op, x))
    return tuple(sorted({_render(node) for node in found}))


def solutions(hand, rule: Rule | str, target: int = 24) -> list[str]:
    """Every distinct solution formula over the card values, sorted; [] when there is none."""
    values = get_rule(rule).values(as_hand(hand))
    return list(_solve(tuple(sorted(values)), Fraction(target)))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _reachable(values: tuple) -> frozenset[Fraction]:
    """`table`'s values without its formulas: what a sub-multiset reaches, each number used once."""
    if len(values) == 1:
        return frozenset([Fraction(values[0])])
    found: set[Fraction] = set()
    for a_values, b_values in _splits(values):
        tb = _reachable(b_values)
        for a in _reachable(a_values):
            for b in tb:
                found.update((a + b, a * b, a - b, b - a))
                if b:
                    found.add(a / b)
                if a:
                    found.add(b / a)
    return frozenset(found)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _reaches(values: tuple, target: Fraction) -> bool:
    """Whether `_solve` finds a formula, by the same goal-directed search over values alone."""
    if len(values) == 1:
        return values[0] == target
    for a_values, b_values in _splits(values):
        ta, tb = _reachable(a_values), _reachable(b_values)
        if len(ta) > len(tb):
            ta, tb = tb, ta
        if any(_partners(a, target, tb) for a in ta):
            return True
    return False


def is_solvable(hand, rule: Rule | str, target: int = 24) -> bool:
    """Whether `solutions` finds any, without building the formulas."""
    return _reaches(tuple(sorted(get_rule(rule).values(as_hand(hand)))), Fraction(target))


def clear_cache() -> None:
    """Forget all tabulated results (for cold-start benchmarks)."""
    for cached in (table, _solve, _reachable, _reaches):
        cached.cache_clear()


def deal(
    rng: random.Random, rule: Rule | str, target: int = 24, *, n_cards: int = 4, require_face: bool | None = None
) -> tuple[int, ...]:
    """A solvable hand, dealt as the reference code deals and redrawn until solvable.

    Ranks are uniform over 1..13 with replacement. With ``require_face`` (default: only for the OOD
    rule, as in the reference code) the last card is drawn uniform from J, Q, K instead and the hand
    is shuffled, so every hand holds a face card and hands with two or more are more common than
    among uniform hands that merely hold one. Only ``rng`` is used, so a seed fixes the hands.
    """
    rule = get_rule(rule)
    if require_face is None:
        require_face = rule == RULES["ood"]
    for _ in range(MAX_DEALS):
        hand = [rng.randint(1, 13) for _ in range(n_cards - 1 if require_face else n_cards)]
        if require_face:
            hand.append(rng.randint(11, 13))
            rng.shuffle(hand)
        if is_solvable(hand, rule, target):
            return tuple(hand)
    raise ValueError(
        f"no solvable hand of {n_cards} cards for rule {rule.name!r} and target {target} in {MAX_DEALS} deals"
    )
