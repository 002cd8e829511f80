"""Speed of sftrl.cards: the solver over all 1,820 rank multisets, and verify throughput.

Run: ``python benchmarks/cards_speed.py`` (with the package installed, or ``PYTHONPATH=src``).
Every figure is the median of ``REPEATS`` runs; the whole script takes well under a minute.
"""

from __future__ import annotations

import itertools
import random
import statistics
import time

from sftrl.cards import STYLES, answer, deal, solutions, verify
from sftrl.cards.solver import clear_cache

REPEATS = 5
HANDS = list(itertools.combinations_with_replacement(range(1, 14), 4))


def median_seconds(run, repeats: int = REPEATS, setup=None) -> float:
    times = []
    for _ in range(repeats):
        if setup:
            setup()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def solve_all(rule: str) -> int:
    return sum(bool(solutions(hand, rule)) for hand in HANDS)


def bench_solver() -> None:
    print(f"solver: all {len(HANDS)} rank multisets (4 ranks from 1-13 with replacement), median of {REPEATS}")
    for rule in ("id", "ood"):
        cold = median_seconds(lambda rule=rule: solve_all(rule), setup=clear_cache)
        warm = median_seconds(lambda rule=rule: solve_all(rule))
        n_formulas = sum(len(solutions(hand, rule)) for hand in HANDS)
        print(
            f"  {rule:3s}: solvable {solve_all(rule):4d}/{len(HANDS)}, {n_formulas} distinct formulas; "
            f"cold {cold:.3f} s, warm {warm * 1e3:.1f} ms"
        )
    both = median_seconds(lambda: (solve_all("id"), solve_all("ood")), setup=clear_cache)
    print(f"  id + ood together, cold: {both:.3f} s")


def calls_per_second(cases: list[tuple[str, tuple, str]], repeats: int = REPEATS) -> float:
    seconds = median_seconds(lambda: [verify(reply, hand, rule) for reply, hand, rule in cases], repeats)
    return len(cases) / seconds


def correct_cases(n_hands: int = 200) -> list[tuple[str, tuple, str]]:
    rng, cases = random.Random(0), []
    for i in range(n_hands):
        rule = ("id", "ood")[i % 2]
        hand = deal(rng, rule)
        formula = rng.choice(solutions(hand, rule))
        cases += [(answer(hand, rule, formula, style=style), hand, rule) for style in STYLES]
    return cases


HOSTILE = {
    "9**9**9": "9**9**9",
    "formula: 9**9**9": "formula: 9**9**9",
    "__import__('os')": "formula: __import__('os').system('x')",
    "1e999": "formula: 1e999",
    "1/0": "formula: 1/0",
    "NUL bytes": "formula: 7\x005" + "\x00" * 1000,
    "unicode digits": "formula: ٣ + ٣ * ٨",
    "32-deep ( + card": "formula: " + "(" * 32 + "7",
    "1 MB of (": "(" * 2**20,
    "1 MB of 1": "1" * 2**20,
    "1 MB of =": "=" * 2**20,
    "1 MB of formula:": "formula:" * 2**17,
    "1 MB of steps": "7 - 5 = 2 ; " * (2**20 // 12),
    "1 MB random text": "".join(random.Random(1).choice("0123456789+-*/()= ;\nabcxyz\"':{}[],") for _ in range(2**20)),
    "60k-deep JSON": '{"formula": ' + "[" * 60_000 + "}",
}


def bench_verify() -> None:
    cases = correct_cases()
    print(f"verify, median of {REPEATS}:")
    print(
        f"  correct replies (paper JSON and compact steps, {len(cases)} calls): {calls_per_second(cases):,.0f} calls/s"
    )
    hand = (7, 5, 11, 2)
    for name, reply in HOSTILE.items():
        n = 3 if len(reply) > 10_000 else 300
        rate = calls_per_second([(reply, hand, "ood")] * n)
        category = verify(reply, hand, "ood").category
        print(
            f"  hostile {name!r:22s} ({len(reply):>9,d} chars): {rate:>10,.0f} calls/s "
            f"({1e3 / rate:7.3f} ms/call) -> {category}"
        )


if __name__ == "__main__":
    start = time.perf_counter()
    bench_solver()
    bench_verify()
    print(f"total {time.perf_counter() - start:.1f} s")
